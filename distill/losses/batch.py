"""The one input every distillation loss takes: a ``StepBatch`` of student outputs and teacher targets.

A training step builds one ``StepBatch`` (distill.collator.assemble) and every enabled loss reads the
fields it needs from it, so the step sums ``weight * loss(batch)`` without a branch per loss
(distill.losses.combine). Shapes: B queries per worker, K candidates per query (column 0 the positive),
d the student's width, d_t the teacher's, L_t the teacher's layers.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

import torch


def pair_scores(queries: torch.Tensor, docs: torch.Tensor, k: int) -> torch.Tensor:
    """s[b, j] = q_b . d_{b*k + j}: queries [B, d], docs [B*k, d] (each query's k candidates in a row) -> [B, k]."""
    return (queries.unsqueeze(1) * docs.view(len(queries), k, -1)).sum(-1)


@dataclass
class StepBatch:
    """What a loss sees of one training step (fields it does not need may be None).

    scores [B, K]          student scores q . d of each query's candidates
    teacher_scores [B, K]  the teacher's raw logits
    mask [B, K]            True = a real candidate, False = padding
    queries [B, d]         student query vectors; docs [B*K, d] the candidates' vectors (asymmetric: the
                           teacher's fixed document vectors)
    teacher_queries [B, d_t], teacher_docs [B*K, d_t]   EmbedDistill targets
    projection             P: student width -> teacher width (None for an asymmetric student, whose query
                           encoder already outputs the teacher's width)
    asymmetric             documents are the teacher's: only queries are matched
    query_layers, doc_layers   per student layer, [B, d] / [B*K, d] pooled vectors (LEAD)
    teacher_layers [B, K, L_t] the teacher's per-layer scores; layer_pairs the (student m, teacher l) pairs
                           drawn for this step (1-based)
    """

    scores: torch.Tensor
    teacher_scores: torch.Tensor
    mask: torch.Tensor
    queries: torch.Tensor
    docs: torch.Tensor
    teacher_queries: torch.Tensor | None = None
    teacher_docs: torch.Tensor | None = None
    projection: Callable[[torch.Tensor], torch.Tensor] | None = None
    asymmetric: bool = False
    query_layers: list[torch.Tensor] | None = None
    doc_layers: list[torch.Tensor] | None = None
    teacher_layers: torch.Tensor | None = None
    layer_pairs: list[tuple[int, int]] | None = None

    @property
    def group_size(self) -> int:
        return self.scores.shape[1]
