"""Distillation losses, one per module, each with its formula and paper in the docstring.

Each module has a functional form (``listwise_kl(student, teacher, ...)``, ...; these are ``__all__``,
which benchmarks/cuda_check.py checks one by one) and a loss module with the common signature
``loss(batch: StepBatch) -> scalar`` (distill.losses.batch); the training step sums the enabled ones
(distill.losses.combine).
"""

from distill.losses.batch import StepBatch, pair_scores  # noqa: F401
from distill.losses.combine import LOSS_ORDER, build_losses, weighted_sum  # noqa: F401
from distill.losses.embedding import EmbeddingMatchLoss, embedding_match  # noqa: F401
from distill.losses.infonce import InfoNCELoss, info_nce  # noqa: F401
from distill.losses.kl import ListwiseKLLoss, listwise_kl  # noqa: F401
from distill.losses.lead import LeadLoss, lead_loss  # noqa: F401
from distill.losses.margin_mse import MarginMSELoss, margin_mse  # noqa: F401
from distill.losses.mse import ScoreMSELoss, score_mse  # noqa: F401

__all__ = ["embedding_match", "info_nce", "lead_loss", "listwise_kl", "margin_mse", "score_mse"]
