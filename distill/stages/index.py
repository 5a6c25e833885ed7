"""Stage ``index``: FAISS index over the student's corpus embeddings (factory string from config)."""

from __future__ import annotations

import pyarrow as pa
import pyarrow.parquet as pq

from distill.index import build_index, save_index
from distill.manifest import stage_digest
from distill.stages.encode import read_embeddings


def run(rd, data=None) -> dict:
    """Build and save the index; with ``data``, also store titles and texts for serving (docs.parquet).
    ``meta.json`` records ``encoder_digest``: the content digest of the model that encoded the documents
    (the encode stage's, distill.stages.encode.encoder_digest), which serving pairs with the student."""
    cfg = rd.config
    docids, emb = read_embeddings(rd.stage_path("encode"))
    index = build_index(emb, cfg.index.factory, cfg.index.metric, cfg.index.train_size, seed=cfg.seed)
    version = stage_digest(cfg, "index")
    with rd.atomic_output("index") as tmp:
        save_index(index, docids, tmp, factory=cfg.index.factory, metric=cfg.index.metric, version=version,
                   run=cfg.name, nprobe=cfg.index.nprobe, ef_search=cfg.index.ef_search,
                   documents_encoded_by=rd.stages.get("encode", {}).get("encoded_by", "student"),
                   encoder_digest=rd.stages.get("encode", {}).get("encoder_digest"))
        if data is not None:
            pq.write_table(pa.table({"docid": docids, "title": [data.corpus[d][0] for d in docids],
                                     "text": [data.corpus[d][1] for d in docids]}), tmp / "docs.parquet")
    counts = {"vectors": int(index.ntotal), "dim": int(index.d)}
    rd.mark_done("index", counts, version=version)
    return counts
