"""distill/losses/kl.py: listwise KL against values computed by hand, and ListwiseKLLoss through the
common signature."""

import math

import pytest
import torch

from distill.losses import ListwiseKLLoss, listwise_kl


def test_listwise_kl_by_hand():
    s = torch.tensor([[1.0, 0.0]])
    t = torch.tensor([[0.0, 0.0]])
    # p_t = (.5, .5); p_s = softmax(1, 0) = (e/(e+1), 1/(e+1))
    ps = [math.e / (math.e + 1), 1 / (math.e + 1)]
    expected = 0.5 * math.log(0.5 / ps[0]) + 0.5 * math.log(0.5 / ps[1])
    assert listwise_kl(s, t).item() == pytest.approx(expected, rel=1e-5)


def test_listwise_kl_temperatures_and_zero_when_equal():
    s = torch.tensor([[0.2, 0.1, -0.3]])
    t = s * 20  # teacher at T_t = 20 equals student at T_s = 1
    assert listwise_kl(s, t, teacher_temperature=20.0).item() == pytest.approx(0.0, abs=1e-6)
    # student temperature scales the student scores
    assert listwise_kl(s / 0.05, t, 20.0, 1.0).item() == pytest.approx(listwise_kl(s, t, 20.0, 0.05).item(), rel=1e-5)


def test_listwise_kl_mask_ignores_padding():
    s = torch.tensor([[1.0, 0.0, 5.0]])
    t = torch.tensor([[0.0, 0.0, -9.0]])
    mask = torch.tensor([[True, True, False]])
    assert listwise_kl(s, t, mask=mask).item() == pytest.approx(listwise_kl(s[:, :2], t[:, :2]).item(), rel=1e-5)


def test_listwise_kl_teacher_gets_no_gradient():
    s = torch.tensor([[1.0, 0.0]], requires_grad=True)
    t = torch.tensor([[2.0, 0.0]], requires_grad=True)
    listwise_kl(s, t).backward()
    assert t.grad is None and s.grad is not None


def test_listwise_kl_loss_through_the_common_signature_equals_its_functional_form(step_batch):
    b = step_batch()
    assert torch.equal(ListwiseKLLoss(0.5, 0.25)(b), listwise_kl(b.scores, b.teacher_scores, 0.5, 0.25, b.mask))
