"""serve/testing.py: the run directories serving tests are built on (make_serve_run; make_sample_run needs the
MiniLM package and is exercised by the benchmarks) and its JSONL readers."""

from __future__ import annotations

import json
import logging

import pyarrow.parquet as pq
import pytest

from serve import testing


def test_readers_skip_blank_lines(tmp_path):
    (tmp_path / "c.jsonl").write_text(json.dumps({"_id": "d1", "text": "x"}) + "\n\n" +
                                      json.dumps({"_id": "d2", "text": "y"}) + "\n")
    assert testing.read_corpus(tmp_path / "c.jsonl") == [{"_id": "d1", "text": "x"}, {"_id": "d2", "text": "y"}]
    assert testing.read_queries(tmp_path / "c.jsonl") == ["x", "y"]


def test_builders_are_the_tests_builders():
    import builders

    assert testing._builders() is builders
    assert testing.TESTS_DIR == testing.PROJECT_ROOT / "tests" and (testing.TESTS_DIR / "builders.py").is_file()


def test_make_serve_run_writes_a_servable_run(tiny_run):
    from serve.core import RunArtifacts

    run = tiny_run["run_dir"]
    assert (tiny_run["version"], tiny_run["max_length"]) == ("unit-v1", 16) and len(tiny_run["queries"]) == 90
    manifest = json.loads((run / "manifest.json").read_text())
    assert manifest["config"]["name"] == "run" and manifest["config_hash"] == "test-unit-v1"
    assert manifest["config"]["teacher"] == {"kind": "cross-encoder", "model": str(run / "teacher_model"),
                                             "max_length": 64, "finetune": True}
    from distill.manifest import content_digest, dir_checksums

    for stage, out in (("teacher", "teacher_model"), ("train", "student"), ("index", "index")):
        files = dir_checksums(run / out)  # what distill.manifest.RunDir.mark_done records
        assert manifest["stages"][stage]["output"] == out and manifest["stages"][stage]["files"] == files
        assert manifest["stages"][stage]["content_digest"] == content_digest(files)
    assert manifest["stages"]["index"]["version"] == "unit-v1"
    assert manifest["stages"]["teacher"]["model"] == str(run / "teacher_model")
    meta = json.loads((run / "index" / "meta.json").read_text())
    assert meta["encoder_digest"] == content_digest(dir_checksums(run / "student"))  # the encode stage's pairing
    art = RunArtifacts.load(run)
    assert art.student == run / "student" and art.docs is not None
    assert (run / "teacher_model" / "model.safetensors").is_file()
    docs = pq.read_table(run / "index" / "docs.parquet").to_pandas()
    assert list(docs.columns) == ["docid", "title", "text"] and len(docs) == 120  # make_beir's 12 x 10
    assert not (run.parent / ".run-src").exists()  # the generated sources are removed


def test_make_serve_run_without_teacher_or_docs(tmp_path):
    made = testing.make_serve_run(tmp_path / "bare", version="v2", seed=3, with_docs=False, teacher=False,
                                  max_length=8)
    run = made["run_dir"]
    assert made["version"] == "v2" and made["max_length"] == 8
    assert not (run / "teacher_model").exists() and not (run / "index" / "docs.parquet").exists()
    assert json.loads((run / "student" / "distill_encoder.json").read_text())["max_length"] == 8
    assert json.loads((run / "index" / "meta.json").read_text())["version"] == "v2"


@pytest.mark.parametrize("full", [True, False])
def test_a_built_run_verifies_like_a_real_one(tmp_path, caplog, full):
    """serve.snapshot checks a built run against its recorded checksums and pairs student and index: no
    "no checksums recorded" warning, nor any other."""
    from serve import snapshot

    run = testing.make_serve_run(tmp_path / "run", teacher=full, with_docs=full)["run_dir"]
    with caplog.at_level(logging.WARNING):
        snap = snapshot.create(run)
    record = snapshot.verify(snap)
    assert record["source_verified"] is True and record["unverified_parts"] == []
    assert record["pairing_checked"] is True
    assert [r for r in caplog.records if r.levelno >= logging.WARNING] == []
    assert ("teacher_model/model.safetensors" in record["files"]) is full
    assert ("index/docs.parquet" in record["files"]) is full
