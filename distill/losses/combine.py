"""The training step's loss: the weighted sum of every enabled loss over one ``StepBatch``.

    L = sum_{name in LOSS_ORDER, w_name > 0} w_name * loss_name(batch)

Each loss is a module with the same signature ``loss(batch) -> scalar`` (distill.losses.*, formulas and
papers in their docstrings); ``build_losses`` picks the enabled ones in a fixed order, so the sum is the
same float sum on every run.
"""

from __future__ import annotations

import torch

from distill.losses.embedding import EmbeddingMatchLoss
from distill.losses.infonce import InfoNCELoss
from distill.losses.kl import ListwiseKLLoss
from distill.losses.lead import LeadLoss
from distill.losses.margin_mse import MarginMSELoss
from distill.losses.mse import ScoreMSELoss

LOSS_ORDER = ("kl", "margin_mse", "mse", "infonce", "embedding", "lead")


def build_losses(weights: dict[str, float], *, teacher_temperature: float = 1.0, student_temperature: float = 1.0,
                 embedding_mode: str = "l2", gather=None, rank: int = 0, lead_weights: dict | None = None,
                 lead_temperature: float = 0.05, available: dict[str, bool] | None = None) -> dict[str, torch.nn.Module]:
    """The losses with a non-zero weight, in ``LOSS_ORDER``. ``available`` turns off a loss whose teacher
    targets the scores do not hold (``embedding``, ``lead``: False = skipped even with a weight)."""
    make = {
        "kl": lambda: ListwiseKLLoss(teacher_temperature, student_temperature),
        "margin_mse": lambda: MarginMSELoss(teacher_temperature, student_temperature),
        "mse": lambda: ScoreMSELoss(teacher_temperature, student_temperature),
        "infonce": lambda: InfoNCELoss(student_temperature, gather, rank),
        "embedding": lambda: EmbeddingMatchLoss(embedding_mode),
        "lead": lambda: LeadLoss(lead_weights or {}, lead_temperature),
    }
    available = available or {}
    return {name: make[name]() for name in LOSS_ORDER if weights.get(name) and available.get(name, True)}


def weighted_sum(losses: dict[str, torch.nn.Module], weights: dict[str, float], batch):
    """(sum of weight x term, {name: term}); the terms in the order of ``losses``."""
    terms = {name: loss(batch) for name, loss in losses.items()}
    return sum(weights[k] * v for k, v in terms.items()), terms
