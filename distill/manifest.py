"""The run directory and its ``manifest.json``.

``runs/<name>/manifest.json`` holds the config, its hash, the input checksums and, for each finished
stage, the digest of the config sections it depends on, its outputs and row counts. A stage counts as
finished only when it is listed with the same digest *and* its output exists; a stage's output is
written under a temporary name and renamed into place, so a stage that died leaves nothing a later run
could take for finished.
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
    "mine": ["data", "student", "mining"],
    "score": ["scoring"],
    "train": ["training"],
    "encode": ["encoding"],
    "index": ["index"],
    "evaluate": ["evaluation"],
}


class RunDirError(RuntimeError):
    """The run directory cannot be written or holds something unexpected."""


def stage_digest(config: RunConfig, stage: str) -> str:
    sections: list[str] = []
    for s in STAGES[: STAGES.index(stage) + 1]:
        sections += STAGE_SECTIONS[s]
    sections = list(dict.fromkeys(sections))
    extra = {"seed": config.seed, "stages": [s for s in config.stages if s in STAGES[: STAGES.index(stage) + 1]]}
    return hashlib.sha256((config.digest(*sections) + json.dumps(extra, sort_keys=True)).encode()).hexdigest()[:16]


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
    """A run's artifact directory and manifest."""

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
    def stage_path(self, stage: str) -> Path:
        return self.path / {"teacher": "teacher_model", "score": "teacher", "mine": "candidates",
                            "train": "student", "encode": "embeddings", "evaluate": "eval"}.get(stage, stage)

    def is_done(self, stage: str) -> bool:
        entry = self.manifest["stages"].get(stage)
        return bool(entry and entry.get("digest") == stage_digest(self.config, stage)
                    and self.stage_path(stage).exists())

    def mark_done(self, stage: str, counts: dict | None = None, **info) -> None:
        self.manifest["stages"][stage] = {
            "digest": stage_digest(self.config, stage),
            "output": str(self.stage_path(stage).relative_to(self.path)),
            "counts": counts or {},
            "finished_at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
            **info,
        }
        self.save()

    def invalidate_from(self, stage: str) -> None:
        """Forget ``stage`` and every later stage (their inputs changed)."""
        for s in STAGES[STAGES.index(stage):]:
            self.manifest["stages"].pop(s, None)
        self.save()

    def record_inputs(self, files: list[Path]) -> None:
        self.manifest["inputs"] = {str(p): file_sha256(p) for p in files if p.exists()}
        self.save()

    @contextlib.contextmanager
    def atomic_output(self, stage: str):
        """Yield a temporary directory; on success it replaces the stage's output directory."""
        final = self.stage_path(stage)
        tmp = final.with_name(f".{final.name}.tmp-{os.getpid()}")
        shutil.rmtree(tmp, ignore_errors=True)
        try:
            tmp.mkdir(parents=True)
        except OSError as err:
            raise RunDirError(f"cannot create {tmp}: {err.strerror or err}") from err
        try:
            yield tmp
        except BaseException:
            shutil.rmtree(tmp, ignore_errors=True)
            raise
        shutil.rmtree(final, ignore_errors=True)
        tmp.replace(final)
