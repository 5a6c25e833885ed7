"""distill/losses/margin_mse.py: Margin-MSE by hand, and MarginMSELoss through the common signature."""

import pytest
import torch

from distill.losses import MarginMSELoss, margin_mse


def test_margin_mse_by_hand():
    s = torch.tensor([[3.0, 1.0, 0.0]])
    t = torch.tensor([[2.0, 1.0, 1.0]])
    # margins s: (2, 3); t: (1, 1) -> errors 1, 4 -> mean 2.5
    assert margin_mse(s, t).item() == pytest.approx(2.5)
    mask = torch.tensor([[True, True, False]])
    assert margin_mse(s, t, mask=mask).item() == pytest.approx(1.0)


def test_margin_mse_loss_through_the_common_signature_equals_its_functional_form(step_batch):
    b = step_batch()
    assert torch.equal(MarginMSELoss(0.5, 0.25)(b), margin_mse(b.scores, b.teacher_scores, 0.5, 0.25, b.mask))
