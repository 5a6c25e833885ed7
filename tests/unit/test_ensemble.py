"""distill.ensemble: per-query normalisation, weighted fusion, the dev-fitted weights, BM25 pair scores,
the ensemble config, and the in-process ensemble reranker (serve.core.EnsembleScorer)."""

import json

import numpy as np
import pandas as pd
import pytest

from distill import ensemble as ens
from distill.config import ConfigError, build_config


def test_zscore_is_per_query_and_constant_groups_are_zero():
    groups = np.array([0, 0, 0, 1, 1, 2, 2])
    x = np.array([1.0, 2.0, 3.0, 10.0, 30.0, 5.0, 5.0])
    z = ens.normalise(x, groups, "zscore")
    for g in (0, 1):
        assert z[groups == g].mean() == pytest.approx(0.0, abs=1e-12)
        assert z[groups == g].std() == pytest.approx(1.0)
    assert np.all(z[groups == 2] == 0.0)  # std floored: no division by zero
    # a shift or a positive scale of one query's scores leaves its z-scores as they were
    assert np.allclose(ens.normalise(np.where(groups == 1, 7 * x - 3, x), groups), z)


def test_rrf_is_one_over_k_plus_rank_within_each_query():
    groups = np.array([0, 0, 0, 1, 1])
    x = np.array([0.2, 0.9, 0.5, -1.0, 3.0])
    r = ens.normalise(x, groups, "rrf", rrf_k=10)
    assert np.allclose(r, [1 / 13, 1 / 11, 1 / 12, 1 / 12, 1 / 11])
    with pytest.raises(ValueError, match="unknown fusion"):
        ens.normalise(x, groups, "max")


def test_fuse_is_the_weighted_sum_of_normalised_members():
    groups = ens.group_index(["a", "a", "b", "b", "a"])
    assert list(groups) == [0, 0, 1, 1, 0]
    x1, x2 = np.array([1.0, 2.0, 3.0, 5.0, 0.0]), np.array([4.0, 1.0, 0.0, 2.0, 9.0])
    fused = ens.fuse({"m1": x1, "m2": x2}, {"m1": 0.3, "m2": 0.7}, groups)
    expect = 0.3 * ens.normalise(x1, groups) + 0.7 * ens.normalise(x2, groups)
    assert fused.dtype == np.float32
    assert np.allclose(fused, expect, atol=1e-6)
    assert np.allclose(ens.fuse({"m1": x1, "m2": x2}, {"m1": 1.0, "m2": 0.0}, groups), ens.normalise(x1, groups))


def test_simplex_grid():
    assert ens.simplex_grid(2, 0.5) == [(0.0, 1.0), (0.5, 0.5), (1.0, 0.0)]
    grid = ens.simplex_grid(3, 0.1)
    assert len(grid) == 66 and all(abs(sum(w) - 1) < 1e-9 for w in grid)
    assert ens.simplex_grid(1, 0.25) == [(1.0,)]
    with pytest.raises(ValueError, match="divide 1"):
        ens.simplex_grid(2, 0.3)


def _dev_frame():
    """Two dev queries: member `lex` ranks q1's positive first by far and q2's a close second; `dense` the
    other way round; so each alone misses one query and only a mix ranks both positives first."""
    rows = []
    # q1: docs p (positive), n1, n2
    rows += [("q1", "p", 3.0, 0.9), ("q1", "n1", 0.0, 1.0), ("q1", "n2", 1.0, 0.0)]
    # q2: docs r (positive), m1, m2
    rows += [("q2", "r", 0.9, 3.0), ("q2", "m1", 1.0, 0.0), ("q2", "m2", 0.0, 1.0)]
    f = pd.DataFrame(rows, columns=["qid", "docid", ens.member_column("lex"), ens.member_column("dense")])
    return f, {"q1": {"p": 1}, "q2": {"r": 1}}


def test_fit_weights_picks_the_mix_on_dev_and_reports_each_member_alone():
    frame, qrels = _dev_frame()
    fit = ens.fit_weights(frame, ["lex", "dense"], qrels, step=0.5)
    assert fit["weights"] == {"lex": 0.5, "dense": 0.5}
    assert fit["ndcg@10"] == pytest.approx(1.0)
    assert fit["members_alone"]["lex"] < 1.0 and fit["members_alone"]["dense"] < 1.0
    assert fit["queries"] == 2 and fit["pairs"] == 6 and len(fit["grid"]) == 3
    # qrels of queries outside the frame (the test split, say) play no part
    more = {**qrels, "t1": {"zzz": 1}, "t2": {"p": 1}}
    assert ens.fit_weights(frame, ["lex", "dense"], more, step=0.5)["ndcg@10"] == pytest.approx(1.0)


def test_fused_scores_follow_the_record():
    frame, _ = _dev_frame()
    record = {"weights": {"lex": 0.25, "dense": 0.75}, "fusion": "zscore"}
    g = ens.group_index(frame["qid"])
    expect = 0.25 * ens.normalise(frame[ens.member_column("lex")], g) + \
        0.75 * ens.normalise(frame[ens.member_column("dense")], g)
    assert np.allclose(ens.fused_scores(frame, record), expect, atol=1e-6)


