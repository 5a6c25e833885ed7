import json
import os
import subprocess
import sys

import pytest

from distill.config import build_config
from distill.manifest import RunDir, RunDirError, stage_digest

BASE = {"teacher": {"model": "t"}, "student": {"model": "s"}}


def test_cli_rejects_unknown_key_with_message():
    r = subprocess.run([sys.executable, "-m", "distill", "run", "configs/demo.yaml", "training.lerning_rate=1"],
                       capture_output=True, text=True, timeout=120)
    assert r.returncode == 2
    assert "unknown config key 'training.lerning_rate'" in r.stderr


def test_cli_show_config_fills_defaults():
    r = subprocess.run([sys.executable, "-m", "distill", "show-config", "configs/demo.yaml", "index.factory=HNSW32"],
                       capture_output=True, text=True, timeout=120)
    assert r.returncode == 0, r.stderr
    cfg = json.loads(r.stdout)
    assert cfg["index"]["factory"] == "HNSW32" and cfg["evaluation"]["rerank_depth"] == 20


def test_stage_digest_depends_on_upstream_sections_only():
    a = build_config(BASE)
    b = build_config(BASE, ["training.max_steps=5"])
    assert stage_digest(a, "score") == stage_digest(b, "score")
    assert stage_digest(a, "train") != stage_digest(b, "train")
    assert stage_digest(a, "evaluate") != stage_digest(b, "evaluate")


def test_atomic_output_leaves_nothing_on_failure(tmp_path):
    cfg = build_config(BASE, [f"runs_dir={tmp_path}"])
    rd = RunDir(cfg)
    with pytest.raises(RuntimeError):
        with rd.atomic_output("encode") as tmp:
            (tmp / "part-00000.parquet").write_text("half")
            raise RuntimeError("killed")
    assert list(rd.path.iterdir()) == []
    with rd.atomic_output("encode") as tmp:
        (tmp / "x").write_text("done")
    rd.mark_done("encode", {"rows": 1})
    assert RunDir(cfg).is_done("encode")
    assert not RunDir(build_config(BASE, [f"runs_dir={tmp_path}", "encoding.batch_size=3"])).is_done("encode")


@pytest.mark.skipif(os.geteuid() == 0, reason="root can write anywhere")
def test_unwritable_run_dir(tmp_path):
    tmp_path.chmod(0o500)
    with pytest.raises(RunDirError, match=str(tmp_path)):
        RunDir(build_config(BASE, [f"runs_dir={tmp_path}/sub"]))


def test_unwritable_run_dir_as_root(tmp_path):
    blocker = tmp_path / "file"
    blocker.write_text("not a dir")
    with pytest.raises(RunDirError, match="cannot create run directory"):
        RunDir(build_config(BASE, [f"runs_dir={blocker}"]))


def test_mark_done_records_the_checksums_of_what_serving_reads(tmp_path):
    from distill.manifest import content_digest, file_sha256

    rd = RunDir(build_config(BASE, [f"runs_dir={tmp_path}"]))
    with rd.atomic_output("train") as tmp:
        (tmp / "config.json").write_text("{}")
        (tmp / "1_Pooling").mkdir()
        (tmp / "1_Pooling" / "config.json").write_text('{"pooling": "mean"}')
    (rd.stage_path("train") / "README.md").write_text("card")  # written after the stage: not content
    (rd.stage_path("train") / "onnx").mkdir()
    (rd.stage_path("train") / "onnx" / "model.onnx").write_bytes(b"x")
    rd.mark_done("train", {"steps": 1})
    entry = RunDir(rd.config).stages["train"]
    student = rd.stage_path("train")
    assert entry["files"] == {"1_Pooling/config.json": file_sha256(student / "1_Pooling" / "config.json"),
                              "config.json": file_sha256(student / "config.json")}
    assert entry["content_digest"] == content_digest(entry["files"]) and len(entry["content_digest"]) == 64
    (student / "README.md").write_text("card with metrics")  # the evaluate stage refreshes the card
    assert content_digest(entry["files"]) == content_digest({k: file_sha256(student / k) for k in entry["files"]})
    with rd.atomic_output("encode") as tmp:
        (tmp / "part-00000.parquet").write_text("x")
    rd.mark_done("encode", {})
    assert "files" not in rd.stages["encode"]  # not served: not hashed
    with rd.atomic_output("score") as tmp:
        (tmp / "scores.parquet").write_text("big")
    rd.mark_done("score", {})
    assert "files" not in rd.stages["score"]  # only an ensemble's ensemble.json is recorded
    (rd.stage_path("score") / "ensemble.json").write_text("{}")
    rd.mark_done("score", {})
    assert rd.stages["score"]["files"] == {"ensemble.json": file_sha256(rd.stage_path("score") / "ensemble.json")}
