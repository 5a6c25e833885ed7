"""The run directory and its ``manifest.json``.

``runs/<name>/manifest.json`` holds the config, its hash, the input checksums and, for each finished
stage, the digest of the config sections *and the input files* it depends on, its outputs and row
counts. A stage counts as finished only when it is listed with the same digest *and* its output exists,
so an edited corpus, query file or qrels file re-runs the stages that read it (and the ones that read
their outputs: :data:`STAGE_READS`). A stage's output is written under a temporary name, fsynced, and renamed into place (over the
previous output, which is removed only afterwards), so a stage that died leaves nothing a later run
could take for finished.

``runs/<name>/run.lock`` is held while a pipeline runs on the directory (:class:`RunLock`): a second run
of the same directory fails at once, naming the holder's pid and host; a lock left by a process that no
longer exists on this host is taken over.

Iterative runs (``rounds: N``): round 1 is the layout above; round r > 1 keeps its stages' outputs under
``round-<r>/`` (same names) and its entries under ``manifest["rounds"]["<r>"]["stages"]`` (see
:class:`RoundDir`); ``final_round`` names the last round whose student and index are finished.

The stages whose outputs serving reads record their content when they finish (:meth:`RunDir.mark_done`):
``files`` ({path in the output: sha256}) and ``content_digest`` (:func:`content_digest` of them) for
``teacher`` (``teacher_model/``), ``train`` (``student/``), ``index`` (``index/``) and, for an ensemble
teacher, ``score``'s ``ensemble.json``. serve.snapshot checks a run against them before serving it.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import re
import socket
import sys
import time
import uuid
from pathlib import Path

from distill import layout
from distill.atomic import RunDirError, atomic_dir, write_json_atomic
from distill.config import RunConfig

# Stage order and the config sections each stage's output depends on (cumulative over its upstream stages).
STAGES = ["teacher", "mine", "score", "train", "encode", "index", "evaluate"]
# stage -> the stages whose outputs it reads. Mining reads the corpus and the student, never the teacher, so
# a teacher variant shares the base run's candidates; scoring joins the two branches.
STAGE_READS = {
    "teacher": [],
    "mine": [],
    "score": ["teacher", "mine"],
    "train": ["score"],
    "encode": ["train"],
    "index": ["encode"],
    "evaluate": ["index", "teacher"],
}
STAGE_SECTIONS = {
    "teacher": ["data", "teacher"],
    "mine": ["data", "mining"],  # mining.encoder resolved: the student unless set (RunConfig.mining_encoder)
    "score": ["scoring"],
    "train": ["student", "training"],
    "encode": ["encoding"],
    "index": ["index"],
    "evaluate": ["evaluation"],
}
# The stages every round repeats, and the ones whose outputs feed the next round (re-running one of
# these invalidates every later round).
ROUND_STAGES = ["mine", "score", "train", "encode", "index", "evaluate"]
FEEDS_NEXT_ROUND = {"teacher", "mine", "score", "train", "encode"}


def upstream(stage: str, legacy: bool = False) -> list[str]:
    """``stage`` and every stage whose output reaches it (:data:`STAGE_READS`), in pipeline order; with
    ``legacy``, every earlier stage (the linear chain digests were computed over before session 24)."""
    if legacy:
        return STAGES[: STAGES.index(stage) + 1]
    seen, todo = set(), [stage]
    while todo:
        s = todo.pop()
        if s not in seen:
            seen.add(s)
            todo += STAGE_READS[s]
    return [s for s in STAGES if s in seen]


def downstream(stage: str) -> list[str]:
    """``stage`` and every stage that reads its output, directly or not, in pipeline order."""
    return [s for s in STAGES if stage in upstream(s)]
# A run's name is one directory under runs_dir (as config.RunConfig.name's pattern says).
RUN_NAME = re.compile(r"[A-Za-z0-9_+-][A-Za-z0-9_.+-]*")
LOCK_NAME = layout.LOCK


def _resolved_precisions(config: RunConfig, dump: dict) -> None:
    """Digest what a stage computes at, not what the config asks: ``auto`` resolved on this machine
    (distill.precision.for_stage), so a run moved to a machine that resolves it otherwise re-runs the stage,
    and an explicit fp32 and an ``auto`` that resolves to fp32 agree. fp32 scoring and encoding (all there
    was before precision became a setting) leave those digests as they were."""
    from distill.precision import for_stage, resolve

    for section, stage in (("scoring", "score"), ("encoding", "encode")):
        dump[section].pop("precision", None)
        if for_stage(config, stage) != "fp32":
            dump[section]["precision"] = for_stage(config, stage)
    if dump["training"].get("precision") == "auto":
        dump["training"]["precision"] = resolve("auto", "cuda" if config.training.use_gpu else "cpu")


def stage_digest(config: RunConfig, stage: str, inputs: dict | None = None, legacy: bool = False) -> str:
    """Digest of the config sections ``stage`` and its upstream stages depend on (:func:`upstream`) and,
    when given, the checksums of the input files they depend on (:meth:`RunDir.input_checksums`);
    ``legacy``: over every earlier stage, as manifests written before session 24 record ``mine``'s."""
    chain = upstream(stage, legacy)
    sections: list[str] = []
    for s in chain:
        sections += STAGE_SECTIONS[s]
    dump = config.model_dump(mode="json")
    dump["mining"]["encoder"] = config.mining_encoder.model_dump(mode="json")  # unset and set-to-the-same agree
    _resolved_precisions(config, dump)
    for key in ("log_every", "tracking"):  # where metrics are logged does not change what training computes
        dump["training"].pop(key, None)
    for section, key in (("data", "format"), ("data", "hf"), ("data", "ir_datasets"), ("scoring", "import_path"),
                         ("teacher", "label_share")):
        if dump[section].get(key) in (None, "beir"):  # unset input options leave the digests as they were
            dump[section].pop(key, None)
    if "import_path" not in dump["scoring"]:
        dump["scoring"].pop("import_missing", None)
    payload = {s: dump[s] for s in dict.fromkeys(sections)}
    if config.teacher.kind == "reader" and config.teacher.reader_retriever == "student":  # retrieves its passages
        payload["_reader_retriever"] = dump["mining"]["encoder"]
    payload["_extra"] = {"seed": config.seed,
                         "stages": [s for s in config.stages if s in chain]}
    if inputs:
        payload["_inputs"] = inputs
    return hashlib.sha256(json.dumps(payload, sort_keys=True).encode()).hexdigest()[:16]


