"""Models kept loaded in a Ray worker process, so a run pays each model's start-up once, not once per stage.

A Ray Data stage on the ``tasks`` pool (distill.raydata) runs its model class as plain Ray tasks. Ray
keeps a job's worker processes between tasks, so the process that encoded the corpus for ``mine`` is the
one that scores pairs for ``score`` and encodes again for ``evaluate``: torch and transformers are imported
once per process per run, and each model is built once per process (:func:`cached`) and reused by every
later batch and stage that asks for the same one.

"The same one" is :func:`model_key`: the model class, its constructor arguments, and the size, modification
time and inode of every file under each path those arguments name. A model rewritten in place between
stages (a student saved again after training) therefore gets a new key and is loaded again; it is never
served stale. The cache holds the :data:`CAPACITY` models used last (a run alternates between at most a
student and a teacher); :data:`BUILDS` counts the models this process built, by key.
"""

from __future__ import annotations

import hashlib
import json
import os
from collections import OrderedDict
from pathlib import Path

CAPACITY = 2
_MODELS: OrderedDict[str, object] = OrderedDict()
BUILDS: dict[str, int] = {}


def _files_state(value, out: list) -> None:
    """Append (path, [(file, size, mtime_ns, inode)...]) for every existing path in ``value`` (nested)."""
    if isinstance(value, dict):
        for k in sorted(value):
            _files_state(value[k], out)
    elif isinstance(value, (list, tuple)):
        for v in value:
            _files_state(v, out)
    elif isinstance(value, (str, os.PathLike)) and str(value) and len(str(value)) < 4096:
        p = Path(value)
        try:
            if not p.exists():
                return
            files = [p] if p.is_file() else sorted(f for f in p.rglob("*") if f.is_file())
        except OSError:
            return
        state = []
        for f in files:
            st = f.stat()
            state.append((str(f.relative_to(p)) if f != p else "", st.st_size, st.st_mtime_ns, st.st_ino))
        out.append((str(p.resolve()), state))


def model_key(cls: type, kwargs: dict) -> str:
    """SHA-256 (first 24 hex) of ``cls``, ``kwargs`` and the state of the files the kwargs name."""
    files: list = []
    _files_state(kwargs, files)
    blob = json.dumps([cls.__module__, cls.__qualname__, kwargs, files], sort_keys=True, default=str)
    return hashlib.sha256(blob.encode()).hexdigest()[:24]


def cached(cls: type, kwargs: dict, key: str):
    """``cls(**kwargs)`` built once in this process and kept while among the :data:`CAPACITY` used last."""
    model = _MODELS.pop(key, None)
    if model is None:
        model = cls(**kwargs)
        BUILDS[key] = BUILDS.get(key, 0) + 1
    _MODELS[key] = model
    while len(_MODELS) > CAPACITY:
        _MODELS.popitem(last=False)
    return model


def apply(batch, cls: type, kwargs: dict, key: str):
    """The Ray Data task function: the cached model of (``cls``, ``kwargs``) applied to ``batch``."""
    return cached(cls, kwargs, key)(batch)


def task_fn(cls: type):
    """:func:`apply` under ``cls``'s name, so Ray Data's progress and logs name the model, not ``apply``."""
    def fn(batch, cls: type, kwargs: dict, key: str):
        return cached(cls, kwargs, key)(batch)

    fn.__name__ = fn.__qualname__ = cls.__name__
    return fn
