"""distill/losses/infonce.py: InfoNCE by hand, and InfoNCELoss through the common signature (one worker
and another worker's view of the gathered documents)."""

import math

import pytest
import torch

from distill.losses import InfoNCELoss, info_nce


def test_info_nce_by_hand():
    q = torch.tensor([[1.0, 0.0], [0.0, 1.0]])
    d = torch.tensor([[1.0, 0.0], [0.0, 1.0], [1.0, 1.0]])
    pos = torch.tensor([0, 1])
    # row 0 logits (1, 0, 1), row 1 (0, 1, 1); each: -log(e / (2e + 1))
    expected = -math.log(math.e / (2 * math.e + 1))
    assert info_nce(q, d, pos, temperature=1.0).item() == pytest.approx(expected, rel=1e-5)
    mask = torch.tensor([True, True, False])
    expected_masked = -math.log(math.e / (math.e + 1))
    assert info_nce(q, d, pos, 1.0, mask).item() == pytest.approx(expected_masked, rel=1e-5)


def test_info_nce_loss_through_the_common_signature_equals_its_functional_form(step_batch):
    b = step_batch()
    m = b.mask
    pos = torch.arange(3) * 4
    assert torch.equal(InfoNCELoss(0.05)(b), info_nce(b.queries, b.docs, pos, 0.05, m.reshape(-1)))
    # another worker's view: its positives sit after rank * B * K gathered rows
    two = InfoNCELoss(0.05, gather=lambda x: torch.cat([x, x]), rank=1)(b)
    assert torch.equal(two, info_nce(b.queries, torch.cat([b.docs, b.docs]), pos + 12, 0.05,
                                     torch.cat([m.reshape(-1)] * 2)))