def input_files(config: RunConfig) -> dict[str, list[Path]]:
    """The input files a run reads, by role (``corpus``, ``queries``, ``qrels/<split>``, ``answers``): the
    paths that may hold each (plain or .gz), as :func:`distill.pipeline.load_data` records them."""
    c = config.data
    if config.scoring.import_path:  # imported teacher scores (distill.sources.import_scores)
        return {**_data_files(c), "scores_import": [Path(config.scoring.import_path)]}
    return _data_files(c)


def _data_files(c) -> dict[str, list[Path]]:
    if c.format != "beir":  # parquet files, a saved Hugging Face dataset (distill.sources)
        from distill.sources import input_files as source_files

        return source_files(c)
    d = Path(c.dir)
    files = {"corpus": [d / c.corpus, d / (c.corpus + ".gz")], "queries": [d / c.queries, d / (c.queries + ".gz")]}
    for split in dict.fromkeys((c.train_split, c.test_split)):
        if not (c.dev_queries and split == "dev"):  # carved from the train split
            files[f"qrels/{split}"] = [d / "qrels" / f"{split}.tsv"]
    if c.answers:
        files["answers"] = [d / c.answers]
    return files


def stage_input_roles(config: RunConfig, stage: str, legacy: bool = False) -> list[str]:
    """The input roles ``stage`` depends on, cumulative over its upstream stages like the config sections:
    a fine-tuned teacher reads the train split (and a reader its answers); mining reads the corpus,
    queries and train qrels (and the test queries, when it generates queries: to drop test leaks);
    evaluation the test qrels. Scoring, training, encoding and indexing read nothing mining did not."""
    c, t = config.data, config.teacher
    train = f"qrels/{c.train_split}"
    test = train if (c.dev_queries and c.test_split == "dev") else f"qrels/{c.test_split}"
    finetunes = getattr(t, "finetunes", t.finetune and t.kind in ("cross-encoder", "reader"))
    own = {
        "teacher": (["corpus", "queries", train] + (["answers"] if t.kind == "reader" else [])) if finetunes else [],
        "mine": ["corpus", "queries", train] + ([test] if config.mining.querygen.enabled else []),
        "score": ["scores_import"] if config.scoring.import_path else [],
        "evaluate": [test],
    }
    roles: list[str] = []
    for s in upstream(stage, legacy):
        roles += own.get(s, [])
    return sorted(dict.fromkeys(roles))


