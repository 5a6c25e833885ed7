"""No Ray: partial shard folders (distill/partial.py), fault points (distill/faults.py) and failed writes in
``atomic_output``, including a real full-file error (RLIMIT_FSIZE -> EFBIG, which works as root too)."""

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pyarrow.parquet as pq
import pytest

from distill.config import build_config
from distill.faults import from_env
from distill.manifest import RunDir, RunDirError
from distill.partial import PartialShards, dir_digest
from distill.stages.encode import embeddings_table

ROOT = Path(__file__).resolve().parents[2]
BASE = {"teacher": {"model": "t"}, "student": {"model": "s"}}


def _ids(p):
    return pq.read_table(p, columns=["docid"]).column("docid").to_pylist()


def _write(ids, dim=4):
    return lambda tmp: pq.write_table(embeddings_table(ids, np.ones((len(ids), dim), np.float32)), tmp)


def test_fault_spec_from_env(monkeypatch):
    monkeypatch.delenv("DISTILL_FAULT", raising=False)
    assert from_env("encode.batch") is None
    monkeypatch.setenv("DISTILL_FAULT", "encode.batch@3")
    monkeypatch.setenv("DISTILL_FAULT_ONCE_FILE", "/x/once")
    assert from_env("encode.batch") == {"point": "encode.batch", "n": 3, "action": "exit", "once_file": "/x/once"}
    assert from_env("score.batch") is None
    monkeypatch.setenv("DISTILL_FAULT", "encode.shard@1:hold")
    assert from_env("encode.shard")["action"] == "hold"
    monkeypatch.setenv("DISTILL_FAULT", "encode.shard@1:explode")
    with pytest.raises(ValueError, match="exit or hold"):
        from_env("encode.shard")


def test_fault_fires_once_on_nth_hit(tmp_path):
    once = tmp_path / "once"
    code = ("import sys; from distill.faults import Fault\n"
            f"f = Fault({{'n': 2, 'action': 'exit', 'once_file': {str(once)!r}}})\n"
            "for i in range(4):\n    f.hit(); print(i, flush=True)\n")
    first = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, timeout=60)
    assert first.returncode == 17 and first.stdout.split() == ["0"]  # died in its 2nd hit
    assert once.read_text().isdigit() and list(tmp_path.iterdir()) == [once]
    again = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, timeout=60)
    assert again.returncode == 0 and again.stdout.split() == ["0", "1", "2", "3"]  # a restart passes


def test_partial_shards_keep_whole_shards_and_drop_stale_ones(tmp_path):
    shards = [["a", "b"], ["c", "d"], ["e"]]
    ps = PartialShards(tmp_path / ".out.partial", "key1")
    ps.save(0, _write(shards[0]))
    ps.save(2, _write(["e", "x"]))  # wrong ids for shard 2: not a finished shard
    (ps.path / "shard-00001.parquet.tmp-999").write_bytes(b"half")  # a run died while writing shard 1
    ps = PartialShards(tmp_path / ".out.partial", "key1")  # the re-run
    assert not (ps.path / "shard-00001.parquet.tmp-999").exists()
    assert ps.finished(shards, _ids) == {0}
    assert sorted(p.name for p in ps.path.iterdir()) == ["meta.json", "shard-00000.parquet"]
    ps = PartialShards(tmp_path / ".out.partial", "key2")  # another config: everything is dropped
    assert ps.finished(shards, _ids) == set() and [p.name for p in ps.path.iterdir()] == ["meta.json"]
    assert json.loads((ps.path / "meta.json").read_text()) == {"key": "key2"}


def test_partial_shard_write_error_names_the_file_and_leaves_nothing(tmp_path):
    ps = PartialShards(tmp_path / "p", "k")

    def fails(tmp):
        tmp.write_bytes(b"half a shard")
        raise OSError(28, "No space left on device")

    with pytest.raises(RunDirError, match=f"cannot write {ps.shard_path(0)}: No space left on device"):
        ps.save(0, fails)
    assert [p.name for p in ps.path.iterdir()] == ["meta.json"]


def test_partial_folder_blocked_by_a_file(tmp_path):
    (tmp_path / "p").write_text("not a folder")
    with pytest.raises(RunDirError, match=f"{tmp_path / 'p'} exists and is not a directory"):
        PartialShards(tmp_path / "p", "k")


def test_dir_digest_sees_content(tmp_path):
    (tmp_path / "m").mkdir()
    (tmp_path / "m" / "w.bin").write_bytes(b"1")
    a = dir_digest(tmp_path / "m")
    (tmp_path / "m" / "w.bin").write_bytes(b"2")
    assert dir_digest(tmp_path / "m") != a


