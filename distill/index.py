"""FAISS index from a factory string, stored without pickle, and the search used by eval and serving.

On disk (``runs/<name>/index/``): ``index.faiss`` (``faiss.write_index``), ``docids.parquet`` (row i =
FAISS id i), ``meta.json`` (factory, metric, dim, count, source digest). ``Flat`` is exact; ``HNSW32``
and ``IVF<n>,PQ<m>`` are approximate and tuned at search time by ``ef_search`` / ``nprobe``.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

import faiss
import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

FAISS_METRICS = {"ip": faiss.METRIC_INNER_PRODUCT, "l2": faiss.METRIC_L2}  # index.metric -> FAISS metric


class FaissIndexError(ValueError):
    """An index that cannot be built or loaded as asked."""


def build_index(embeddings: np.ndarray, factory: str = "Flat", metric: str = "ip",
                train_size: int | None = None, seed: int = 0) -> faiss.Index:
    """Build and fill a FAISS index; IVF/PQ indexes are trained on (a sample of) the embeddings."""
    x = np.ascontiguousarray(embeddings, dtype=np.float32)
    if x.ndim != 2 or len(x) == 0:
        raise FaissIndexError(f"embeddings must be a non-empty [n, dim] array, got shape {x.shape}")
    try:
        index = faiss.index_factory(x.shape[1], factory, FAISS_METRICS[metric])
    except RuntimeError as err:
        raise FaissIndexError(f"invalid FAISS factory string {factory!r}: {str(err).splitlines()[-1]}") from None
    if not index.is_trained:
        sample = x
        if train_size and train_size < len(x):
            sample = x[np.random.default_rng(seed).choice(len(x), train_size, replace=False)]
        index.train(sample)
    index.add(x)
    return index


@dataclass
class SearchIndex:
    index: faiss.Index
    docids: list[str]
    meta: dict

    def configure(self, nprobe: int | None = None, ef_search: int | None = None) -> None:
        params = []
        if nprobe and "IVF" in self.meta.get("factory", ""):
            params.append(f"nprobe={nprobe}")
        if ef_search and "HNSW" in self.meta.get("factory", ""):
            params.append(f"efSearch={ef_search}")
        if params:
            faiss.ParameterSpace().set_index_parameters(self.index, ",".join(params))

    def search(self, queries: np.ndarray, k: int) -> tuple[list[list[str]], np.ndarray]:
        """Top-k document ids and scores for each query row (missing slots are dropped)."""
        q = np.ascontiguousarray(queries, dtype=np.float32)
        if q.ndim == 1:
            q = q[None]
        k = min(k, len(self.docids))
        scores, ids = self.index.search(q, k)
        out = [[self.docids[j] for j in row if j >= 0] for row in ids]
        return out, scores

    def __len__(self) -> int:
        return len(self.docids)


def save_index(index: faiss.Index, docids: list[str], path: str | Path, **meta) -> None:
    path = Path(path)
    path.mkdir(parents=True, exist_ok=True)
    if index.ntotal != len(docids):
        raise FaissIndexError(f"index holds {index.ntotal} vectors but {len(docids)} docids were given")
    faiss.write_index(index, str(path / "index.faiss"))
    pq.write_table(pa.table({"docid": pa.array(docids, pa.string())}), path / "docids.parquet")
    (path / "meta.json").write_text(json.dumps({"dim": index.d, "count": index.ntotal, **meta}, indent=2))


def load_index(path: str | Path, nprobe: int | None = None, ef_search: int | None = None) -> SearchIndex:
    path = Path(path)
    for name in ("index.faiss", "docids.parquet", "meta.json"):
        if not (path / name).exists():
            raise FaissIndexError(f"index directory {path} lacks {name}")
    index = faiss.read_index(str(path / "index.faiss"))
    docids = pq.read_table(path / "docids.parquet").column("docid").to_pylist()
    meta = json.loads((path / "meta.json").read_text())
    if index.ntotal != len(docids):
        raise FaissIndexError(f"{path}: index holds {index.ntotal} vectors but docids.parquet {len(docids)} rows")
    si = SearchIndex(index, docids, meta)
    si.configure(nprobe=nprobe, ef_search=ef_search)
    return si