def file_sha256(path: Path, chunk: int = 1 << 20) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        while block := f.read(chunk):
            h.update(block)
    return h.hexdigest()


# stage -> the files of its output whose checksums mark_done records (None: every file but UNCHECKED): the
# outputs serving reads (serve.snapshot).
CHECKSUMMED: dict[str, tuple[str, ...] | None] = {"teacher": None, "score": ("ensemble.json",), "train": None,
                                                  "index": None}
# Top-level names written into an output after its stage finished, so not part of its content: the student's
# model card (distill.export.write_model_card, refreshed by evaluate) and its ONNX export (distill.onnx_export).
UNCHECKED = ("README.md", "onnx")


def dir_checksums(path: Path, only: tuple[str, ...] | None = None) -> dict[str, str]:
    """{path relative to ``path`` (posix): sha256} of every file under ``path`` (links followed), or of the
    files named in ``only``; names in :data:`UNCHECKED` are left out. An absent directory: {}."""
    path = Path(path)
    if not path.is_dir():
        return {}
    if only is not None:
        files = [path / name for name in only if (path / name).is_file()]
    else:
        files = [p for p in path.rglob("*") if p.is_file()
                 and p.relative_to(path).parts[0] not in UNCHECKED]
    return {p.relative_to(path).as_posix(): file_sha256(p) for p in sorted(files)}


def content_digest(files: dict[str, str]) -> str:
    """sha256 (hex) over the sorted ``{relative path: sha256}`` of a directory's files: equal exactly when
    the same files hold the same bytes."""
    h = hashlib.sha256()
    for rel in sorted(files):
        h.update(f"{rel}\0{files[rel]}\n".encode())
    return h.hexdigest()


