"""distill/losses/batch.py: pair scores and the StepBatch every loss reads."""

import torch

from distill.losses.batch import StepBatch, pair_scores


def test_pair_scores_are_each_querys_dot_products_with_its_candidates():
    q, d = torch.randn(3, 5), torch.randn(3 * 4, 5)
    s = pair_scores(q, d, 4)
    assert s.shape == (3, 4)
    for b in range(3):
        for j in range(4):
            torch.testing.assert_close(s[b, j], q[b] @ d[b * 4 + j])


def test_step_batch_defaults_and_group_size():
    b = StepBatch(scores=torch.zeros(2, 3), teacher_scores=torch.zeros(2, 3), mask=torch.ones(2, 3, dtype=torch.bool),
                  queries=torch.zeros(2, 4), docs=torch.zeros(6, 4))
    assert b.group_size == 3 and not b.asymmetric
    assert b.teacher_queries is None and b.projection is None and b.layer_pairs is None
