"""Finished shards of a stage that has not finished: ``runs/<name>/.<output>.partial/``.

A long stage (``encode``) splits its input into shards and saves each finished shard here under a
temporary name, then renames it (``shard-00003.parquet``): a file with the final name is a whole shard.
``meta.json`` holds a fingerprint of everything the shards depend on (the stage's config digest, the
input ids, the model's files); a folder with another fingerprint is dropped whole, so a run with a
different config or model never picks up stale shards. A re-run keeps each shard whose file holds
exactly the ids that shard should hold, and redoes the rest. When the stage finishes, its output is
assembled from the shards and the folder is removed.
"""

from __future__ import annotations

import hashlib
import json
import shutil
from collections.abc import Callable
from pathlib import Path

from distill.atomic import RunDirError, write_atomic, write_json_atomic

META = "meta.json"


def fingerprint(*parts) -> str:
    """SHA-256 (first 16 hex) of JSON-serialisable parts."""
    return hashlib.sha256(json.dumps(parts, sort_keys=True, default=str).encode()).hexdigest()[:16]


def dir_digest(path: Path) -> str:
    """SHA-256 (first 16 hex) over the relative names and contents of every file under ``path``."""
    h = hashlib.sha256()
    for f in sorted(p for p in Path(path).rglob("*") if p.is_file()):
        h.update(str(f.relative_to(path)).encode() + b"\0")
        with open(f, "rb") as fh:
            while block := fh.read(1 << 20):
                h.update(block)
    return h.hexdigest()[:16]


class PartialShards:
    """The partial folder of one stage output; see the module docstring."""

    def __init__(self, path: Path, key: str):
        self.path = Path(path)
        if self.path.exists() and not self.path.is_dir():
            raise RunDirError(f"{self.path} exists and is not a directory; remove it")
        meta = self.path / META
        try:
            stale = self.path.exists() and (not meta.exists() or json.loads(meta.read_text()).get("key") != key)
        except (OSError, ValueError):
            stale = True
        if stale:
            shutil.rmtree(self.path, ignore_errors=True)
        try:
            self.path.mkdir(parents=True, exist_ok=True)
        except OSError as err:
            raise RunDirError(f"cannot create {self.path}: {err.strerror or err}") from err
        for tmp in self.path.glob("*.tmp-*"):  # a shard being written when a run died
            tmp.unlink(missing_ok=True)
        if not meta.exists():
            write_json_atomic(meta, {"key": key})

    def shard_path(self, k: int) -> Path:
        return self.path / f"shard-{k:05d}.parquet"

    def save(self, k: int, write: Callable[[Path], None]) -> Path:
        """Run ``write(tmp_path)``, then rename into place; on error nothing is left under the final name."""
        return write_atomic(self.shard_path(k), write)

    def finished(self, shard_ids: list[list[str]], read_ids: Callable[[Path], list[str]]) -> set[int]:
        """Indices of shards whose file exists and holds exactly ``shard_ids[k]``; other files are removed."""
        done = set()
        for k, ids in enumerate(shard_ids):
            p = self.shard_path(k)
            if not p.exists():
                continue
            try:
                ok = read_ids(p) == ids
            except Exception:  # unreadable: redo the shard
                ok = False
            if ok:
                done.add(k)
            else:
                p.unlink(missing_ok=True)
        return done

    def drop(self) -> None:
        shutil.rmtree(self.path, ignore_errors=True)