class RunDir:
    """A run's artifact directory and manifest (round 1 of an iterative run)."""

    round = 1
    stage_order = STAGES
    shared_with: "RunDir | None" = None  # a sweep run: the base run whose finished stages it shares

    def __init__(self, config: RunConfig):
        self.config = config
        if not RUN_NAME.fullmatch(config.name):
            raise RunDirError(f"run name {config.name!r}: letters, digits, _ . + - only, not starting with '.' "
                              "(it names one directory under runs_dir)")
        self.runs_dir = Path(config.runs_dir).expanduser().resolve()
        self.path = (self.runs_dir / config.name).resolve()
        try:
            self.path.mkdir(parents=True, exist_ok=True)
        except OSError as err:
            raise RunDirError(f"cannot create run directory {self.path}: {err.strerror or err}") from err
        if not os.access(self.path, os.W_OK):
            raise RunDirError(f"run directory {self.path} is not writable")
        self.manifest_path = self.path / layout.MANIFEST
        self.manifest = self._load()

    def _load(self) -> dict:
        if self.manifest_path.exists():
            try:
                m = json.loads(self.manifest_path.read_text())
            except json.JSONDecodeError as err:
                raise RunDirError(f"{self.manifest_path} is not valid JSON: {err}") from err
        else:
            m = {"stages": {}}
        m["config"] = self.config.model_dump(mode="json")
        m["config_hash"] = self.config.digest()
        m["run_dir"] = str(self.path)  # runs_dir resolved: where this run was written
        return m

    @contextlib.contextmanager
    def locked(self, log=None):
        """Hold ``run.lock`` (:class:`RunLock`) while the block runs; the manifest is re-read once the
        lock is held, so it is the one the previous holder left."""
        lock = RunLock(self.path)
        taken_over = lock.acquire()
        try:
            if taken_over and log:
                log(f"[run] took over {lock.path} left by pid {taken_over.get('pid')} on "
                    f"{taken_over.get('host')}, which is no longer running")
            self.manifest = self._load()
            yield self
        finally:
            lock.release()

    def save(self) -> None:
        write_json_atomic(self.manifest_path, self.manifest)

    # ---- stages -------------------------------------------------------------------------------------
    @property
    def stages(self) -> dict:
        """This round's finished-stage entries in the manifest."""
        return self.manifest["stages"]

    def input_checksums(self, stage: str, legacy: bool = False) -> dict[str, list[str]]:
        """{role: [sha256]} of the input files ``stage`` depends on (:func:`stage_input_roles`), as the
        manifest's ``inputs`` records them (a sweep run carries its base run's)."""
        recorded = self.manifest.get("inputs") or {}
        files = input_files(self.config)
        out = {}
        for role in stage_input_roles(self.config, stage, legacy):
            shas = [recorded[str(p)] for p in files.get(role, []) if str(p) in recorded]
            if shas:
                out[role] = shas
        return out

    def digest(self, stage: str, legacy: bool = False) -> str:
        return stage_digest(self.config, stage, self.input_checksums(stage, legacy), legacy)

    def digests(self, stage: str) -> set[str]:
        """The digests a finished ``stage`` may be recorded with: this one and, where it differs, the one
        manifests written before session 24 recorded (``mine`` over the teacher's sections too), so those
        runs keep their candidates."""
        return {self.digest(stage), self.digest(stage, legacy=True)}

    def stage_path(self, stage: str) -> Path:
        return self.path / layout.stage_dir(stage)

    def is_done(self, stage: str) -> bool:
        entry = self.stages.get(stage)
        return bool(entry and entry.get("digest") in self.digests(stage) and self.stage_path(stage).exists())

    def mark_done(self, stage: str, counts: dict | None = None, **info) -> None:
        """Record ``stage`` as finished; an output serving reads (:data:`CHECKSUMMED`) also records its
        ``files`` ({relative path: sha256}) and their ``content_digest``."""
        out = self.stage_path(stage)
        if stage in CHECKSUMMED and out.is_dir():
            files = dir_checksums(out, CHECKSUMMED[stage])
            if files or CHECKSUMMED[stage] is None:
                info = {"files": files, "content_digest": content_digest(files), **info}
        self.stages[stage] = {
            "digest": self.digest(stage),
            "inputs": self.input_checksums(stage),
            "output": str(self.stage_path(stage).relative_to(self.manifest_path.parent)),
            "counts": counts or {},
            "finished_at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
            **info,
        }
        self.save()

    def invalidate_from(self, stage: str) -> None:
        """Forget ``stage`` and every stage that reads its output (:func:`downstream`: their inputs changed;
        a new teacher keeps the candidates), and every later round when the stage feeds the next round."""
        for s in downstream(stage):
            self.stages.pop(s, None)
        if stage in FEEDS_NEXT_ROUND:
            rounds = self.manifest.get("rounds", {})
            for r in [r for r in rounds if int(r) > self.round]:
                rounds.pop(r)
            if self.manifest.get("final_round", 1) > self.round:
                self.manifest["final_round"] = self.round
        self.save()

    # ---- rounds -------------------------------------------------------------------------------------
    def for_round(self, r: int) -> "RunDir":
        """The view of round ``r`` (this run directory itself for round 1)."""
        if r < 1:
            raise ValueError(f"rounds are numbered from 1, got {r}")
        return self if r == 1 else RoundDir(self, r)

    def previous_round(self) -> "RunDir | None":
        return None

    def final_round(self) -> int:
        """The last round r <= config.rounds whose rounds 1..r all have a finished student and index."""
        last = 1
        for r in range(2, self.config.rounds + 1):
            view = self.for_round(r)
            if not (view.is_done("train") and view.is_done("index")):
                break
            last = r
        return last

    def record_inputs(self, files: list[Path]) -> None:
        self.manifest["inputs"] = {str(p): file_sha256(p) for p in files if p.exists()}
        self.save()

    @contextlib.contextmanager
    def atomic_output(self, stage: str):
        """Yield a temporary directory; on success its files are fsynced and it is renamed over the stage's
        output (:func:`replace_path`: the previous output is deleted only once the new one is in place)."""
        with atomic_dir(self.stage_path(stage)) as tmp:
            yield tmp


