"""Run directories (no Ray): stage digests follow the input files each stage reads, one run at a time per
directory (``run.lock``: a second run fails at once naming the holder, a dead holder's lock is taken
over), run names stay one directory under a resolved ``runs_dir``, and stage outputs are fsynced and
renamed over the old output (never delete-then-rename)."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest

import distill.atomic as atomic
import distill.manifest as manifest
from distill.config import ConfigError, build_config
from distill.manifest import LOCK_NAME, STAGES, RunDir, RunDirError, RunLock, stage_input_roles
from distill.sweep import share_stages, variant_config

ROOT = Path(__file__).resolve().parents[2]
BASE = {"teacher": {"model": "t"}, "student": {"model": "s"}}


def _data(d: Path) -> Path:
    (d / "qrels").mkdir(parents=True)
    (d / "corpus.jsonl").write_text('{"_id": "d1", "title": "a", "text": "alpha beta"}\n'
                                    '{"_id": "d2", "title": "b", "text": "gamma delta"}\n')
    (d / "queries.jsonl").write_text('{"_id": "q1", "text": "alpha"}\n{"_id": "q2", "text": "gamma"}\n')
    (d / "qrels" / "train.tsv").write_text("query-id\tcorpus-id\tscore\nq1\td1\t1\n")
    (d / "qrels" / "test.tsv").write_text("query-id\tcorpus-id\tscore\nq2\td2\t1\n")
    return d


def _cfg(tmp_path, *overrides):
    return build_config(BASE, [f"runs_dir={tmp_path / 'runs'}", f"data.dir={tmp_path / 'data'}", *overrides])


def _open(cfg) -> RunDir:
    """A run directory as the pipeline opens it: the inputs' checksums recorded first."""
    rd = RunDir(cfg)
    rd.record_inputs([p for ps in manifest.input_files(cfg).values() for p in ps if p.exists()])
    return rd


def _finish(rd: RunDir, stage: str) -> None:
    with rd.atomic_output(stage) as tmp:
        (tmp / "out").write_text(stage)
    rd.mark_done(stage, {"n": 1})


# ---- input checksums in stage digests ------------------------------------------------------------------
def test_a_changed_input_reruns_the_stages_that_read_it_and_nothing_else(tmp_path):
    data = _data(tmp_path / "data")
    cfg = _cfg(tmp_path)
    rd = _open(cfg)
    for stage in STAGES:
        _finish(rd, stage)
    assert all(_open(cfg).is_done(s) for s in STAGES)
    assert rd.stages["mine"]["inputs"]["corpus"] == [manifest.file_sha256(data / "corpus.jsonl")]

    with open(data / "qrels" / "test.tsv", "a") as f:  # only evaluation reads the test qrels
        f.write("q1\td2\t1\n")
    rd = _open(cfg)
    assert [s for s in STAGES if not rd.is_done(s)] == ["evaluate"]
    _finish(rd, "evaluate")

    with open(data / "corpus.jsonl", "a") as f:  # the probe: one line appended to the corpus
        f.write('{"_id": "d3", "title": "c", "text": "epsilon"}\n')
    rd = _open(cfg)
    assert [s for s in STAGES if not rd.is_done(s)] == STAGES  # the fine-tuned teacher reads it too
    not_finetuned = _cfg(tmp_path, "teacher.finetune=false")
    assert "corpus" not in stage_input_roles(not_finetuned, "teacher")
    assert "corpus" in stage_input_roles(not_finetuned, "mine")
    assert stage_input_roles(not_finetuned, "evaluate") == ["corpus", "qrels/test", "qrels/train", "queries"]


