"""Margin-MSE (Hofstaetter et al.; docs/METHODS.md, section 1.3).

    L = mean_{q, j != pos} ( (s_pos - s_j) - (t_pos - t_j) )^2

with s = student score / T_s and t = teacher logit / T_t. Inputs [B, K]; column ``pos`` (default 0)
holds each query's positive; ``mask`` [B, K] marks real candidates.
"""

from __future__ import annotations

import torch


def margin_mse(student: torch.Tensor, teacher: torch.Tensor, teacher_temperature: float = 1.0,
               student_temperature: float = 1.0, mask: torch.Tensor | None = None, pos: int = 0) -> torch.Tensor:
    s = student / student_temperature
    t = teacher.detach().to(s.dtype) / teacher_temperature
    ds = s[:, pos:pos + 1] - s
    dt = t[:, pos:pos + 1] - t
    err = (ds - dt) ** 2
    keep = torch.ones_like(err, dtype=torch.bool)
    keep[:, pos] = False
    if mask is not None:
        keep &= mask
    return (err * keep).sum() / keep.sum().clamp(min=1)


class MarginMSELoss(torch.nn.Module):
    """Margin-MSE through the common signature: ``margin_mse`` of ``batch.scores`` against
    ``batch.teacher_scores`` (positive in column 0) under ``batch.mask`` (formula above; Hofstaetter et al.
    2020, arXiv 2010.02666)."""

    def __init__(self, teacher_temperature: float = 1.0, student_temperature: float = 1.0):
        super().__init__()
        self.teacher_temperature, self.student_temperature = teacher_temperature, student_temperature

    def forward(self, batch) -> torch.Tensor:
        return margin_mse(batch.scores, batch.teacher_scores, self.teacher_temperature, self.student_temperature,
                          batch.mask)
