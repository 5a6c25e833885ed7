"""Writes that leave either the old file or the new one, never half of either: one way for the whole package.

Everything is written under a temporary name beside its destination (``.<name>.tmp-<pid>``), fsynced, and
renamed over it; a directory output (:func:`atomic_dir`) is swapped in whole, and the previous one is
deleted only once the new one is in place. An ``OSError`` (disk full, unwritable) becomes a
:class:`RunDirError` naming the destination, and nothing is left under the temporary name.
"""

from __future__ import annotations

import contextlib
import errno
import json
import os
import shutil
import sys
from collections.abc import Callable
from pathlib import Path


class RunDirError(RuntimeError):
    """The run directory cannot be written or holds something unexpected."""


def tmp_name(final: Path, tag: str = "tmp") -> Path:
    """The temporary name beside ``final`` that this process writes it under."""
    return final.with_name(f".{final.name}.{tag}-{os.getpid()}")


def fsync_dir(path: Path) -> None:
    """Make a directory's entries (a rename into it) durable; a no-op where directories cannot be synced."""
    try:
        fd = os.open(path, os.O_RDONLY | getattr(os, "O_DIRECTORY", 0))
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError as err:
        if err.errno not in (errno.EINVAL, errno.EBADF, errno.ENOTSUP):
            raise
    finally:
        os.close(fd)


def fsync_tree(root: Path) -> None:
    """fsync every file under ``root`` and every directory, ``root`` included (symlinks are not followed)."""
    for dirpath, _, filenames in os.walk(root):
        for name in filenames:
            p = os.path.join(dirpath, name)
            if os.path.islink(p):
                continue
            fd = os.open(p, os.O_RDONLY)
            try:
                os.fsync(fd)
            finally:
                os.close(fd)
        fsync_dir(Path(dirpath))


def remove(path: Path) -> None:
    """Remove a file, a symlink (not what it points at) or a directory tree; missing is fine."""
    if path.is_symlink() or path.is_file():
        path.unlink(missing_ok=True)
    else:
        shutil.rmtree(path, ignore_errors=True)


def _rename_exchange(a: Path, b: Path) -> bool:
    """Atomically swap two existing paths (Linux renameat2 RENAME_EXCHANGE). False where the platform or
    file system cannot (then the caller renames the old one aside first)."""
    if not sys.platform.startswith("linux"):
        return False
    import ctypes

    libc = ctypes.CDLL(None, use_errno=True)
    fn = getattr(libc, "renameat2", None)
    if fn is None:
        return False
    at_fdcwd, rename_exchange = -100, 2
    if fn(at_fdcwd, os.fsencode(str(a)), at_fdcwd, os.fsencode(str(b)), rename_exchange) == 0:
        return True
    err = ctypes.get_errno()
    if err in (errno.EINVAL, errno.ENOSYS, errno.ENOTSUP, errno.EOPNOTSUPP, errno.EPERM):
        return False
    raise OSError(err, os.strerror(err), str(b))


def replace_path(new: Path, final: Path) -> None:
    """Put ``new`` at ``final`` by rename. An existing ``final`` (a directory, or a sweep's symlink) is
    swapped out in one step where the file system can (RENAME_EXCHANGE), else renamed aside just before
    ``new`` is renamed in; either way the old output is deleted only once the new one is in place."""
    if not os.path.lexists(final):
        os.rename(new, final)
    else:
        if _rename_exchange(new, final):
            old = new  # the swap left the previous output under the temporary name
        else:
            old = tmp_name(final, "old")
            os.rename(final, old)
            os.rename(new, final)
        fsync_dir(final.parent)
        remove(old)
    fsync_dir(final.parent)


def write_atomic(path: Path, write: Callable[[Path], None]) -> Path:
    """Run ``write(tmp)`` for a temporary path beside ``path``, fsync it and rename it over ``path``."""
    path = Path(path)
    tmp = tmp_name(path)
    try:
        write(tmp)
        with open(tmp, "rb") as f:
            os.fsync(f.fileno())
        tmp.replace(path)
        fsync_dir(path.parent)
    except OSError as err:
        with contextlib.suppress(OSError):
            tmp.unlink()
        raise RunDirError(f"cannot write {path}: {err.strerror or err}") from err
    return path


def write_text_atomic(path: Path, text: str) -> Path:
    return write_atomic(path, lambda tmp: tmp.write_text(text, encoding="utf-8"))


def write_json_atomic(path: Path, payload, sort_keys: bool = True) -> Path:
    """``payload`` as indented JSON (keys sorted unless ``sort_keys`` is False)."""
    return write_text_atomic(path, json.dumps(payload, indent=2, sort_keys=sort_keys))


@contextlib.contextmanager
def atomic_dir(final: Path):
    """Yield a temporary directory beside ``final``; when the block succeeds its files are fsynced and it is
    renamed over ``final`` (:func:`replace_path`). Temporary or old copies a killed run left are removed
    first; on an error nothing is left behind."""
    final = Path(final)
    tmp = tmp_name(final)
    for pattern in (f".{final.name}.tmp-*", f".{final.name}.old-*"):  # ours, or left by a run that was killed
        for stale in final.parent.glob(pattern):
            remove(stale)
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
    try:
        fsync_tree(tmp)  # durable before the manifest can call the stage finished
        replace_path(tmp, final)  # a sweep's shared stage: the link is replaced, not the base's output
    except OSError as err:
        remove(tmp)
        raise RunDirError(f"cannot move {tmp} to {final}: {err.strerror or err}") from err
