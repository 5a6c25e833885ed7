"""distill.stages.index: the FAISS index over the encode stage's embeddings, with the texts for serving."""

from __future__ import annotations

import json
import types

import numpy as np
import pyarrow.parquet as pq

from distill.config import build_config
from distill.index import load_index
from distill.manifest import RunDir
from distill.stages import index as index_stage
from distill.stages.encode import write_embeddings


def test_the_index_holds_every_embedding_under_its_docid_and_the_texts(tmp_path):
    rd = RunDir(build_config({"teacher": {"model": "t"}, "student": {"model": "s"}},
                             [f"runs_dir={tmp_path}", "index.factory=Flat"]))
    docids = [f"d{i}" for i in range(6)]
    emb = np.eye(6, 8, dtype=np.float32)
    write_embeddings(rd.stage_path("encode"), docids, emb, shard_rows=4)  # two shards
    data = types.SimpleNamespace(corpus={d: (f"title {d}", f"text of {d}") for d in docids})
    counts = index_stage.run(rd, data)
    assert counts == {"vectors": 6, "dim": 8} and rd.is_done("index")
    idx = load_index(rd.stage_path("index"))
    ids, scores = idx.search(emb[[4, 1]], 1)
    assert [row[0] for row in ids] == ["d4", "d1"] and np.allclose(scores[:, 0], 1.0)
    docs = pq.read_table(rd.stage_path("index") / "docs.parquet").to_pylist()
    assert docs[2] == {"docid": "d2", "title": "title d2", "text": "text of d2"}
    meta = json.loads((rd.stage_path("index") / "meta.json").read_text())
    assert meta["factory"] == "Flat" and meta["version"] == rd.stages["index"]["digest"] or meta["version"]
    assert rd.stages["index"]["version"] == meta["version"]


def test_the_index_records_the_encoder_and_its_own_checksums(tmp_path):
    from distill.manifest import content_digest, dir_checksums

    rd = RunDir(build_config({"teacher": {"model": "t"}, "student": {"model": "s"}},
                             [f"runs_dir={tmp_path}", "index.factory=Flat"]))
    write_embeddings(rd.stage_path("encode"), ["d0", "d1"], np.eye(2, 4, dtype=np.float32))
    rd.mark_done("encode", {}, encoded_by="student", encoder_digest="ab" * 32)
    index_stage.run(rd)
    meta = json.loads((rd.stage_path("index") / "meta.json").read_text())
    assert meta["encoder_digest"] == "ab" * 32 and meta["documents_encoded_by"] == "student"
    files = dir_checksums(rd.stage_path("index"))
    assert sorted(files) == ["docids.parquet", "index.faiss", "meta.json"]
    assert rd.stages["index"]["files"] == files and rd.stages["index"]["content_digest"] == content_digest(files)
