"""Serving snapshots: a verified, content-addressed copy of what serving reads from a run directory.

:func:`create` gathers the final round's ``student/`` and ``index/`` (with ``docs.parquet``), the run's
``teacher_model/`` (when it lies inside the run, or inside a sweep run's base run) and
``teacher/ensemble.json`` (when present), plus a serving manifest (``manifest.json``: the run's name and
teacher settings, nothing else of the run's manifest), into ``<run>/snapshots/<digest16>/``, in the layout
of a one-round run. Before the snapshot is put in place:

- every file is checked against the sha256 its stage recorded when it finished (distill.manifest
  ``files``): a missing or changed file (a truncated or corrupt index) is a :class:`ServeSetupError`
  naming it, and nothing is placed;
- the student's content digest must equal the index's ``encoder_digest`` (the model that encoded the
  documents), else "student ... and index ... do not belong together". An index the teacher encoded (an
  asymmetric student, ``documents_encoded_by: teacher``) has no student to pair with: not checked.

A run written before checksums were recorded is hashed as it is, with ``source_verified: false`` and a
warning; an index without ``encoder_digest`` is not paired (``pairing_checked: false``).

Files are hard links to the run's (copies where linking fails). The pipeline replaces an output by renaming
a new directory over it, so a snapshot keeps the bytes it was made from; a tool that rewrote a run's file in
place would change the snapshot's too, which :func:`verify` detects. The snapshot is built under a temporary
name and renamed into place; an existing one with the same digest that verifies is reused.

``snapshot.json`` lists every file's sha256 and size, the ``digest`` (sha256 over that sorted list: the same
files with the same bytes give the same digest), the source run, round and config hash, and what was
checked. The directory's name, the digest's first 16 hex digits, is the ``version`` serving reports.
:func:`verify` re-hashes a snapshot's files against ``snapshot.json`` (every replica does before loading):
any difference is a :class:`ServeSetupError`.

Retention: a run keeps at most ``keep`` snapshots (default :data:`KEEP`, 3). Each :func:`create` (a new
snapshot or one reused) marks its snapshot as the most recently used (the directory's mtime) and then
removes, of the snapshots under its root made from the same run directory (``source.run_dir``: a root
shared by several runs is pruned per run), the least recently used beyond ``keep`` (each renamed aside to
``.old-*`` first, so no reader sees half a snapshot); the one just made or reused is never removed, so after a swap the previous
snapshot (still served by the draining replicas, and the one to swap back to) is the second newest and
kept. A snapshot an app still serves is never removed, however old: every replica holds a *lease* on
the snapshot it loaded (:class:`Lease`: a file ``<snapshot>/.leases/<host>-<pid>``, touched while the
replica is healthy and removed when it stops), and :func:`prune` passes over a snapshot with a lease
touched within :data:`LEASE_TTL_S` (a replica killed without its shutdown leaves a lease that expires).
``keep=None`` keeps every snapshot.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import shutil
import socket
import time
import uuid
from pathlib import Path

from distill.manifest import UNCHECKED, content_digest, file_sha256

log = logging.getLogger(__name__)

SNAPSHOTS_DIR = "snapshots"  # under the run directory
SNAPSHOT_FILE = "snapshot.json"
MANIFEST = "manifest.json"
KEEP = 3  # snapshots kept under <run>/snapshots/ (the least recently used beyond that are removed)
LEASES_DIR = ".leases"  # inside a snapshot: one file per replica serving it
LEASE_TTL_S = 900.0  # a lease not touched for this long is a replica that died without releasing it
LEASE_REFRESH_S = 60.0  # how often a serving replica touches its lease (Lease.refresh)


class ServeSetupError(ValueError):
    """A run directory or snapshot that cannot be served as asked."""


def final_round(run_dir: Path) -> int:
    """``manifest.json``'s ``final_round`` (1 when absent or unreadable)."""
    try:
        return int(json.loads((Path(run_dir) / MANIFEST).read_text()).get("final_round", 1))
    except (OSError, ValueError, TypeError, AttributeError):
        return 1


def final_round_dir(run_dir: Path) -> Path:
    """``run_dir`` itself, or ``run_dir/round-<r>`` when ``manifest.json`` names a final round r > 1."""
    r = final_round(run_dir)
    return run_dir / f"round-{r}" if r > 1 else run_dir


