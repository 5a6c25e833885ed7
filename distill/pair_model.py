"""The model a training step runs: the student tower, plus (for embedding matching) a learned map into the
teacher's width. Queries and documents go through the same encoder (a dual encoder with shared weights);
an asymmetric student encodes queries only (its documents are the teacher's fixed vectors)."""

from __future__ import annotations

import torch


class PairModel(torch.nn.Module):
    """``encoder`` (a distill.models.DualEncoder) and ``proj``: None without embedding matching, the
    identity when the widths agree, else a bias-free ``Linear(encoder.dim, teacher_dim)``."""

    def __init__(self, enc, teacher_dim: int | None):
        super().__init__()
        self.encoder = enc
        self.proj = None
        if teacher_dim:  # asymmetric: the encoder's own output_dim already is the teacher's width
            self.proj = (torch.nn.Identity() if teacher_dim == enc.dim
                         else torch.nn.Linear(enc.dim, teacher_dim, bias=False))

    def forward(self, q, d, layers: bool = False):
        """(query vectors, document vectors); with ``layers`` each is (vectors, per-layer vectors); ``d``
        None (asymmetric): (query vectors, None)."""
        if d is None:
            return self.encoder(**q), None
        return self.encoder(**q, return_layers=layers), self.encoder(**d, return_layers=layers)

