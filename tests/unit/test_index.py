import numpy as np
import pytest

from distill.index import FaissIndexError, build_index, load_index, save_index


def _data(n=600, dim=16, seed=0):
    x = np.random.default_rng(seed).standard_normal((n, dim)).astype(np.float32)
    return x / np.linalg.norm(x, axis=1, keepdims=True)


def test_flat_is_exact_and_roundtrips_without_pickle(tmp_path):
    x = _data()
    ids = [f"doc{i}" for i in range(len(x))]
    save_index(build_index(x), ids, tmp_path, factory="Flat", version="v1")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["docids.parquet", "index.faiss", "meta.json"]
    idx = load_index(tmp_path)
    got, scores = idx.search(x[:5], 3)
    assert [g[0] for g in got] == ids[:5]
    expected = np.sort(x[:5] @ x.T, axis=1)[:, ::-1][:, :3]
    np.testing.assert_allclose(scores, expected, rtol=1e-5)
    assert idx.meta["version"] == "v1" and len(idx) == 600


@pytest.mark.parametrize("factory, params", [("HNSW32", {"ef_search": 64}), ("IVF16,PQ4", {"nprobe": 16})])
def test_approximate_indexes_find_most_neighbours(tmp_path, factory, params):
    x = _data()
    ids = [str(i) for i in range(len(x))]
    save_index(build_index(x, factory), ids, tmp_path, factory=factory)
    idx = load_index(tmp_path, **params)
    got, _ = idx.search(x[:50], 10)
    exact = np.argsort(-(x[:50] @ x.T), axis=1)[:, :10]
    recall = np.mean([len(set(g) & {str(j) for j in e}) / 10 for g, e in zip(got, exact)])
    assert recall > (0.9 if factory.startswith("HNSW") else 0.3)


def test_bad_factory_and_mismatch(tmp_path):
    with pytest.raises(FaissIndexError, match="factory"):
        build_index(_data(10), "NotAnIndex")
    with pytest.raises(FaissIndexError, match="docids"):
        save_index(build_index(_data(10)), ["a"], tmp_path)
    with pytest.raises(FaissIndexError, match="lacks"):
        load_index(tmp_path / "none")


def test_k_larger_than_index():
    x = _data(5)
    from distill.index import SearchIndex

    si = SearchIndex(build_index(x), list("abcde"), {})
    got, _ = si.search(x[:1], 50)
    assert sorted(got[0]) == list("abcde")