def require_servable(run_dir: Path, student: Path, index: Path) -> None:
    """A :class:`ServeSetupError` unless ``student`` holds a saved student and ``index`` an index."""
    if not ((student / "config.json").exists() or (student / "distill_encoder.json").exists()):
        raise ServeSetupError(  # a CNN/LSTM student has no HF config.json, only distill_encoder.json
            f"{run_dir} has no trained student (expected {student}/config.json); "
            "run the pipeline's train stage first"
        )
    for name in ("index.faiss", "docids.parquet", "meta.json"):
        if not (index / name).exists():
            raise ServeSetupError(
                f"{run_dir} has no usable index (missing {index / name}); "
                "run the pipeline's index stage first"
            )


def is_snapshot(path: str | Path) -> bool:
    return (Path(path) / SNAPSHOT_FILE).is_file()


def snapshot_digest(files: dict[str, dict]) -> str:
    """sha256 (hex) over the sorted (path, sha256, size) of a snapshot's files."""
    h = hashlib.sha256()
    for rel in sorted(files):
        h.update(f"{rel}\0{files[rel]['sha256']}\0{files[rel]['size']}\n".encode())
    return h.hexdigest()


# ---- create -------------------------------------------------------------------------------------------------
def _read_manifest(run_dir: Path) -> dict:
    path = run_dir / MANIFEST
    if not path.exists():
        return {}
    try:
        return json.loads(path.read_text())
    except json.JSONDecodeError as err:
        raise ServeSetupError(f"{path} is not valid JSON: {err}") from None


def _inside_run(path: Path, run_dir: Path) -> bool:
    """Whether ``path`` resolves inside ``run_dir`` (or, for a sweep run, inside its base run), the rule of
    serve.core.RunArtifacts.teacher: a link out of the run is not the run's own teacher."""
    roots = [run_dir.resolve()]
    if run_dir.parent.name == "sweep":
        roots.append(run_dir.parent.parent.resolve())
    return any(path.resolve().is_relative_to(r) for r in roots)


def _parts(run_dir: Path, manifest: dict) -> list[tuple[str, Path, dict | None, tuple[str, ...] | None]]:
    """(name in the snapshot, source directory, the manifest entry of the stage that wrote it, the files
    taken: None for all) of each part serving reads."""
    r = final_round(run_dir)
    last = final_round_dir(run_dir)
    stages = manifest.get("stages") or {}
    round_stages = stages if r == 1 else ((manifest.get("rounds") or {}).get(str(r)) or {}).get("stages") or {}
    parts = [("student", last / "student", round_stages.get("train"), None),
             ("index", last / "index", round_stages.get("index"), None)]
    teacher = run_dir / "teacher_model"
    if teacher.is_dir() and _inside_run(teacher, run_dir) and any(teacher.iterdir()):
        parts.append(("teacher_model", teacher, stages.get("teacher"), None))
    if (run_dir / "teacher" / "ensemble.json").is_file():
        parts.append(("teacher", run_dir / "teacher", stages.get("score"), ("ensemble.json",)))
    return parts


def _place(src: Path, dst: Path) -> None:
    """A hard link of ``src`` (links resolved) at ``dst``, or a copy where the file system cannot link."""
    dst.parent.mkdir(parents=True, exist_ok=True)
    src = src.resolve()
    try:
        os.link(src, dst)
    except OSError:
        shutil.copy2(src, dst)


def _listing(src: Path, only: tuple[str, ...] | None) -> list[str]:
    if only is not None:
        return [n for n in only if (src / n).is_file()]
    return sorted(p.relative_to(src).as_posix() for p in src.rglob("*")
                  if p.is_file() and p.relative_to(src).parts[0] not in UNCHECKED)


