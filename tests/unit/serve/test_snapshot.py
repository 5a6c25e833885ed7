"""serve.snapshot: a run's servable files, checked against the checksums its stages recorded, paired
(student and index), content-addressed, re-hashed at load; and the serve app loading only snapshots."""

from __future__ import annotations

import json
import logging
import shutil
from pathlib import Path

import pytest

from distill.atomic import atomic_dir
from distill.config import build_config
from distill.manifest import RunDir, dir_checksums, file_sha256
from serve import snapshot
from serve.core import RunArtifacts, ServeSetupError

BASE = {"teacher": {"model": "t", "finetune": True}, "student": {"model": "s"}}
QUERIES = ["alpha report", "beta study of things", "gamma"]


def _record(run: Path, *stages: str, r: int = 1) -> RunDir:
    """Record ``stages`` as finished in ``run``'s manifest, as the pipeline does (checksums included)."""
    rd = RunDir(build_config(BASE, [f"runs_dir={run.parent}", f"name={run.name}"]))
    view = rd.for_round(r)
    for stage in stages:
        view.mark_done(stage)
    return rd


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
    """Two verified runs (different students and indices) built once; tests work on copies. make_serve_run
    records the checksums and the pairing as the pipeline does."""
    from serve.testing import make_serve_run

    root = tmp_path_factory.mktemp("snap")
    return {name: make_serve_run(root / name, version=f"v-{name}", seed=seed)["run_dir"]
            for name, seed in (("a", 0), ("b", 1))}


def _copy(src: Path, dst: Path) -> Path:
    shutil.copytree(src, dst, symlinks=True)
    return dst


def _flip(path: Path, n: int = 4096) -> None:
    """Invert ``n`` bytes in the middle of ``path`` in place (same size)."""
    data = bytearray(path.read_bytes())
    mid = len(data) // 2 - n // 2
    data[mid:mid + n] = bytes(b ^ 0xFF for b in data[mid:mid + n])
    path.write_bytes(bytes(data))


def _served(snap: Path, parts=("student/", "index/")) -> dict:
    """snapshot.json's files under ``parts`` (the manifest names the run: it differs between runs)."""
    files = json.loads((snap / "snapshot.json").read_text())["files"]
    return {k: v for k, v in files.items() if k.startswith(parts)}


def _search(path: Path):
    from serve.core import Retrieval

    ids, scores, _ = Retrieval(path, precision="fp32").search(QUERIES, 5)
    return ids, scores


def test_a_snapshot_holds_the_checked_files_and_its_digest_is_stable(runs, tmp_path):
    run = _copy(runs["a"], tmp_path / "a")
    snap = snapshot.create(run)
    record = json.loads((snap / "snapshot.json").read_text())
    assert snap.parent == run / "snapshots" and snap.name == record["digest"][:16]
    assert record["source_verified"] is True and record["unverified_parts"] == [] and record["pairing_checked"] is True
    assert record["source"]["run_dir"] == str(run) and record["source"]["round"] == 1
    assert record["source"]["index_version"] == "v-a"
    want = {f"student/{k}" for k in dir_checksums(run / "student")} | \
           {f"teacher_model/{k}" for k in dir_checksums(run / "teacher_model")} | \
           {"index/index.faiss", "index/docids.parquet", "index/meta.json", "index/docs.parquet", "manifest.json"}
    assert set(record["files"]) == want
    for rel, f in record["files"].items():
        assert f == {"sha256": file_sha256(snap / rel), "size": (snap / rel).stat().st_size}, rel
    assert (snap / "index" / "index.faiss").samefile(run / "index" / "index.faiss")  # a hard link
    manifest = json.loads((run / "manifest.json").read_text())
    assert json.loads((snap / "manifest.json").read_text()) == {  # the name, the teacher's settings and model
        "config": {"name": "a", "teacher": manifest["config"]["teacher"]},
        "stages": {"teacher": {"model": manifest["stages"]["teacher"]["model"]}}}
    # the same content: the same snapshot, reused; nothing else left under snapshots/
    assert snapshot.create(run) == snap and [p.name for p in (run / "snapshots").iterdir()] == [snap.name]
    assert snapshot.create(_copy(runs["a"], tmp_path / "a2")).name == snap.name  # content, not path
    # loading it: the digest is the version, the index's config version stays available
    art = RunArtifacts.load(snap)
    assert art.version == snap.name and art.index_version == "v-a" and art.snapshot["digest"] == record["digest"]
    assert RunArtifacts.load(run).version == "v-a"  # a run directory loaded directly: the index's version
    assert art.teacher().path == str(snap / "teacher_model")
    assert _search(snap) == _search(run)


