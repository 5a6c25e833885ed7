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