def test_atomic_output_oserror_becomes_run_dir_error(tmp_path):
    rd = RunDir(build_config(BASE, [f"runs_dir={tmp_path}"]))
    (rd.path / ".embeddings.tmp-1").mkdir()  # left by a killed run
    with pytest.raises(RunDirError, match=f"cannot write {rd.stage_path('encode')}: Read-only file system"):
        with rd.atomic_output("encode") as tmp:
            (tmp / "part-00000.parquet").write_text("half")
            raise OSError(30, "Read-only file system")
    assert list(rd.path.iterdir()) == []  # neither this run's temporary folder nor the old one


FULL = """
import resource, signal, sys
import numpy as np, pyarrow.parquet as pq
from distill.config import build_config
from distill.manifest import RunDir
from distill.partial import PartialShards
from distill.stages.encode import embeddings_table
rd = RunDir(build_config({"teacher": {"model": "t"}, "student": {"model": "s"}}, [f"runs_dir={sys.argv[1]}"]))
signal.signal(signal.SIGXFSZ, signal.SIG_IGN)
resource.setrlimit(resource.RLIMIT_FSIZE, (4096, resource.RLIM_INFINITY))
ps = PartialShards(rd.path / ".embeddings.partial", "k")
ids = [f"d{i}" for i in range(100)]
ps.save(0, lambda t: pq.write_table(embeddings_table(ids[:5], np.ones((5, 8), np.float32)), t))  # fits
ps.save(1, lambda t: pq.write_table(embeddings_table(ids, np.random.rand(100, 8).astype("f4")), t))  # no
"""


def test_disk_full_while_saving_a_shard(tmp_path):
    """A real failing write: RLIMIT_FSIZE makes writes past 4 KiB fail with EFBIG, as a full disk (ENOSPC)
    fails them; unlike a read-only folder, root cannot bypass it."""
    r = subprocess.run([sys.executable, "-c", FULL, str(tmp_path)], cwd=ROOT, capture_output=True, text=True,
                       timeout=60)
    partial = tmp_path / "demo" / ".embeddings.partial"
    assert r.returncode == 1 and f"RunDirError: cannot write {partial}/shard-00001.parquet: " in r.stderr
    assert "File too large" in r.stderr
    assert sorted(p.name for p in partial.iterdir()) == ["meta.json", "shard-00000.parquet"]  # no half shard
    assert _ids(partial / "shard-00000.parquet") == [f"d{i}" for i in range(5)]


def test_train_step_fault_spec(monkeypatch):
    from distill.faults import train_step_from_env

    for k in ("DISTILL_FAULT", "DISTILL_FAIL_AT_STEP", "DISTILL_FAIL_ONCE_FILE"):
        monkeypatch.delenv(k, raising=False)
    assert train_step_from_env("/w/fault.once") is None
    monkeypatch.setenv("DISTILL_FAIL_AT_STEP", "5")
    assert train_step_from_env("/w/fault.once") == {"point": "train.step", "n": 5, "action": "exit",
                                                    "once_file": "/w/fault.once", "record": "hit"}
    monkeypatch.setenv("DISTILL_FAIL_ONCE_FILE", "/x/train.once")
    assert train_step_from_env("/w/fault.once")["once_file"] == "/x/train.once"
    monkeypatch.delenv("DISTILL_FAIL_AT_STEP")
    monkeypatch.setenv("DISTILL_FAULT", "train.step@3")  # the general spelling; always once
    assert train_step_from_env("/w/fault.once") == {"point": "train.step", "n": 3, "action": "exit",
                                                    "once_file": "/w/fault.once", "record": "hit"}


def test_train_step_fault_fires_at_a_global_step_once_and_records_it(tmp_path):
    """Hit numbers are global steps (a resumed worker starts past 1); the once-file holds the step."""
    once = tmp_path / "train.once"
    code = ("from distill.faults import Fault\n"
            f"f = Fault({{'n': 5, 'action': 'exit', 'once_file': {str(once)!r}, 'record': 'hit'}})\n"
            "for step in range(4, 8):\n    f.hit(at=step); print(step, flush=True)\n")
    first = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, timeout=60)
    assert first.returncode == 17 and first.stdout.split() == ["4"] and once.read_text() == "5"
    again = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, timeout=60)
    assert again.returncode == 0 and again.stdout.split() == ["4", "5", "6", "7"]
    from distill.faults import Fault

    Fault(None).hit(at=5)  # no spec: nothing happens
