"""The label budget: which labelled training queries keep their judgements.

``training.label_share`` (the student's judgements) and ``teacher.label_share`` (the qrels the teacher's
fine-tune reads) draw from one function, so at the same share and run seed the student and its teacher see
the same labelled queries: an end-to-end budget, where nothing upstream of the student has seen more labels.

    kept = the first round(share x n) of the n labelled query ids, sorted, shuffled by Random(seed)
"""

from __future__ import annotations

import random


def kept_queries(labelled: list[str] | set[str], share: float, seed: int) -> set[str]:
    """round(share x n) of the n distinct ids in ``labelled``, drawn with ``seed`` from the sorted ids
    (independent of the order given); share 1 keeps them all."""
    if not 0 <= share <= 1:
        raise ValueError(f"label share {share} is outside [0, 1]")
    ids = sorted(set(labelled))
    return set(random.Random(seed).sample(ids, round(share * len(ids))))
