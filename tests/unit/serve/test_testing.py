"""serve/testing.py: the run directories serving tests are built on (make_serve_run; make_sample_run needs the
MiniLM package and is exercised by the benchmarks) and its JSONL readers."""

from __future__ import annotations

import json

import pyarrow.parquet as pq

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
    assert manifest["stages"]["index"] == {"version": "unit-v1", "output": "index"}
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