class RoundDir(RunDir):
    """Round r >= 2 of an iterative run, seen as a run directory, so every stage module runs unchanged.

    - outputs live under ``runs/<name>/round-<r>/`` with round 1's names (``candidates/``, ``teacher/``,
      ``student/``, ``embeddings/``, ``index/``, ``eval/``, and ``train_work/``); the teacher is round 1's;
    - ``config`` is the run's config with ``student.model`` set to round r-1's student, so mining uses it
      and training continues from it;
    - a stage's digest chains round r-1's ``encode`` digest, the round number and the stage's own
      config digest: a change that re-runs round r-1's student re-runs round r.
    """

    stage_order = ROUND_STAGES

    def __init__(self, base: RunDir, r: int):
        self.base = base
        self.round = r
        prev = base.for_round(r - 1)
        student = base.config.student.model_copy(update={"model": str(prev.stage_path("train"))})
        self.config = base.config.model_copy(update={"student": student})
        self.path = base.path / layout.round_dir(r)
        try:
            self.path.mkdir(parents=True, exist_ok=True)
        except OSError as err:
            raise RunDirError(f"cannot create round directory {self.path}: {err.strerror or err}") from err
        self.manifest_path = base.manifest_path

    @property
    def manifest(self) -> dict:
        return self.base.manifest

    @property
    def stages(self) -> dict:
        return self.manifest.setdefault("rounds", {}).setdefault(str(self.round), {"stages": {}})["stages"]

    def save(self) -> None:
        self.base.save()

    def digest(self, stage: str, legacy: bool = False) -> str:
        own = stage_digest(self.config, stage, self.input_checksums(stage, legacy), legacy)
        chain = f"round {self.round}|{self.previous_round().digest('encode')}|{own}"
        return hashlib.sha256(chain.encode()).hexdigest()[:16]

    def stage_path(self, stage: str) -> Path:
        if stage == "teacher":  # one teacher for every round
            return self.base.stage_path("teacher")
        return super().stage_path(stage)

    def previous_round(self) -> RunDir:
        return self.base.for_round(self.round - 1)

    def record_inputs(self, files: list[Path]) -> None:
        self.base.record_inputs(files)


# ---- the run lock -----------------------------------------------------------------------------------------
def _proc_stat(pid: int) -> list[str] | None:
    """/proc/<pid>/stat's fields from the third (state) on; None where /proc is not available."""
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except (OSError, IndexError):
        return None


def _proc_start(pid: int) -> int | None:
    """The process's start time (clock ticks since boot, /proc/<pid>/stat field 22), to tell a reused pid
    from the process that wrote a lock; None where /proc is not available."""
    try:
        return int(_proc_stat(pid)[19])
    except (TypeError, ValueError, IndexError):
        return None


