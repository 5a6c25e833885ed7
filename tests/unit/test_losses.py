"""Each loss against values computed by hand on small tensors."""

import math

import pytest
import torch

from distill.losses import info_nce, listwise_kl, margin_mse, score_mse


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


def test_margin_mse_by_hand():
    s = torch.tensor([[3.0, 1.0, 0.0]])
    t = torch.tensor([[2.0, 1.0, 1.0]])
    # margins s: (2, 3); t: (1, 1) -> errors 1, 4 -> mean 2.5
    assert margin_mse(s, t).item() == pytest.approx(2.5)
    mask = torch.tensor([[True, True, False]])
    assert margin_mse(s, t, mask=mask).item() == pytest.approx(1.0)


def test_score_mse_by_hand():
    s = torch.tensor([[1.0, 2.0]])
    t = torch.tensor([[2.0, 2.0]])
    assert score_mse(s, t).item() == pytest.approx(0.5)
    assert score_mse(s, t, teacher_temperature=2.0).item() == pytest.approx((0 + 1) / 2)


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


def test_embedding_match_by_hand():
    from distill.losses import embedding_match

    s = torch.tensor([[1.0, 0.0], [0.0, 2.0]], requires_grad=True)
    t = torch.tensor([[0.0, 0.0], [0.0, 1.0]], requires_grad=True)
    # squared distances 1 and 1 -> mean 1; cosine: row 0 undefined-safe (t = 0 -> cos 0), row 1 cos 1
    assert embedding_match(s, t, "l2").item() == pytest.approx(1.0)
    assert embedding_match(s, t, "cosine").item() == pytest.approx((1 - 0 + 1 - 1) / 2)
    assert embedding_match(s, t, "l2", mask=torch.tensor([False, True])).item() == pytest.approx(1.0)
    embedding_match(s, t, "l2").backward()
    assert t.grad is None and s.grad is not None
    with pytest.raises(ValueError, match="mode"):
        embedding_match(s, t, "dot")


def test_lead_loss_by_hand_and_layer_tools():
    import numpy as np

    from distill.losses import lead_loss
    from distill.losses.lead import default_layer_map, layer_weights

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


# ---- the common signature: loss(batch) equals the functional form -------------------------------------
def _step_batch(asymmetric=False):
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


def test_every_loss_through_the_common_signature_equals_its_functional_form():
    from distill.losses import (EmbeddingMatchLoss, InfoNCELoss, LeadLoss, ListwiseKLLoss, MarginMSELoss,
                                ScoreMSELoss, embedding_match, lead_loss)

    b = _step_batch()
    s, t, m = b.scores, b.teacher_scores, b.mask
    assert torch.equal(ListwiseKLLoss(0.5, 0.25)(b), listwise_kl(s, t, 0.5, 0.25, m))
    assert torch.equal(MarginMSELoss(0.5, 0.25)(b), margin_mse(s, t, 0.5, 0.25, m))
    assert torch.equal(ScoreMSELoss(0.5, 0.25)(b), score_mse(s, t, 0.5, 0.25, m))
    pos = torch.arange(3) * 4
    assert torch.equal(InfoNCELoss(0.05)(b), info_nce(b.queries, b.docs, pos, 0.05, m.reshape(-1)))
    # another worker's view: its positives sit after rank * B * K gathered rows
    two = InfoNCELoss(0.05, gather=lambda x: torch.cat([x, x]), rank=1)(b)
    assert torch.equal(two, info_nce(b.queries, torch.cat([b.docs, b.docs]), pos + 12, 0.05,
                                     torch.cat([m.reshape(-1)] * 2)))
    p = b.projection
    expect = embedding_match(p(b.queries), b.teacher_queries, "cosine") + \
        embedding_match(p(b.docs), b.teacher_docs, "cosine", m.reshape(-1))
    assert torch.equal(EmbeddingMatchLoss("cosine")(b), expect)
    asym = _step_batch(asymmetric=True)  # the documents are the teacher's: queries only, no projection
    assert torch.equal(EmbeddingMatchLoss("l2")(asym), embedding_match(asym.queries, asym.teacher_queries, "l2"))
    w = {1: 0.25, 3: 0.75}
    s_layers = {mm: (b.query_layers[mm - 1].unsqueeze(1) * b.doc_layers[mm - 1].view(3, 4, -1)).sum(-1)
                for mm in (2, 1)}
    assert torch.equal(LeadLoss(w, 0.1)(b), lead_loss(s_layers, b.teacher_layers, [(2, 3), (1, 1)], w, 0.1, m))