def test_the_pipeline_notices_an_edited_corpus(tmp_path, monkeypatch):
    """run_pipeline end to end with the stages stubbed: a re-run skips everything until the corpus
    changes, then re-runs from mining; the lock is gone after each run, also after a failed one."""
    import distill.pipeline as pipeline

    data = _data(tmp_path / "data")
    ran: list[str] = []

    def fake_stage(rd, data, stage):
        ran.append(stage)
        if stage == "fail":
            raise RuntimeError("boom")
        _finish(rd, stage)
        return {"n": 1}

    monkeypatch.setattr(pipeline, "run_stage", fake_stage)
    cfg = _cfg(tmp_path, "teacher.finetune=false", "data.max_reject_share=1.0")
    lines: list[str] = []
    rd = pipeline.run_pipeline(cfg, log=lines.append)
    assert ran == STAGES and not (rd.path / LOCK_NAME).exists()
    assert f"[run] demo: run directory {(tmp_path / 'runs' / 'demo').resolve()}" in lines
    ran.clear()
    pipeline.run_pipeline(cfg, log=lines.append)
    assert ran == []
    with open(data / "corpus.jsonl", "a") as f:
        f.write('{"_id": "d3", "title": "c", "text": "epsilon"}\n')
    pipeline.run_pipeline(cfg, log=lines.append)
    assert ran == STAGES[1:]  # teacher (not fine-tuned) reads no input file
    assert json.loads(rd.manifest_path.read_text())["data"]["rows"]["corpus"] == 3

    monkeypatch.setattr(pipeline, "run_stage", lambda rd, data, stage: fake_stage(rd, data, "fail"))
    with pytest.raises(RuntimeError, match="boom"):
        pipeline.run_pipeline(cfg, only=["encode"], force=True, log=lines.append)
    assert not (rd.path / LOCK_NAME).exists()


def test_sweep_runs_share_the_base_runs_inputs_and_lock_their_own_directories(tmp_path):
    _data(tmp_path / "data")
    cfg = build_config({**BASE, "runs_dir": str(tmp_path / "runs"), "data": {"dir": str(tmp_path / "data")},
                        "sweep": {"seeds": [0, 1]}})
    base = _open(cfg)
    for stage in ("teacher", "mine", "score", "train"):
        _finish(base, stage)
    with base.locked():
        variant = RunDir(variant_config(cfg, "distilled", 1, {}))
        assert variant.path.is_relative_to(base.path / "sweep")
        with variant.locked():  # the base holds its own lock; the sub-run takes another
            variant.manifest["inputs"] = base.manifest["inputs"]  # as run_pipeline hands them over
            assert list(share_stages(base, variant)) == ["teacher", "mine", "score"]
            assert (variant.path / LOCK_NAME).exists() and (base.path / LOCK_NAME).exists()
        other = RunDir(variant_config(cfg, "distilled", 2, {}))
        other.manifest["inputs"] = {k: "0" * 64 for k in base.manifest["inputs"]}  # other input files
        assert share_stages(base, other) == {}  # the fine-tuned teacher read them too: nothing shared
    assert not (base.path / LOCK_NAME).exists()


def test_later_rounds_follow_the_inputs_too(tmp_path):
    data = _data(tmp_path / "data")
    cfg = _cfg(tmp_path, "rounds=2")
    rd = _open(cfg)
    for r in (1, 2):
        view = rd.for_round(r)
        for stage in view.stage_order:
            _finish(view, stage)
    assert _open(cfg).for_round(2).is_done("evaluate")
    with open(data / "qrels" / "test.tsv", "a") as f:
        f.write("q1\td2\t1\n")
    rd = _open(cfg)
    assert not rd.for_round(2).is_done("evaluate") and rd.for_round(2).is_done("index")


# ---- the lock ------------------------------------------------------------------------------------------
HOLD = """
import sys, time
from distill.manifest import RunLock
lock = RunLock(sys.argv[1])
lock.acquire()
print("held", flush=True)
sys.stdin.readline()
lock.release()
"""


@pytest.fixture
def holder(tmp_path):
    """Another process holding the lock of tmp_path/runs/demo until the test ends."""
    d = tmp_path / "runs" / "demo"
    d.mkdir(parents=True)
    p = subprocess.Popen([sys.executable, "-c", HOLD, str(d)], stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                         text=True, cwd=ROOT)
    assert p.stdout.readline().strip() == "held"
    yield p
    p.stdin.write("\n")
    p.stdin.flush()
    p.wait(timeout=30)


