"""distill/losses/mse.py: pointwise score MSE by hand, and ScoreMSELoss through the common signature."""

import pytest
import torch

from distill.losses import ScoreMSELoss, score_mse


def test_score_mse_by_hand():
    s = torch.tensor([[1.0, 2.0]])
    t = torch.tensor([[2.0, 2.0]])
    assert score_mse(s, t).item() == pytest.approx(0.5)
    assert score_mse(s, t, teacher_temperature=2.0).item() == pytest.approx((0 + 1) / 2)


def test_score_mse_loss_through_the_common_signature_equals_its_functional_form(step_batch):
    b = step_batch()
    assert torch.equal(ScoreMSELoss(0.5, 0.25)(b), score_mse(b.scores, b.teacher_scores, 0.5, 0.25, b.mask))
