"""The run directory and its ``manifest.json``.

``runs/<name>/manifest.json`` holds the config, its hash, the input checksums and, for each finished
stage, the digest of the config sections it depends on, its outputs and row counts. A stage counts as
finished only when it is listed with the same digest *and* its output exists; a stage's output is
written under a temporary name and renamed into place, so a stage that died leaves nothing a later run
could take for finished.

Iterative runs (``rounds: N``): round 1 is the layout above; round r > 1 keeps its stages' outputs under
``round-<r>/`` (same names) and its entries under ``manifest["rounds"]["<r>"]["stages"]`` (see
:class:`RoundDir`); ``final_round`` names the last round whose student and index are finished.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import shutil
import time
from pathlib import Path

from distill.config import RunConfig

# Stage order and the config sections each stage's output depends on (cumulative down the pipeline).
STAGES = ["teacher", "mine", "score", "train", "encode", "index", "evaluate"]
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


class RunDirError(RuntimeError):
    """The run directory cannot be written or holds something unexpected."""


def stage_digest(config: RunConfig, stage: str) -> str:
    sections: list[str] = []
    for s in STAGES[: STAGES.index(stage) + 1]:
        sections += STAGE_SECTIONS[s]
    dump = config.model_dump(mode="json")
    dump["mining"]["encoder"] = config.mining_encoder.model_dump(mode="json")  # unset and set-to-the-same agree
    payload = {s: dump[s] for s in dict.fromkeys(sections)}
    if config.teacher.kind == "reader" and config.teacher.reader_retriever == "student":  # retrieves its passages
        payload["_reader_retriever"] = dump["mining"]["encoder"]
    payload["_extra"] = {"seed": config.seed,
                         "stages": [s for s in config.stages if s in STAGES[: STAGES.index(stage) + 1]]}
    return hashlib.sha256(json.dumps(payload, sort_keys=True).encode()).hexdigest()[:16]


def file_sha256(path: Path, chunk: int = 1 << 20) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        while block := f.read(chunk):
            h.update(block)
    return h.hexdigest()


def write_json_atomic(path: Path, payload) -> None:
    path = Path(path)
    tmp = path.with_name(f".{path.name}.tmp-{os.getpid()}")
    try:
        with open(tmp, "w", encoding="utf-8") as f:
            json.dump(payload, f, indent=2, sort_keys=True)
            f.flush()
            os.fsync(f.fileno())
        tmp.replace(path)
    except OSError as err:
        with contextlib.suppress(OSError):
            tmp.unlink()
        raise RunDirError(f"cannot write {path}: {err.strerror or err}") from err


class RunDir:
    """A run's artifact directory and manifest (round 1 of an iterative run)."""

    round = 1
    stage_order = STAGES
    shared_with: "RunDir | None" = None  # a sweep run: the base run whose finished stages it shares

    def __init__(self, config: RunConfig):
        self.config = config
        self.path = config.run_dir.resolve()
        try:
            self.path.mkdir(parents=True, exist_ok=True)
        except OSError as err:
            raise RunDirError(f"cannot create run directory {self.path}: {err.strerror or err}") from err
        if not os.access(self.path, os.W_OK):
            raise RunDirError(f"run directory {self.path} is not writable")
        self.manifest_path = self.path / "manifest.json"
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
        return m

    def save(self) -> None:
        write_json_atomic(self.manifest_path, self.manifest)

    # ---- stages -------------------------------------------------------------------------------------
    @property
    def stages(self) -> dict:
        """This round's finished-stage entries in the manifest."""
        return self.manifest["stages"]

    def digest(self, stage: str) -> str:
        return stage_digest(self.config, stage)

    def stage_path(self, stage: str) -> Path:
        return self.path / {"teacher": "teacher_model", "score": "teacher", "mine": "candidates",
                            "train": "student", "encode": "embeddings", "evaluate": "eval"}.get(stage, stage)

    def is_done(self, stage: str) -> bool:
        entry = self.stages.get(stage)
        return bool(entry and entry.get("digest") == self.digest(stage) and self.stage_path(stage).exists())

    def mark_done(self, stage: str, counts: dict | None = None, **info) -> None:
        self.stages[stage] = {
            "digest": self.digest(stage),
            "output": str(self.stage_path(stage).relative_to(self.manifest_path.parent)),
            "counts": counts or {},
            "finished_at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
            **info,
        }
        self.save()

    def invalidate_from(self, stage: str) -> None:
        """Forget ``stage`` and every later stage (their inputs changed), and every later round when the
        stage feeds the next round."""
        for s in self.stage_order[self.stage_order.index(stage):]:
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
        """Yield a temporary directory; on success it replaces the stage's output directory."""
        final = self.stage_path(stage)
        tmp = final.with_name(f".{final.name}.tmp-{os.getpid()}")
        for stale in final.parent.glob(f".{final.name}.tmp-*"):  # ours, or left by a run that was killed
            shutil.rmtree(stale, ignore_errors=True)
        try:
            tmp.mkdir(parents=True)
        except OSError as err:
            raise RunDirError(f"cannot create {tmp}: {err.strerror or err}") from err
        try:
            yield tmp
        except OSError as err:  # disk full, unwritable: name the output; leave nothing behind
            shutil.rmtree(tmp, ignore_errors=True)
            raise RunDirError(f"cannot write {final}: {err.strerror or err}") from err
        except BaseException:
            shutil.rmtree(tmp, ignore_errors=True)
            raise
        if final.is_symlink():  # a stage a sweep variant shared from its base run: replace the link only
            final.unlink()
        shutil.rmtree(final, ignore_errors=True)
        try:
            tmp.replace(final)
        except OSError as err:
            shutil.rmtree(tmp, ignore_errors=True)
            raise RunDirError(f"cannot move {tmp} to {final}: {err.strerror or err}") from err


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
        self.path = base.path / f"round-{r}"
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

    def digest(self, stage: str) -> str:
        chain = f"round {self.round}|{self.previous_round().digest('encode')}|{stage_digest(self.config, stage)}"
        return hashlib.sha256(chain.encode()).hexdigest()[:16]

    def stage_path(self, stage: str) -> Path:
        if stage == "teacher":  # one teacher for every round
            return self.base.stage_path("teacher")
        return super().stage_path(stage)

    def previous_round(self) -> RunDir:
        return self.base.for_round(self.round - 1)

    def record_inputs(self, files: list[Path]) -> None:
        self.base.record_inputs(files)