def test_a_second_run_fails_at_once_naming_the_holder(tmp_path, holder):
    d = tmp_path / "runs" / "demo"
    t0 = time.perf_counter()
    with pytest.raises(RunDirError) as err:
        RunLock(d).acquire()
    assert time.perf_counter() - t0 < 1.0
    assert f"pid {holder.pid} on host {socket.gethostname()}" in str(err.value)
    with pytest.raises(RunDirError, match=f"pid {holder.pid}"):
        with RunDir(build_config(BASE, [f"runs_dir={tmp_path / 'runs'}"])).locked():
            pass
    assert json.loads((d / LOCK_NAME).read_text())["pid"] == holder.pid  # untouched by the refused run


def test_the_cli_refuses_a_run_directory_in_use(tmp_path, holder):
    cfg = tmp_path / "run.yaml"
    cfg.write_text(json.dumps({**BASE, "runs_dir": str(tmp_path / "runs"), "data": {"dir": str(tmp_path / "nope")}}))
    r = subprocess.run([sys.executable, "-m", "distill", "run", str(cfg)], capture_output=True, text=True,
                       timeout=120, cwd=ROOT)
    assert r.returncode == 2, r.stderr
    assert f"is in use: {tmp_path / 'runs' / 'demo' / LOCK_NAME} is held by pid {holder.pid}" in r.stderr


def _dead_pid() -> int:
    p = subprocess.Popen([sys.executable, "-c", "pass"])
    p.wait()
    return p.pid


def test_a_stale_lock_of_a_dead_process_is_taken_over(tmp_path):
    lock = RunLock(tmp_path)
    (tmp_path / LOCK_NAME).write_text(json.dumps({"pid": _dead_pid(), "host": socket.gethostname()}))
    stale = lock.acquire()
    assert stale["host"] == socket.gethostname()
    assert json.loads((tmp_path / LOCK_NAME).read_text())["pid"] == os.getpid()
    with pytest.raises(RunDirError, match=f"pid {os.getpid()}"):  # now ours: a second taker is refused
        RunLock(tmp_path).acquire()
    lock.release()
    assert not (tmp_path / LOCK_NAME).exists()
    # a live pid that now belongs to another process (pid reuse: another start time) is stale too
    ours = manifest._proc_start(os.getpid())
    if ours is not None:
        (tmp_path / LOCK_NAME).write_text(json.dumps({"pid": os.getpid(), "host": socket.gethostname(),
                                                      "pid_start": ours - 1}))
        assert RunLock(tmp_path).acquire() is not None


def test_a_zombie_holder_is_dead(tmp_path):
    p = subprocess.Popen([sys.executable, "-c", "pass"])
    deadline = time.time() + 30
    while manifest._proc_stat(p.pid)[0] != "Z" and time.time() < deadline:  # exited, not yet reaped
        time.sleep(0.05)
    try:
        (tmp_path / LOCK_NAME).write_text(json.dumps({"pid": p.pid, "host": socket.gethostname()}))
        assert RunLock(tmp_path).acquire() is not None
    finally:
        p.wait()


def test_a_lock_from_another_host_is_not_taken_over(tmp_path):
    (tmp_path / LOCK_NAME).write_text(json.dumps({"pid": _dead_pid(), "host": "elsewhere.example"}))
    with pytest.raises(RunDirError, match=f"host elsewhere.example.*delete {tmp_path / LOCK_NAME}"):
        RunLock(tmp_path).acquire()


def test_a_lock_being_written_is_held_until_it_is_old(tmp_path):
    (tmp_path / LOCK_NAME).write_text("")
    with pytest.raises(RunDirError, match="being written"):
        RunLock(tmp_path).acquire()
    old = time.time() - 3600
    os.utime(tmp_path / LOCK_NAME, (old, old))
    lock = RunLock(tmp_path)
    assert lock.acquire() == {}
    lock.release()


# ---- names and runs_dir --------------------------------------------------------------------------------
@pytest.mark.parametrize("name", ["/some/other/dir", "../../etc/x", "..", ".", "a/b", ".hidden", "a\\b", "", "x y"])
def test_run_names_are_one_directory(name):
    with pytest.raises(ConfigError, match="'name'"):
        build_config({**BASE, "name": name})


