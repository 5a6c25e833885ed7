"""The pipeline's stages, in order, each registered once in :data:`RUNNERS`.

Every stage is ``run(rd, data) -> counts``: ``rd`` a :class:`distill.manifest.RunDir` (or a round's
:class:`~distill.manifest.RoundDir`), ``data`` the loaded :class:`distill.data.BeirData`. A stage resolves
what else it needs (the teacher's directory, the student's) from ``rd`` itself, writes its output through
``rd.atomic_output(stage)`` and records itself with ``rd.mark_done``. ``distill.pipeline`` walks this table.
"""

from __future__ import annotations

from collections.abc import Callable

from distill.stages import encode, evaluate, index, mine, score, teacher, train


# stage -> run(rd, data) -> counts; the order is the pipeline's (distill.manifest.STAGES)
RUNNERS: dict[str, Callable] = {
    "teacher": teacher.run,
    "mine": mine.run,
    "score": score.run,
    "train": train.run,
    "encode": encode.run,
    "index": index.run,
    "evaluate": evaluate.run,
}


def runner(stage: str) -> Callable:
    """The ``run(rd, data)`` of ``stage``; a ValueError names an unknown stage."""
    try:
        return RUNNERS[stage]
    except KeyError:
        raise ValueError(f"unknown stage {stage!r}") from None
