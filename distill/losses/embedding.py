"""Embedding matching (EmbedDistill, docs/METHODS.md, section 2.2).

    L_emb = mean_x || P(E_S(x)) - E_T(x) ||^2        (mode "l2")
    L_emb = mean_x ( 1 - cos(P(E_S(x)), E_T(x)) )    (mode "cosine")

``student`` [N, d_s] after the projection P (a learned linear map when d_s != d_t, else identity),
``teacher`` [N, d_t] (carries no gradient); ``mask`` [N] (optional) drops padding rows.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F


def embedding_match(student: torch.Tensor, teacher: torch.Tensor, mode: str = "l2",
                    mask: torch.Tensor | None = None) -> torch.Tensor:
    t = teacher.detach().to(student.dtype)
    if mode == "l2":
        per_row = ((student - t) ** 2).sum(-1)
    elif mode == "cosine":
        per_row = 1 - F.cosine_similarity(student, t, dim=-1)
    else:
        raise ValueError(f"embedding match mode must be 'l2' or 'cosine', got {mode!r}")
    if mask is None:
        return per_row.mean()
    m = mask.to(per_row.dtype)
    return (per_row * m).sum() / m.sum().clamp(min=1)


class EmbeddingMatchLoss(torch.nn.Module):
    """Embedding matching through the common signature (formula above; EmbedDistill, Kim et al. 2023,
    arXiv 2301.12005): the projected student query vectors against ``batch.teacher_queries``, plus (unless
    ``batch.asymmetric``: the documents are the teacher's own) the projected document vectors against
    ``batch.teacher_docs`` under the flattened ``batch.mask``."""

    def __init__(self, mode: str = "l2"):
        super().__init__()
        self.mode = mode

    def forward(self, batch) -> torch.Tensor:
        q = batch.queries if batch.asymmetric else batch.projection(batch.queries)
        loss = embedding_match(q, batch.teacher_queries, self.mode)
        if not batch.asymmetric:
            loss = loss + embedding_match(batch.projection(batch.docs), batch.teacher_docs, self.mode,
                                          batch.mask.reshape(-1))
        return loss