@pytest.mark.parametrize("damage", ["flip", "truncate", "delete"])
def test_a_changed_or_missing_index_file_is_refused_and_nothing_is_placed(runs, tmp_path, damage):
    run = _copy(runs["a"], tmp_path / "a")
    target = run / "index" / ("docs.parquet" if damage == "delete" else "index.faiss")
    if damage == "flip":
        _flip(target)
    elif damage == "truncate":
        target.write_bytes(target.read_bytes()[: target.stat().st_size // 2])
    else:
        target.unlink()
    what = "is missing" if damage == "delete" else "has changed since its stage wrote it"
    with pytest.raises(ServeSetupError, match=f"{run}: index/{target.name} {what}"):
        snapshot.create(run)
    assert list((run / "snapshots").iterdir()) == []


def test_a_changed_teacher_or_ensemble_file_is_refused(runs, tmp_path):
    run = _copy(runs["a"], tmp_path / "a")
    weights = next(p for p in (run / "teacher_model").iterdir() if p.suffix == ".safetensors")
    _flip(weights, 64)
    with pytest.raises(ServeSetupError, match=f"teacher_model/{weights.name} has changed"):
        snapshot.create(run)
    shutil.rmtree(run / "teacher_model")
    shutil.copytree(runs["a"] / "teacher_model", run / "teacher_model")
    (run / "teacher").mkdir()
    (run / "teacher" / "ensemble.json").write_text('{"members": []}')
    _record(run, "score")  # the score stage records its ensemble.json only
    snap = snapshot.create(run)
    assert "teacher/ensemble.json" in json.loads((snap / "snapshot.json").read_text())["files"]
    (run / "teacher" / "ensemble.json").unlink()
    (run / "teacher" / "ensemble.json").write_text('{"members": [1]}')
    with pytest.raises(ServeSetupError, match="teacher/ensemble.json has changed"):
        snapshot.create(run)


def test_a_student_and_an_index_that_do_not_belong_together_are_refused(runs, tmp_path):
    run = _copy(runs["a"], tmp_path / "a")
    shutil.rmtree(run / "student")
    shutil.copytree(runs["b"] / "student", run / "student")  # retrained, the index not rebuilt
    _record(run, "train")  # its checksums are right: only the pairing is wrong
    with pytest.raises(ServeSetupError, match=r"student \(content [0-9a-f]{16}\) and index \(encoded by "
                                              r"[0-9a-f]{16}\) do not belong together"):
        snapshot.create(run)
    assert list((run / "snapshots").iterdir()) == []
    # an index the teacher encoded (an asymmetric student) has no student to pair with
    meta = json.loads((run / "index" / "meta.json").read_text())
    (run / "index" / "meta.json").write_text(json.dumps({**meta, "documents_encoded_by": "teacher"}))
    _record(run, "index")
    assert json.loads((snapshot.create(run) / "snapshot.json").read_text())["pairing_checked"] is False


def test_a_snapshot_changed_after_creation_is_refused_at_load(runs, tmp_path):
    from serve.core import Reranking, Retrieval

    run = _copy(runs["a"], tmp_path / "a")
    snap = snapshot.create(run)
    weights = next(p.name for p in (snap / "teacher_model").iterdir() if p.suffix == ".safetensors")
    good = (snap / "teacher_model" / weights).read_bytes()
    (snap / "teacher_model" / weights).unlink()  # replaced, not rewritten: the run's file stays intact
    (snap / "teacher_model" / weights).write_bytes(good[:-10])
    with pytest.raises(ServeSetupError, match=f"snapshot {snap}: teacher_model/{weights} has changed"):
        snapshot.verify(snap)
    with pytest.raises(ServeSetupError, match=f"teacher_model/{weights} has changed"):
        Reranking.from_run(snap)
    assert Retrieval(snap).version == snap.name  # the retriever re-hashes only what it loads
    _flip(snap / "index" / "index.faiss")  # a hard link: in place, the run's copy changes too
    with pytest.raises(ServeSetupError, match=f"snapshot {snap}: index/index.faiss has changed"):
        Retrieval(snap)
    with pytest.raises(ServeSetupError, match="index/index.faiss has changed"):
        RunArtifacts.load(snap)
    (snap / "index" / "docids.parquet").unlink()
    with pytest.raises(ServeSetupError, match="index/docids.parquet is missing"):
        snapshot.verify(snap, ("index",))
    # snapshot.json itself: its digest must name the directory and match its file list
    record = json.loads((snap / "snapshot.json").read_text())
    record["files"]["manifest.json"]["size"] += 1
    (snap / "snapshot.json").write_text(json.dumps(record))
    with pytest.raises(ServeSetupError, match="snapshot.json does not match its snapshot"):
        snapshot.verify(snap, ())


def test_a_broken_snapshot_is_made_again_from_a_sound_run(runs, tmp_path):
    run = _copy(runs["a"], tmp_path / "a")
    snap = snapshot.create(run)
    (snap / "index" / "meta.json").unlink()
    (snap / "index" / "meta.json").write_text("{}")
    import os

    (run / "snapshots" / ".tmp-killed").mkdir()  # left by a create that was killed an hour ago
    os.utime(run / "snapshots" / ".tmp-killed", (0, 0))
    (run / "snapshots" / ".tmp-running").mkdir()  # another create's, still being built
    assert snapshot.create(run) == snap
    assert snapshot.verify(snap)["digest"][:16] == snap.name
    assert sorted(p.name for p in (run / "snapshots").iterdir()) == [".tmp-running", snap.name]


def test_a_run_rewritten_after_the_snapshot_leaves_the_snapshot_as_it_was(runs, tmp_path):
    run = _copy(runs["a"], tmp_path / "a")
    snap = snapshot.create(run)
    before = _search(snap)
    for part in ("student", "index"):  # as the pipeline writes an output: a new directory renamed over it
        with atomic_dir(run / part) as tmp:
            shutil.copytree(runs["b"] / part, tmp, dirs_exist_ok=True)
    _record(run, "train", "index")
    assert snapshot.verify(snap)["digest"][:16] == snap.name
    assert _search(snap) == before
    assert _search(run) != before
    new = snapshot.create(run)
    assert new != snap and _served(new) == _served(snapshot.create(_copy(runs["b"], tmp_path / "b")))
    assert RunArtifacts.load(snap).index_version == "v-a" and RunArtifacts.load(new).index_version == "v-b"


def test_a_run_without_recorded_checksums_is_hashed_as_found(runs, tmp_path, caplog):
    run = _copy(runs["a"], tmp_path / "a")
    manifest = json.loads((run / "manifest.json").read_text())
    for entry in manifest["stages"].values():
        entry.pop("files"), entry.pop("content_digest")
    (run / "manifest.json").write_text(json.dumps(manifest))
    with caplog.at_level(logging.WARNING, logger="serve.snapshot"):
        snap = snapshot.create(run)
    record = json.loads((snap / "snapshot.json").read_text())
    assert record["source_verified"] is False and record["unverified_parts"] == ["index", "student", "teacher_model"]
    assert "no checksums recorded for index, student, teacher_model" in caplog.text
    assert snap.name == snapshot.create(_copy(runs["a"], tmp_path / "a2")).name  # the same files: the same digest
    meta = json.loads((run / "index" / "meta.json").read_text())
    meta.pop("encoder_digest")
    (run / "index" / "meta.json").write_text(json.dumps(meta))
    record = json.loads((snapshot.create(run) / "snapshot.json").read_text())
    assert record["pairing_checked"] is False and record["source_verified"] is False


def test_an_iterative_run_is_snapshotted_from_its_final_round(runs, tmp_path):
    run = _copy(runs["a"], tmp_path / "a")
    for part in ("student", "index"):
        shutil.copytree(runs["b"] / part, run / "round-2" / part)
    rd = _record(run, "train", "index", r=2)
    rd.manifest["final_round"] = 2
    rd.save()
    snap = snapshot.create(run)
    record = json.loads((snap / "snapshot.json").read_text())
    assert record["source"]["round"] == 2 and record["source_verified"] is True
    assert _served(snap) == _served(snapshot.create(_copy(runs["b"], tmp_path / "b")))  # round 2: b's student, index
    assert not (snap / "round-2").exists() and (snap / "student").is_dir()
    _flip(run / "round-2" / "index" / "index.faiss")
    with pytest.raises(ServeSetupError, match="round-2/index/index.faiss has changed"):
        snapshot.create(run)


def test_a_teacher_model_linked_from_outside_the_run_is_left_out(runs, tmp_path):
    run = _copy(runs["a"], tmp_path / "a")
    shutil.move(run / "teacher_model", tmp_path / "outside")
    (run / "teacher_model").symlink_to(tmp_path / "outside", target_is_directory=True)
    snap = snapshot.create(run)
    assert not (snap / "teacher_model").exists()
    with pytest.raises(ServeSetupError, match="no teacher_model/ inside the run directory"):
        RunArtifacts.load(snap).teacher()


def test_the_app_serves_the_snapshot_and_refuses_a_corrupt_run(runs, tmp_path):
    from serve.app import build_app

    run = _copy(runs["a"], tmp_path / "a")
    app = build_app({"run_dir": str(run), "rerank": True})
    ingress = app._bound_deployment
    retriever, reranker = ingress.init_args[0]._bound_deployment, ingress.init_args[1]._bound_deployment
    snap = snapshot.create(run)
    assert retriever.init_args[0] == reranker.init_args[0] == str(snap)
    build_app({"run_dir": str(snap)})  # a snapshot directory, verified
    _flip(snap / "index" / "index.faiss")  # the run's file too (a hard link)
    with pytest.raises(ServeSetupError, match="index/index.faiss has changed"):
        build_app({"run_dir": str(snap)})
    with pytest.raises(ServeSetupError, match=f"{run}: index/index.faiss has changed since its stage wrote it"):
        build_app({"run_dir": str(run)})


def test_python_m_serve_refuses_a_corrupt_run(runs, tmp_path, monkeypatch, capsys):
    import serve.app
    from serve.__main__ import main

    calls = []
    monkeypatch.setattr(serve.app, "deploy", lambda run_dir, **kw: calls.append(run_dir) or (_ for _ in ()).throw(
        KeyboardInterrupt))
    monkeypatch.setattr(serve.app, "shutdown", lambda: None)
    monkeypatch.delenv("DISTILL_SERVE_TOKEN", raising=False)
    run = _copy(runs["a"], tmp_path / "a")
    assert main([str(run)]) == 0 and calls == [str(snapshot.create(run))]
    _flip(run / "index" / "index.faiss")
    assert main([str(run)]) == 2 and len(calls) == 1
    assert "index/index.faiss has changed since its stage wrote it" in capsys.readouterr().err


def _renamed(run: Path, name: str) -> None:
    """Give the run another name in its manifest: the serving manifest, so the snapshot digest, changes."""
    manifest = json.loads((run / "manifest.json").read_text())
    manifest["config"]["name"] = name
    (run / "manifest.json").write_text(json.dumps(manifest))


def test_snapshots_beyond_the_most_recently_used_are_removed(runs, tmp_path):
    run = _copy(runs["a"], tmp_path / "a")
    made = []
    for i in range(5):
        _renamed(run, f"n{i}")
        made.append(snapshot.create(run, keep=3))
        listed = sorted(p.name for p in (run / "snapshots").iterdir())
        assert len(set(p.name for p in made)) == i + 1 and listed == sorted(p.name for p in made[-3:]), i
    assert snapshot.snapshots(run / "snapshots") == made[:-4:-1]  # the most recently used first
    assert not made[0].exists() and not made[1].exists()
    # reusing a snapshot makes it the most recently used: the next create removes the oldest other one
    _renamed(run, "n2")
    assert snapshot.create(run, keep=3) == made[2]
    _renamed(run, "n5")
    newest = snapshot.create(run, keep=3)
    assert snapshot.snapshots(run / "snapshots") == [newest, made[2], made[4]] and not made[3].exists()
    # keep=1: only the one just made; keep=None: nothing removed; temporary and aside folders are not snapshots
    (run / "snapshots" / ".tmp-running").mkdir()
    _renamed(run, "n6")
    only = snapshot.create(run, keep=1)
    assert sorted(p.name for p in (run / "snapshots").iterdir()) == [".tmp-running", only.name]
    for i in (7, 8):
        _renamed(run, f"n{i}")
        snapshot.create(run, keep=None)
    assert len(snapshot.snapshots(run / "snapshots")) == 3
    with pytest.raises(ValueError, match="keep must be at least 1"):
        snapshot.create(run, keep=0)


def test_prune_never_removes_the_current_snapshot_and_create_keeps_three_by_default(runs, tmp_path):
    import os

    run = _copy(runs["a"], tmp_path / "a")
    made = []
    for i in range(4):
        _renamed(run, f"n{i}")
        made.append(snapshot.create(run, keep=None))
    assert snapshot.KEEP == 3
    os.utime(made[0], (1, 1))  # the current one is the least recently used: kept all the same
    removed = snapshot.prune(run / "snapshots", keep=2, current=made[0])
    assert sorted(removed) == sorted(made[1:3]) and snapshot.snapshots(run / "snapshots") == [made[3], made[0]]
    for i in range(4, 7):
        _renamed(run, f"n{i}")
        last = snapshot.create(run)  # the default: 3 kept
    assert len(snapshot.snapshots(run / "snapshots")) == 3 and snapshot.snapshots(run / "snapshots")[0] == last
    assert not list((run / "snapshots").glob(".old-*"))  # renamed aside, then deleted


def test_a_snapshot_root_shared_by_runs_is_pruned_per_run(runs, tmp_path):
    a, b = _copy(runs["a"], tmp_path / "a"), _copy(runs["b"], tmp_path / "b")
    root = tmp_path / "shared"
    made = {"a": [], "b": []}
    for i in range(3):
        for name, run in (("a", a), ("b", b)):
            _renamed(run, f"{name}{i}")
            made[name].append(snapshot.create(run, root, keep=2))
    assert snapshot.snapshots(root) == [made["b"][2], made["a"][2], made["b"][1], made["a"][1]]
    assert {json.loads((p / "snapshot.json").read_text())["source"]["run_dir"] for p in snapshot.snapshots(root)} \
        == {str(a), str(b)}


def test_a_snapshot_a_replica_serves_is_never_pruned_until_its_lease_is_released_or_expires(runs, tmp_path):
    import os
    import time

    run = _copy(runs["a"], tmp_path / "a")
    made = []
    for i in range(3):
        _renamed(run, f"n{i}")
        made.append(snapshot.create(run, keep=None))
    served = snapshot.Lease(made[0], holder="host-1")  # a replica of the oldest snapshot
    assert served.path == made[0] / ".leases" / "host-1" and snapshot.in_use(made[0])
    snapshot.verify(made[0])  # the lease is not one of the snapshot's files
    os.utime(made[0], (1, 1))  # and the least recently used
    assert snapshot.prune(run / "snapshots", keep=1, current=made[2]) == [made[1]]
    assert made[0].exists() and snapshot.snapshots(run / "snapshots") == [made[2], made[0]]
    # A replica killed without its shutdown: the lease expires after LEASE_TTL_S.
    stale = time.time() - snapshot.LEASE_TTL_S - 1
    os.utime(served.path, (stale, stale))
    assert not snapshot.in_use(made[0])
    served.refresh()  # within LEASE_REFRESH_S of the last touch: nothing written
    assert not snapshot.in_use(made[0])
    served.refresh(force=True)  # a healthy replica touches it again
    assert snapshot.in_use(made[0])
    served.release()
    assert not snapshot.in_use(made[0]) and not served.path
    served.release()  # twice is harmless
    assert snapshot.prune(run / "snapshots", keep=1, current=made[2]) == [made[0]]


def test_a_run_served_as_it_is_takes_no_lease_and_a_lease_that_cannot_be_written_is_logged(runs, tmp_path, caplog):
    run = _copy(runs["a"], tmp_path / "a")
    assert snapshot.Lease(run).path is None and not (run / ".leases").exists()
    snap = snapshot.create(run)
    (snap / ".leases").write_text("a file where the leases folder goes")
    with caplog.at_level(logging.WARNING, logger="serve.snapshot"):
        lease = snapshot.Lease(snap, holder="h")
    assert "cannot hold a lease" in caplog.text and not snapshot.in_use(snap)
    lease.release()
