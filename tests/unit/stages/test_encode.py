"""distill.stages.encode without Ray: the embeddings' parquet shards, and the stage's own inputs."""

from __future__ import annotations

import numpy as np
import pyarrow.parquet as pq

from distill.config import build_config
from distill.manifest import RunDir
from distill.stages import encode


def test_embeddings_round_trip_through_parquet_shards(tmp_path):
    ids = [f"d{i}" for i in range(5)]
    emb = np.random.default_rng(0).standard_normal((5, 3)).astype(np.float32)
    assert encode.write_embeddings(tmp_path / "e", ids, emb, shard_rows=2) == 3
    assert sorted(p.name for p in (tmp_path / "e").iterdir()) == [f"part-0000{k}.parquet" for k in range(3)]
    got_ids, got = encode.read_embeddings(tmp_path / "e")
    assert got_ids == ids and got.dtype == np.float32 and np.array_equal(got, emb)
    t = pq.read_table(tmp_path / "e" / "part-00000.parquet")
    assert t.schema.field("embedding").type.list_size == 3


def test_the_stage_encodes_with_the_student_or_an_asymmetric_runs_teacher(tmp_path, monkeypatch):
    calls = []
    monkeypatch.setattr(encode, "encode_corpus", lambda rd, data, model, kw=None: calls.append((model, kw)) or {})
    base = {"teacher": {"model": "/t", "kind": "dual-encoder", "max_length": 64}, "student": {"model": "s"}}
    rd = RunDir(build_config(base, [f"runs_dir={tmp_path}"]))
    encode.run(rd, None)
    asym = RunDir(build_config(base, [f"runs_dir={tmp_path}", "name=asym", "training.asymmetric=true",
                                          "scoring.store_embeddings=true"]))
    encode.run(asym, None)
    assert calls == [(rd.stage_path("train"), None), ("/t", {"max_length": 64, "trust_remote_code": False})]


def test_the_encoder_digest_is_the_students_content_or_the_runs_own_teachers(tmp_path):
    from distill.manifest import content_digest, dir_checksums

    rd = RunDir(build_config({"teacher": {"model": "/t"}, "student": {"model": "s"}}, [f"runs_dir={tmp_path}"]))
    student = rd.stage_path("train")
    student.mkdir()
    (student / "config.json").write_text("{}")
    (student / "model.safetensors").write_bytes(b"weights")
    want = content_digest(dir_checksums(student))
    assert encode.encoder_digest(rd, student) == want
    (student / "README.md").write_text("the model card, refreshed later")
    assert encode.encoder_digest(rd, student) == want  # not part of the content
    (student / "model.safetensors").write_bytes(b"other weights")
    assert encode.encoder_digest(rd, student) != want
    kw = {"max_length": 64, "trust_remote_code": False}
    assert encode.encoder_digest(rd, tmp_path / "elsewhere", kw) is None  # a teacher from outside the run
    teacher = rd.stage_path("teacher")
    teacher.mkdir()
    (teacher / "config.json").write_text('{"t": 1}')
    assert encode.encoder_digest(rd, teacher, kw) == content_digest(dir_checksums(teacher))
