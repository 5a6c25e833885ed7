"""LEAD: layer-wise alignment of score distributions (docs/METHODS.md, section 3, arXiv 2212.05225).

At a mapped pair (student layer m, teacher layer l), each side scores the K candidates of a query by the
dot product of that layer's pooled query and passage vectors; both become distributions over the
candidates, and

    L_LEAD = sum_{(m, l) in S} w_l * KL( softmax(t^l / T) || softmax(s^m / T) ) / sum_{(m, l) in S} w_l

with S the layer pairs drawn for this step and w_l the teacher layer's weight (layers whose own
distribution ranks the positives better weigh more). Only distributions are compared, so widths,
depths and tokenizers of teacher and student may all differ.

Inputs: ``student_layers`` {m: [B, K]}, ``teacher_layers`` [B, K, L_t] (layer l at index l - 1),
``pairs`` [(m, l), ...] (1-based layer numbers), ``weights`` {l: w_l}, ``mask`` [B, K].
"""

from __future__ import annotations

import torch

from distill.losses.batch import pair_scores
from distill.losses.kl import listwise_kl


def lead_loss(student_layers: dict[int, torch.Tensor], teacher_layers: torch.Tensor, pairs: list[tuple[int, int]],
              weights: dict[int, float], temperature: float = 0.05, mask: torch.Tensor | None = None) -> torch.Tensor:
    total = sum(weights[l] for _, l in pairs)
    loss = 0.0
    for m, l in pairs:
        kl = listwise_kl(student_layers[m], teacher_layers[..., l - 1], temperature, temperature, mask)
        loss = loss + weights[l] * kl
    return loss / max(total, 1e-12)


class LeadLoss(torch.nn.Module):
    """LEAD through the common signature (formula above; Sun et al., arXiv 2212.05225): for each pair (m, l)
    in ``batch.layer_pairs``, the student's layer-m scores (``pair_scores`` of ``batch.query_layers[m - 1]``
    and ``batch.doc_layers[m - 1]``) against the teacher's layer-l scores in ``batch.teacher_layers``,
    weighted by ``weights[l]``, under ``batch.mask``."""

    def __init__(self, weights: dict[int, float], temperature: float = 0.05):
        super().__init__()
        self.weights, self.temperature = weights, temperature

    def forward(self, batch) -> torch.Tensor:
        k = batch.group_size
        s_layers = {m: pair_scores(batch.query_layers[m - 1].float(), batch.doc_layers[m - 1].float(), k)
                    for m, _ in batch.layer_pairs}
        return lead_loss(s_layers, batch.teacher_layers, batch.layer_pairs, self.weights, self.temperature,
                         batch.mask)


def default_layer_map(student_layers: int, teacher_layers: int) -> list[tuple[int, int]]:
    """Evenly spaced: student layer m -> teacher layer round(m * L_t / L_s), m = 1..L_s."""
    return [(m, max(1, round(m * teacher_layers / student_layers))) for m in range(1, student_layers + 1)]


def layer_weights(layer_scores, labels, groups, temperature: float = 0.05) -> dict[int, float]:
    """w_l ~ mean over queries of the probability mass softmax(t^l / T) puts on the positives.

    ``layer_scores`` [N, L_t] per candidate row, ``labels`` [N], ``groups`` [N] query ids; normalised to sum 1.
    """
    import numpy as np
    import pandas as pd

    df = pd.DataFrame({"g": groups, "y": labels})
    L = layer_scores.shape[1]
    mass = np.zeros(L)
    n = 0
    for _, idx in df.groupby("g").indices.items():
        s = layer_scores[idx] / temperature
        p = np.exp(s - s.max(0))
        p /= p.sum(0)
        mass += (p * (df["y"].to_numpy()[idx, None] > 0)).sum(0)
        n += 1
    w = mass / max(n, 1)
    w = w / w.sum() if w.sum() > 0 else np.full(L, 1 / L)
    return {l + 1: float(w[l]) for l in range(L)}
