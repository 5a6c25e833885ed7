"""Hard-label InfoNCE with in-batch and mined negatives (docs/METHODS.md, section 1.4).

    L = mean_q -log( exp(q . d_pos / T) / sum_{d in D} exp(q . d / T) )

``queries`` [B, dim]; ``docs`` [N, dim] holds every document of the batch (on several workers: the
documents gathered from all of them), so each query's mined negatives and all other queries' documents
are its negatives; ``positives`` [B] is the row of each query's positive in ``docs``. ``doc_mask`` [N]
(optional) removes padding rows.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F


def info_nce(queries: torch.Tensor, docs: torch.Tensor, positives: torch.Tensor, temperature: float = 0.05,
             doc_mask: torch.Tensor | None = None) -> torch.Tensor:
    logits = queries @ docs.T / temperature
    if doc_mask is not None:
        logits = logits.masked_fill(~doc_mask.unsqueeze(0), -1e4)
    return F.cross_entropy(logits, positives)
