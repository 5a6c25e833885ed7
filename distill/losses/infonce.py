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


class InfoNCELoss(torch.nn.Module):
    """InfoNCE through the common signature (formula above; van den Oord et al. 2018, DPR's in-batch
    negatives, Karpukhin et al. 2020). ``gather`` concatenates a tensor over the workers of the step
    (identity on one worker), so each query's negatives are every document of every worker; this worker's
    queries' positives sit at rows ``rank * B * K + b * K`` of the gathered documents."""

    def __init__(self, temperature: float = 0.05, gather=None, rank: int = 0):
        super().__init__()
        self.temperature, self.rank = temperature, rank
        self.gather = gather or (lambda x: x)

    def forward(self, batch) -> torch.Tensor:
        n, k = len(batch.queries), batch.group_size
        all_d = self.gather(batch.docs)
        all_mask = self.gather(batch.mask.reshape(-1).float()).bool()
        pos = torch.arange(n, device=batch.queries.device) * k + self.rank * n * k
        return info_nce(batch.queries, all_d, pos, self.temperature, all_mask)