def _gather(run_dir: Path, part, tmp: Path) -> tuple[dict[str, str], bool]:
    """Place one part's files under ``tmp/<name>`` and check them against the manifest's ``files``;
    returns ({path in the part: sha256}, whether the manifest recorded them)."""
    name, src, entry, only = part
    recorded = (entry or {}).get("files")
    if recorded is not None and only is not None:
        recorded = {k: v for k, v in recorded.items() if k in only}
    names = sorted(recorded) if recorded is not None else _listing(src, only)
    shas = {}
    for rel in names:
        shown = (src / rel).relative_to(run_dir) if (src / rel).is_relative_to(run_dir) else src / rel
        if not (src / rel).is_file():
            raise ServeSetupError(f"{run_dir}: {shown} is missing (its stage recorded it when it finished); "
                                  "re-run the stage that writes it")
        dst = tmp / name / rel
        _place(src / rel, dst)
        shas[rel] = file_sha256(dst)
        if recorded is not None and shas[rel] != recorded[rel]:
            raise ServeSetupError(f"{run_dir}: {shown} has changed since its stage wrote it (sha256 "
                                  f"{shas[rel][:16]}..., recorded {recorded[rel][:16]}...): truncated or "
                                  "corrupt; re-run the stage that writes it")
    return shas, recorded is not None


def _check_pairing(run_dir: Path, student: dict[str, str], meta: dict) -> bool:
    """The student must be the model that encoded the index's documents (``encoder_digest``); returns
    whether that was checked (an index the teacher encoded, or one without a recorded encoder, is not)."""
    if meta.get("documents_encoded_by") == "teacher":
        return False
    want = meta.get("encoder_digest")
    if not want:
        log.warning("%s: the index does not record the student that encoded it (encoder_digest): "
                    "student and index are served unpaired", run_dir)
        return False
    got = content_digest(student)
    if got != want:
        raise ServeSetupError(f"{run_dir}: student (content {got[:16]}) and index (encoded by {want[:16]}) "
                              "do not belong together: re-run the encode and index stages with this student")
    return True


def _serving_manifest(manifest: dict) -> dict:
    """What serving reads of the run's manifest: the run's name, the teacher's settings and the model the
    teacher stage named (serve.core.RunArtifacts). Nothing else, so a re-run of evaluation, which rewrites
    the manifest, changes no snapshot."""
    cfg = manifest.get("config") or {}
    out: dict = {"config": {k: cfg[k] for k in ("name", "teacher") if k in cfg}}
    model = ((manifest.get("stages") or {}).get("teacher") or {}).get("model")
    if model is not None:
        out["stages"] = {"teacher": {"model": model}}
    return out


