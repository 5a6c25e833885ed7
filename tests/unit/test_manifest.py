import json
import os
import subprocess
import sys

import pytest

from distill.config import build_config
from distill.manifest import STAGES, RunDir, RunDirError, downstream, stage_digest, upstream

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


def test_mining_does_not_read_the_teacher_so_a_teacher_change_keeps_the_candidates():
    assert upstream("mine") == ["mine"] and upstream("score") == ["teacher", "mine", "score"]
    assert upstream("evaluate") == STAGES and upstream("mine", legacy=True) == ["teacher", "mine"]
    assert downstream("teacher") == ["teacher", "score", "train", "encode", "index", "evaluate"]
    assert downstream("mine") == STAGES[1:]
    a = build_config(BASE)
    b = build_config(BASE, ["teacher.max_length=64"])
    assert stage_digest(a, "mine") == stage_digest(b, "mine")
    assert stage_digest(a, "teacher") != stage_digest(b, "teacher")
    assert stage_digest(a, "score") != stage_digest(b, "score")
    assert stage_digest(a, "mine", legacy=True) != stage_digest(b, "mine", legacy=True)
    for stage in STAGES:  # only mine's digest changed when the chain became a graph
        assert (stage_digest(a, stage) == stage_digest(a, stage, legacy=True)) == (stage != "mine")


def _finish(rd, stage):
    with rd.atomic_output(stage) as tmp:
        (tmp / "out").write_text(stage)
    rd.mark_done(stage, {"n": 1})


def test_a_new_teacher_reruns_scoring_and_after_but_keeps_the_mined_candidates(tmp_path):
    rd = RunDir(build_config({**BASE, "runs_dir": str(tmp_path)}))
    for stage in STAGES[:4]:
        _finish(rd, stage)
    rd.invalidate_from("teacher")
    assert sorted(rd.stages) == ["mine"] and rd.is_done("mine")
    rd.invalidate_from("mine")
    assert rd.stages == {}


def test_a_manifest_recording_mine_by_the_linear_digest_keeps_its_candidates(tmp_path):
    """Manifests written before mining's digest left out the teacher record the old digest: still finished."""
    cfg = build_config({**BASE, "runs_dir": str(tmp_path)})
    rd = RunDir(cfg)
    _finish(rd, "mine")
    rd.stages["mine"]["digest"] = rd.digest("mine", legacy=True)
    rd.save()
    assert rd.digest("mine", legacy=True) != rd.digest("mine") and RunDir(cfg).is_done("mine")
    rd.stages["mine"]["digest"] = "0" * 16
    rd.save()
    assert not RunDir(cfg).is_done("mine")


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
