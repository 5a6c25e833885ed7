"""Listwise KL on soft labels (docs/METHODS.md, section 1.1).

    L = mean_q KL( softmax(t_q / T_t) || softmax(s_q / T_s) )
      = mean_q sum_i p_t,i (log p_t,i - log p_s,i)

Inputs: ``student`` and ``teacher`` scores of shape [B, K] (K candidates per query); ``mask`` [B, K]
(True = real candidate) for ragged lists. Teacher scores carry no gradient.
"""

from __future__ import annotations

import torch

NEG = -1e4


def listwise_kl(student: torch.Tensor, teacher: torch.Tensor, teacher_temperature: float = 1.0,
                student_temperature: float = 1.0, mask: torch.Tensor | None = None) -> torch.Tensor:
    s = student / student_temperature
    t = teacher.detach().to(s.dtype) / teacher_temperature
    if mask is not None:
        s = s.masked_fill(~mask, NEG)
        t = t.masked_fill(~mask, NEG)
    log_p_t = torch.log_softmax(t, dim=-1)
    log_p_s = torch.log_softmax(s, dim=-1)
    kl = (log_p_t.exp() * (log_p_t - log_p_s))
    if mask is not None:
        kl = kl.masked_fill(~mask, 0.0)
    return kl.sum(-1).mean()


class ListwiseKLLoss(torch.nn.Module):
    """Listwise KL through the common signature: ``listwise_kl`` of ``batch.scores`` against
    ``batch.teacher_scores`` under ``batch.mask`` (formula above; soft-label score distillation,
    Hinton et al. 2015 applied to ranking lists, docs/METHODS.md 1.1)."""

    def __init__(self, teacher_temperature: float = 1.0, student_temperature: float = 1.0):
        super().__init__()
        self.teacher_temperature, self.student_temperature = teacher_temperature, student_temperature

    def forward(self, batch) -> torch.Tensor:
        return listwise_kl(batch.scores, batch.teacher_scores, self.teacher_temperature, self.student_temperature,
                           batch.mask)