def _build(run_dir: Path, tmp: Path) -> dict:
    """Fill ``tmp`` with the run's served files, checked; returns snapshot.json's record."""
    manifest = _read_manifest(run_dir)
    shas, verified = {}, {}
    for part in _parts(run_dir, manifest):
        got, verified[part[0]] = _gather(run_dir, part, tmp)
        shas.update({f"{part[0]}/{rel}": sha for rel, sha in got.items()})
    try:
        meta = json.loads((tmp / "index" / "meta.json").read_text())
    except (OSError, json.JSONDecodeError):
        meta = {}  # RunArtifacts.load names what is missing or broken
    student = {k.split("/", 1)[1]: v for k, v in shas.items() if k.startswith("student/")}
    paired = _check_pairing(run_dir, student, meta) if student else False
    (tmp / MANIFEST).write_text(json.dumps(_serving_manifest(manifest), indent=2, sort_keys=True))
    shas[MANIFEST] = file_sha256(tmp / MANIFEST)
    files = {rel: {"sha256": sha, "size": (tmp / rel).stat().st_size} for rel, sha in sorted(shas.items())}
    unverified = sorted(k for k, v in verified.items() if not v)
    if unverified:
        log.warning("%s: no checksums recorded for %s (written before they were): hashed as found, "
                    "source_verified false", run_dir, ", ".join(unverified))
    return {"digest": snapshot_digest(files), "files": files, "source_verified": not unverified,
            "unverified_parts": unverified, "pairing_checked": paired,
            "source": {"run_dir": str(run_dir), "round": final_round(run_dir),
                       "config_hash": manifest.get("config_hash"), "index_version": meta.get("version")},
            "created_at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())}


def create(run_dir: str | Path, root: str | Path | None = None, keep: int | None = KEEP) -> Path:
    """The verified snapshot of ``run_dir``'s final round under ``root`` (default ``run_dir/snapshots``):
    ``root/<digest16>``, built now or reused, then the most recently used; snapshots beyond the ``keep``
    most recently used are removed (:func:`prune`; None: none). Raises :class:`ServeSetupError` when a
    file differs from what its stage recorded, or student and index do not belong together (nothing is
    placed or removed then)."""
    if keep is not None and keep < 1:
        raise ValueError(f"keep must be at least 1 (the snapshot being made), got {keep}")
    run_dir = Path(run_dir).expanduser().resolve()
    if not run_dir.is_dir():
        raise ServeSetupError(f"run directory {run_dir} does not exist")
    last = final_round_dir(run_dir)
    require_servable(run_dir, last / "student", last / "index")
    root = Path(root).expanduser().resolve() if root else run_dir / SNAPSHOTS_DIR
    try:
        root.mkdir(parents=True, exist_ok=True)
    except OSError as err:
        raise ServeSetupError(f"cannot create the snapshot directory {root}: {err.strerror or err}") from None
    _drop_stale(root)
    tmp = root / f".tmp-{uuid.uuid4().hex[:12]}"
    try:
        tmp.mkdir()
        record = _build(run_dir, tmp)
        (tmp / SNAPSHOT_FILE).write_text(json.dumps(record, indent=2))
        final = _put(tmp, root / record["digest"][:16])
        os.utime(final)  # the most recently used, made or reused
        log.info("serving snapshot %s of %s (round %d)", final, run_dir, record["source"]["round"])
        if keep is not None:
            prune(root, keep, final, source=run_dir)
        return final
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


def snapshots(root: str | Path) -> list[Path]:
    """The snapshot directories under ``root`` (named by 16 hex digits, with a ``snapshot.json``), the
    most recently used (directory mtime) first."""
    root = Path(root)
    if not root.is_dir():
        return []
    found = []
    for p in root.iterdir():
        if len(p.name) == 16 and all(c in "0123456789abcdef" for c in p.name) and is_snapshot(p):
            try:
                found.append((p.stat().st_mtime_ns, p.name, p))
            except OSError:  # removed meanwhile
                pass
    return [p for _, _, p in sorted(found, reverse=True)]


def _source(snapshot_dir: Path) -> str | None:
    try:
        return json.loads((snapshot_dir / SNAPSHOT_FILE).read_text())["source"]["run_dir"]
    except (OSError, ValueError, KeyError, TypeError):
        return None


def prune(root: str | Path, keep: int = KEEP, current: str | Path | None = None,
          source: str | Path | None = None) -> list[Path]:
    """Remove the snapshots under ``root`` (those made from the run directory ``source`` when given)
    beyond the ``keep`` most recently used, never ``current`` nor one a replica serves (:func:`in_use`);
    returns those removed. Each is renamed aside (``.old-*``) before it is deleted."""
    current = Path(current).resolve() if current is not None else None
    ordered = snapshots(root)
    if source is not None:
        ordered = [p for p in ordered if _source(p) == str(source)]
    kept = [p for p in ordered if p.resolve() == current][:1]
    removed = []
    for p in ordered:
        if p.resolve() == current:
            continue
        if len(kept) < keep:
            kept.append(p)
            continue
        if in_use(p):
            log.info("snapshot %s is beyond the %d most recently used but a replica serves it: kept", p, keep)
            continue
        aside = p.with_name(f".old-{p.name}-{uuid.uuid4().hex[:8]}")
        try:
            p.rename(aside)
        except OSError:  # removed by another create meanwhile
            continue
        shutil.rmtree(aside, ignore_errors=True)
        removed.append(p)
    if removed:
        log.info("removed %d snapshot(s) under %s beyond the %d most recently used: %s", len(removed), root,
                 keep, ", ".join(p.name for p in removed))
    return removed


class Lease:
    """A serving replica's claim on its snapshot, so :func:`prune` leaves it: ``<snapshot>/.leases/<holder>``
    (holder: host and pid), touched by :meth:`refresh` (at most every :data:`LEASE_REFRESH_S`; a replica's
    health check calls it) and removed by :meth:`release`. A directory that is not a snapshot (a run
    served as it is) takes no lease. Failures to write are logged, never raised: a lease protects the
    snapshot from clean-up, it must not stop a replica from serving."""

    def __init__(self, snapshot_dir: str | Path, holder: str | None = None):
        snapshot_dir = Path(snapshot_dir)
        self.path = (snapshot_dir / LEASES_DIR / (holder or f"{socket.gethostname()}-{os.getpid()}")
                     if is_snapshot(snapshot_dir) else None)
        self._touched = float("-inf")
        self.refresh(force=True)

    def refresh(self, force: bool = False) -> None:
        if self.path is None or (not force and time.monotonic() - self._touched < LEASE_REFRESH_S):
            return
        try:
            self.path.parent.mkdir(exist_ok=True)
            self.path.touch()
            self._touched = time.monotonic()
        except OSError as err:
            log.warning("cannot hold a lease on snapshot %s: %s", self.path.parent.parent, err)

    def release(self) -> None:
        if self.path is not None:
            try:
                self.path.unlink(missing_ok=True)
            except OSError:
                pass
            self.path = None


def in_use(snapshot_dir: str | Path, ttl_s: float = LEASE_TTL_S) -> bool:
    """Whether a replica holds a lease on ``snapshot_dir`` touched within ``ttl_s``."""
    now = time.time()
    try:
        leases = list((Path(snapshot_dir) / LEASES_DIR).iterdir())
    except OSError:
        return False
    for p in leases:
        try:
            if now - p.stat().st_mtime < ttl_s:
                return True
        except OSError:  # released meanwhile
            pass
    return False


def _drop_stale(root: Path, age_s: float = 3600.0) -> None:
    """Remove temporary snapshot directories a killed :func:`create` or :func:`prune` left (older than
    ``age_s``)."""
    for p in [*root.glob(".tmp-*"), *root.glob(".bad-*"), *root.glob(".old-*")]:
        try:
            if time.time() - p.stat().st_mtime > age_s:
                shutil.rmtree(p, ignore_errors=True)
        except OSError:
            pass


def _put(tmp: Path, final: Path) -> Path:
    """Rename ``tmp`` to ``final``; an existing ``final`` that verifies is kept, one that does not is
    replaced."""
    if final.exists():
        try:
            verify(final)
            return final
        except ServeSetupError as err:
            log.warning("replacing snapshot %s: %s", final, err)
            aside = final.with_name(f".bad-{final.name}-{uuid.uuid4().hex[:8]}")
            final.rename(aside)
            shutil.rmtree(aside, ignore_errors=True)
    try:
        tmp.rename(final)
    except OSError:  # another process put the same snapshot in place meanwhile
        verify(final)
    return final


# ---- verify --------------------------------------------------------------------------------------------------
def read_record(snapshot_dir: str | Path) -> dict:
    """``snapshot.json``, checked to be the record of this directory (its digest names it and is the digest
    of its file list)."""
    snapshot_dir = Path(snapshot_dir)
    try:
        record = json.loads((snapshot_dir / SNAPSHOT_FILE).read_text())
        files, digest = record["files"], record["digest"]
    except (OSError, ValueError, KeyError, TypeError) as err:
        raise ServeSetupError(f"{snapshot_dir} is not a serving snapshot ({SNAPSHOT_FILE}: {err})") from None
    if snapshot_digest(files) != digest or snapshot_dir.name != digest[:16]:
        raise ServeSetupError(f"{snapshot_dir / SNAPSHOT_FILE} does not match its snapshot (digest "
                              f"{digest[:16]}, directory {snapshot_dir.name})")
    return record


def verify(snapshot_dir: str | Path, parts: tuple[str, ...] | None = None) -> dict:
    """Re-hash the snapshot's files (or those under the top-level names ``parts``) against
    ``snapshot.json``; returns the record. A missing, resized or changed file is a
    :class:`ServeSetupError` naming it."""
    snapshot_dir = Path(snapshot_dir)
    record = read_record(snapshot_dir)
    for rel, want in record["files"].items():
        if parts is not None and not any(rel == p or rel.startswith(p.rstrip("/") + "/") for p in parts):
            continue
        path = snapshot_dir / rel
        if not path.is_file():
            raise ServeSetupError(f"snapshot {snapshot_dir}: {rel} is missing")
        if path.stat().st_size != want["size"] or file_sha256(path) != want["sha256"]:
            raise ServeSetupError(f"snapshot {snapshot_dir}: {rel} has changed since the snapshot was made "
                                  "(truncated or corrupt); create the snapshot again from the run")
    return record
