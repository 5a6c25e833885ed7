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