def test_bm25_pair_scores_equal_bm25s_retrieval_scores():
    import bm25s

    docs = ["the cat sat on the mat", "dogs are loyal pets", "a cat and a dog play", "stars and planets"]
    ids = ["d0", "d1", "d2", "d3"]
    scorer = ens.BM25PairScorer(ids, docs)
    r = bm25s.BM25()
    r.index(bm25s.tokenize(docs, stopwords="en", show_progress=False), show_progress=False)
    top, sc = r.retrieve(bm25s.tokenize(["cat dog"], stopwords="en", show_progress=False), k=4, show_progress=False)
    want = {ids[j]: float(s) for j, s in zip(top[0], sc[0])}
    got = scorer.score(["cat dog"] * 4 + ["the and", "unknownword"], ids + ["d0", "d1"])
    assert np.allclose(got[:4], [want[d] for d in ids])
    assert got[4] == 0.0 and got[5] == 0.0  # stopwords only / out-of-vocabulary: no lexical evidence


BASE = {"name": "e", "student": {"model": "s"}, "data": {"dev_queries": 5}}


def _teacher(**kw):
    return {"kind": "ensemble", "members": [{"name": "bm25", "kind": "bm25"},
                                             {"name": "dense", "kind": "dual-encoder", "model": "m"}], **kw}


def test_ensemble_config_validation():
    cfg = build_config({**BASE, "teacher": _teacher(fit_weights=True)})
    assert cfg.teacher.model is None and not cfg.teacher.finetunes
    assert cfg.teacher.vector_member().name == "dense"
    bad = [
        ({"kind": "ensemble"}, "needs teacher.members"),
        (_teacher(members=[{"name": "a", "kind": "bm25"}, {"name": "a", "kind": "bm25"}]), "repeat"),
        (_teacher(members=[{"name": "x", "kind": "bm25", "model": "m"}]), "bm25 takes no model"),
        (_teacher(members=[{"name": "x", "kind": "dual-encoder"}]), "needs a model"),
        (_teacher(members=[{"name": "x", "kind": "cross-encoder", "model": "finetuned"}]), "teacher.finetune"),
        (_teacher(members=[{"name": "x", "kind": "dual-encoder", "model": "finetuned"}]), "teacher stage's"),
        ({"kind": "cross-encoder"}, "teacher.model is required"),
        ({"kind": "cross-encoder", "model": "m", "members": [{"name": "a", "kind": "bm25"}]}, "ensemble only"),
    ]
    for teacher, msg in bad:
        with pytest.raises(ConfigError, match=msg):
            build_config({**BASE, "teacher": teacher})
    with pytest.raises(ConfigError, match="set data.dev_queries"):
        build_config({**BASE, "data": {}, "teacher": _teacher(fit_weights=True)})
    with pytest.raises(ConfigError, match="dual-encoder member"):
        build_config({**BASE, "scoring": {"store_embeddings": True},
                      "teacher": _teacher(members=[{"name": "bm25", "kind": "bm25"}])})
    ft = build_config({**BASE, "teacher": _teacher(model="ce", finetune=True, members=[
        {"name": "ce", "kind": "cross-encoder", "model": "finetuned"}, {"name": "bm25", "kind": "bm25"}])})
    assert ft.teacher.finetunes
    specs = ens.member_specs(ft.teacher, "/runs/x/teacher_model")
    assert specs[0]["path"] == "/runs/x/teacher_model" and specs[1]["path"] is None


def test_ensemble_reranker_in_process(tmp_path):
    """serve.core's ensemble reranker: a BM25 member over the indexed corpus and a dual-encoder member,
    fused with the record's weights per query, equal to the fusion computed by hand."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    from distill.models import DualEncoder
    from builders import make_beir, make_bow_encoder
    from serve.core import Reranking, TeacherSpec, doc_text

    info = make_beir(tmp_path / "data", topics=3, docs_per_topic=4, train_queries=4, test_queries=2)
    enc_dir = make_bow_encoder(tmp_path / "bow", info["vocab"], hidden=64)
    docs = [json.loads(x) for x in (tmp_path / "data" / "corpus.jsonl").read_text().splitlines()]
    pq.write_table(pa.table({"docid": [d["_id"] for d in docs], "title": [d["title"] for d in docs],
                             "text": [d["text"] for d in docs]}), tmp_path / "docs.parquet")
    record = {"members": [{"name": "bm25", "kind": "bm25", "path": None},
                          {"name": "bow", "kind": "dual-encoder", "path": str(enc_dir), "max_length": 32,
                           "head": "linear", "trust_remote_code": False}],
              "fusion": "zscore", "rrf_k": 60, "weights": {"bm25": 0.4, "bow": 0.6}}
    rr = Reranking(TeacherSpec("ensemble.json", "ensemble", ensemble=record), docs_path=tmp_path / "docs.parquet",
                   precision="fp32")  # checked against fp32 encodings
    texts = [doc_text(d["title"], d["text"]) for d in docs]
    queries = ["q one " + docs[0]["title"]] * 4 + [docs[5]["title"]] * 3
    cand = texts[:4] + texts[4:7]
    got = rr.score(queries, cand)
    bm = ens.BM25PairScorer(texts, texts).score(queries, cand)
    enc = DualEncoder(str(enc_dir), max_length=32)
    dense = np.array([float(enc.encode([q])[0] @ enc.encode([d])[0]) for q, d in zip(queries, cand)])
    g = ens.group_index(queries)
    assert np.allclose(got, 0.4 * ens.normalise(bm, g) + 0.6 * ens.normalise(dense, g), atol=1e-4)
    assert rr.score([], []).shape == (0,)
