"""Pointwise score MSE (docs/METHODS.md, section 1.2).

    L = mean_{q, i} ( s_i / T_s - t_i / T_t )^2

Inputs [B, K]; ``mask`` [B, K] marks real candidates.
"""

from __future__ import annotations

import torch


def score_mse(student: torch.Tensor, teacher: torch.Tensor, teacher_temperature: float = 1.0,
              student_temperature: float = 1.0, mask: torch.Tensor | None = None) -> torch.Tensor:
    err = (student / student_temperature - teacher.detach().to(student.dtype) / teacher_temperature) ** 2
    if mask is None:
        return err.mean()
    return (err * mask).sum() / mask.sum().clamp(min=1)


class ScoreMSELoss(torch.nn.Module):
    """Pointwise score MSE through the common signature: ``score_mse`` of ``batch.scores`` against
    ``batch.teacher_scores`` under ``batch.mask`` (formula above)."""

    def __init__(self, teacher_temperature: float = 1.0, student_temperature: float = 1.0):
        super().__init__()
        self.teacher_temperature, self.student_temperature = teacher_temperature, student_temperature

    def forward(self, batch) -> torch.Tensor:
        return score_mse(batch.scores, batch.teacher_scores, self.teacher_temperature, self.student_temperature,
                         batch.mask)
