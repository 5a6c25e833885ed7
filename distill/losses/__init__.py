"""Distillation losses, one per module, each with its formula in the docstring."""

from distill.losses.embedding import embedding_match
from distill.losses.infonce import info_nce
from distill.losses.kl import listwise_kl
from distill.losses.lead import lead_loss
from distill.losses.margin_mse import margin_mse
from distill.losses.mse import score_mse

__all__ = ["embedding_match", "info_nce", "lead_loss", "listwise_kl", "margin_mse", "score_mse"]
