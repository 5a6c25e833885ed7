"""Shared by the tests of distill/losses/*: one ``StepBatch`` with every field a loss may read."""

import pytest
import torch


def make_step_batch(asymmetric=False):
    """B=3 queries, K=4 candidates (row 2's last one padding), student width 5, teacher width 6, two student
    layers against three teacher layers (pairs (2, 3) and (1, 1))."""
    from distill.losses import StepBatch, pair_scores

    g = torch.Generator().manual_seed(7)
    B, K, d, dt = 3, 4, 5, 6
    q, docs = torch.randn(B, d, generator=g), torch.randn(B * K, d, generator=g)
    mask = torch.ones(B, K, dtype=torch.bool)
    mask[2, 3] = False
    proj = torch.nn.Linear(d, dt, bias=False)
    return StepBatch(scores=pair_scores(q, docs, K), teacher_scores=torch.randn(B, K, generator=g), mask=mask,
                     queries=q, docs=docs, teacher_queries=torch.randn(B, d if asymmetric else dt, generator=g),
                     teacher_docs=torch.randn(B * K, dt, generator=g), projection=None if asymmetric else proj,
                     asymmetric=asymmetric, query_layers=[torch.randn(B, d, generator=g) for _ in range(2)],
                     doc_layers=[torch.randn(B * K, d, generator=g) for _ in range(2)],
                     teacher_layers=torch.randn(B, K, 3, generator=g), layer_pairs=[(2, 3), (1, 1)])


@pytest.fixture
def step_batch():
    """``step_batch()`` or ``step_batch(asymmetric=True)``: a fresh :func:`make_step_batch`."""
    return make_step_batch
