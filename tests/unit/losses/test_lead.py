"""distill/losses/lead.py: LEAD by hand, its layer map and layer weights, and LeadLoss through the common
signature."""

import math

import numpy as np
import pytest
import torch

from distill.losses import LeadLoss, lead_loss
from distill.losses.lead import default_layer_map, layer_weights


def test_lead_loss_by_hand_and_layer_tools():
    s1 = torch.tensor([[0.1, 0.0]])
    s2 = torch.tensor([[0.0, 0.1]])
    t = torch.tensor([[[0.1, 0.0], [0.0, 0.0]]])  # [B=1, K=2, L_t=2]
    # pair (1 -> teacher 1): identical distributions -> 0; pair (2 -> teacher 2): KL(uniform || softmax(0, 2))
    ps = [1 / (1 + math.e ** 2), math.e ** 2 / (1 + math.e ** 2)]
    kl2 = 0.5 * math.log(0.5 / ps[0]) + 0.5 * math.log(0.5 / ps[1])
    got = lead_loss({1: s1, 2: s2}, t, [(1, 1), (2, 2)], {1: 0.25, 2: 0.75}, temperature=0.05)
    assert got.item() == pytest.approx(0.75 * kl2, rel=1e-4)
    assert default_layer_map(3, 12) == [(1, 4), (2, 8), (3, 12)]
    # layer 2 ranks the positive (row 0) first, layer 1 does not: layer 2 weighs more; weights sum to 1
    w = layer_weights(np.array([[0.0, 0.9], [0.5, 0.1]]), np.array([1, 0]), np.array(["q", "q"]), 0.1)
    assert w[2] > w[1] and sum(w.values()) == pytest.approx(1.0)


def test_lead_loss_through_the_common_signature_equals_its_functional_form(step_batch):
    b = step_batch()
    w = {1: 0.25, 3: 0.75}
    s_layers = {mm: (b.query_layers[mm - 1].unsqueeze(1) * b.doc_layers[mm - 1].view(3, 4, -1)).sum(-1)
                for mm in (2, 1)}
    assert torch.equal(LeadLoss(w, 0.1)(b), lead_loss(s_layers, b.teacher_layers, [(2, 3), (1, 1)], w, 0.1, b.mask))
