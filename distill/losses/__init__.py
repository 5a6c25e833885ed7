"""Distillation losses, one per module, each with its formula and paper in the docstring.

Each module has a functional form (``listwise_kl(student, teacher, ...)``, ...) and a loss module with
the common signature ``loss(batch: StepBatch) -> scalar`` (distill.losses.batch); the training step
sums the enabled ones (distill.losses.combine).
"""

from distill.losses.batch import StepBatch, pair_scores
from distill.losses.combine import LOSS_ORDER, build_losses, weighted_sum
from distill.losses.embedding import EmbeddingMatchLoss, embedding_match
from distill.losses.infonce import InfoNCELoss, info_nce
from distill.losses.kl import ListwiseKLLoss, listwise_kl
from distill.losses.lead import LeadLoss, lead_loss
from distill.losses.margin_mse import MarginMSELoss, margin_mse
from distill.losses.mse import ScoreMSELoss, score_mse

__all__ = ["LOSS_ORDER", "EmbeddingMatchLoss", "InfoNCELoss", "LeadLoss", "ListwiseKLLoss", "MarginMSELoss",
           "ScoreMSELoss", "StepBatch", "build_losses", "embedding_match", "info_nce", "lead_loss", "listwise_kl",
           "margin_mse", "pair_scores", "score_mse", "weighted_sum"]