def _pid_alive(pid: int, start: int | None = None) -> bool:
    """Whether process ``pid`` (started at ``start``, when known) still runs on this host: a zombie or a
    pid now used by a process started at another time does not count."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # another user's process
        pass
    except OSError:
        return True
    stat = _proc_stat(pid)
    if stat is None:
        return True
    if stat[0] in ("Z", "X"):
        return False
    now = _proc_start(pid)
    return not (start is not None and now is not None and now != start)


class RunLock:
    """``<run dir>/run.lock``: one pipeline at a time on a run directory.

    Created with O_EXCL and holding {pid, host, pid_start, started_at, argv}. A second run fails at once
    with :class:`RunDirError` naming the holder; a lock whose holder is on this host and no longer running
    (or whose pid now belongs to another process) is taken over, under a lock on ``.run.lock.guard`` so two
    runs cannot both take it. A lock held from another host is never taken over (its pid means nothing
    here): delete the file once that run is gone. Released (deleted) when the holder finishes."""

    stale_unreadable_s = 30.0  # a lock file still empty after this long was left by a crash mid-create

    def __init__(self, directory: Path):
        self.path = Path(directory) / LOCK_NAME
        self.guard = Path(directory) / f".{LOCK_NAME}.guard"
        self.record = None

    def _read(self) -> tuple[bytes, dict | None]:
        try:
            raw = self.path.read_bytes()
        except FileNotFoundError:
            return b"", None
        try:
            rec = json.loads(raw)
            return raw, rec if isinstance(rec, dict) and "pid" in rec else None
        except ValueError:
            return raw, None

    def _stale(self, rec: dict | None) -> bool:
        if rec is None:  # unreadable: a creator that died between create and write, once old enough
            try:
                return time.time() - self.path.stat().st_mtime > self.stale_unreadable_s
            except FileNotFoundError:
                return True
        if rec.get("host") != socket.gethostname():
            return False
        try:
            return not _pid_alive(int(rec["pid"]), rec.get("pid_start"))
        except (TypeError, ValueError):
            return False

    def _describe(self, rec: dict | None) -> str:
        if rec is None:
            return f"{self.path} exists (being written by another run)"
        return (f"{self.path} is held by pid {rec.get('pid')} on host {rec.get('host')} "
                f"(since {rec.get('started_at', '?')}: {' '.join(rec.get('argv') or [])})")

    def _take_over(self, raw: bytes) -> None:
        """Delete the stale lock whose bytes were ``raw``, unless another run replaced it meanwhile."""
        import fcntl

        fd = os.open(self.guard, os.O_RDWR | os.O_CREAT, 0o644)
        try:
            fcntl.lockf(fd, fcntl.LOCK_EX)
            if self._read()[0] == raw:
                self.path.unlink(missing_ok=True)
        finally:
            os.close(fd)  # closing releases the lock

    def acquire(self) -> dict | None:
        """Take the lock; returns the stale holder's record when one was taken over (else None)."""
        rec = {"pid": os.getpid(), "host": socket.gethostname(), "pid_start": _proc_start(os.getpid()),
               "started_at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()), "argv": sys.argv[:12],
               "nonce": uuid.uuid4().hex}
        taken_over = None
        for _ in range(5):
            try:
                fd = os.open(self.path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o644)
            except FileExistsError:
                raw, holder = self._read()
                if not raw and holder is None and not self.path.exists():
                    continue  # released meanwhile
                if not self._stale(holder):
                    raise RunDirError(f"run directory {self.path.parent} is in use: {self._describe(holder)}. "
                                      "Wait for that run to finish or stop it; a lock left by a process that is "
                                      "no longer running on this host is taken over automatically, one from "
                                      f"another host is not: delete {self.path} once that run is gone") from None
                self._take_over(raw)
                taken_over = holder or {}
                continue
            except OSError as err:
                raise RunDirError(f"cannot create {self.path}: {err.strerror or err}") from err
            try:
                os.write(fd, json.dumps(rec).encode())
                os.fsync(fd)
            finally:
                os.close(fd)
            self.record = rec
            return taken_over
        raise RunDirError(f"cannot take {self.path}: other runs keep taking it")

    def release(self) -> None:
        if self.record is None:
            return
        _, holder = self._read()
        if holder is not None and holder.get("nonce") == self.record["nonce"]:
            self.path.unlink(missing_ok=True)
        self.record = None
