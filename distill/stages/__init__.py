"""The pipeline's stages, in order, each registered once in :data:`RUNNERS`.

Every stage is ``run(rd, data) -> counts``: ``rd`` a :class:`distill.manifest.RunDir` (or a round's
:class:`~distill.manifest.RoundDir`), ``data`` the loaded :class:`distill.data.BeirData`. A stage resolves
what else it needs (the teacher's directory, the student's) from ``rd`` itself, writes its output through
``rd.atomic_output(stage)`` and records itself with ``rd.mark_done``. ``distill.pipeline`` walks this table.

A stage's module is imported when its ``run`` is first looked up (or ``distill.stages.<name>`` is read),
not with this package: a Ray actor or Ray Train worker unpickles one stage's class or loop, which imports
this package first, and should not pay for every other stage's imports (pandas, FAISS, Ray Data, ...).
"""

from __future__ import annotations

import importlib
from collections.abc import Callable, Iterator, MutableMapping

# the pipeline's order (distill.manifest.STAGES); each stage is distill.stages.<name>.run
ORDER = ("teacher", "mine", "score", "train", "encode", "index", "evaluate")


class _Table(MutableMapping):
    """stage -> ``run``, each imported on first lookup; an entry set here (a test's stand-in) wins."""

    def __init__(self, names):
        self._set: dict[str, Callable | None] = dict.fromkeys(names)

    def __getitem__(self, stage: str) -> Callable:
        run = self._set[stage]
        return run if run is not None else importlib.import_module(f"{__name__}.{stage}").run

    def __setitem__(self, stage: str, run: Callable) -> None:
        self._set[stage] = run

    def __delitem__(self, stage: str) -> None:
        del self._set[stage]

    def __iter__(self) -> Iterator[str]:
        return iter(self._set)

    def __len__(self) -> int:
        return len(self._set)


# stage -> run(rd, data) -> counts; the order is the pipeline's (distill.manifest.STAGES)
RUNNERS: MutableMapping[str, Callable] = _Table(ORDER)


def runner(stage: str) -> Callable:
    """The ``run(rd, data)`` of ``stage``; a ValueError names an unknown stage."""
    try:
        return RUNNERS[stage]
    except KeyError:
        raise ValueError(f"unknown stage {stage!r}") from None


def __getattr__(name: str):
    """``distill.stages.<stage>``: the stage's module, imported on first use."""
    if name in ORDER:
        return importlib.import_module(f"{__name__}.{name}")
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