def test_valid_names_and_a_resolved_runs_dir_in_the_manifest(tmp_path, monkeypatch):
    for name in ("demo", "scifact-cpu", "v1.2", "a_b+c", "x..y"):
        assert build_config({**BASE, "name": name}).name == name
    monkeypatch.chdir(tmp_path)
    rd = RunDir(build_config({**BASE, "runs_dir": "sub/../runs"}))
    assert rd.path == tmp_path.resolve() / "runs" / "demo" and rd.runs_dir == tmp_path.resolve() / "runs"
    rd.save()
    assert json.loads(rd.manifest_path.read_text())["run_dir"] == str(tmp_path.resolve() / "runs" / "demo")
    bad = build_config(BASE).model_copy(update={"name": "../x"})  # built around validation: still refused
    with pytest.raises(RunDirError, match="run name '../x'"):
        RunDir(bad)


# ---- outputs: fsynced, then renamed over the old one ---------------------------------------------------
def test_outputs_are_fsynced_before_they_are_marked_done(tmp_path, monkeypatch):
    rd = RunDir(build_config(BASE, [f"runs_dir={tmp_path}"]))
    synced: list[str] = []
    real = os.fsync

    def fsync(fd):
        synced.append(os.readlink(f"/proc/self/fd/{fd}"))
        return real(fd)

    monkeypatch.setattr(os, "fsync", fsync)
    with rd.atomic_output("index") as tmp:
        (tmp / "index.faiss").write_bytes(b"x" * 100)
        (tmp / "sub").mkdir()
        (tmp / "sub" / "part-0.parquet").write_bytes(b"y")
        names = {str(tmp / "index.faiss"), str(tmp / "sub" / "part-0.parquet"), str(tmp), str(tmp / "sub")}
    assert names <= set(synced)  # every file and folder of the output, under its temporary name
    assert synced.index(str(rd.path)) > max(synced.index(n) for n in names)  # then the rename itself
    synced.clear()
    rd.mark_done("index", {"n": 1})
    assert str(rd.manifest_path.parent) in synced


@pytest.mark.parametrize("exchange", [True, False], ids=["renameat2-exchange", "rename-aside"])
@pytest.mark.parametrize("previous", ["dir", "symlink"])
def test_an_output_is_replaced_by_rename_never_delete_then_rename(tmp_path, monkeypatch, exchange, previous):
    rd = RunDir(build_config(BASE, [f"runs_dir={tmp_path}"]))
    final = rd.stage_path("index")
    if previous == "dir":
        with rd.atomic_output("index") as tmp:
            (tmp / "index.faiss").write_text("old")
    else:  # a sweep run's shared stage: a link to the base run's output, which must survive
        (tmp_path / "base_index").mkdir()
        (tmp_path / "base_index" / "index.faiss").write_text("old")
        final.symlink_to(tmp_path / "base_index", target_is_directory=True)
    if not exchange:
        monkeypatch.setattr(atomic, "_rename_exchange", lambda a, b: False)
    seen: list[str] = []
    real_rmtree, real_unlink = atomic.shutil.rmtree, Path.unlink

    def watch(what):
        seen.append((final / "index.faiss").read_text() if final.exists() else "missing")

    def rmtree(path, *a, **k):
        watch(path)
        return real_rmtree(path, *a, **k)

    def unlink(self, *a, **k):
        watch(self)
        return real_unlink(self, *a, **k)

    monkeypatch.setattr(atomic.shutil, "rmtree", rmtree)
    monkeypatch.setattr(Path, "unlink", unlink)
    with rd.atomic_output("index") as tmp:
        (tmp / "index.faiss").write_text("new")
    assert seen and set(seen) == {"new"}  # the old output was deleted only once the new one was in place
    assert (final / "index.faiss").read_text() == "new" and not final.is_symlink()
    assert sorted(p.name for p in final.parent.iterdir()) == ["index"]  # no .index.tmp-*/.index.old-* left
    if previous == "symlink":
        assert (tmp_path / "base_index" / "index.faiss").read_text() == "old"
