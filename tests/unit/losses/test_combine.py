"""distill/losses/combine.py: which losses a weight dict turns on, in which order, and their weighted sum."""

import torch

from distill.losses import (LOSS_ORDER, EmbeddingMatchLoss, InfoNCELoss, LeadLoss, ListwiseKLLoss, StepBatch,
                            build_losses, listwise_kl, margin_mse, pair_scores, weighted_sum)


def test_build_losses_keeps_weighted_available_losses_in_order():
    w = {"lead": 1.0, "kl": 1.0, "infonce": 0.1, "mse": 0.0, "embedding": 2.0, "margin_mse": 0.5}
    losses = build_losses(w, teacher_temperature=0.5, student_temperature=0.25, embedding_mode="cosine",
                          rank=1, lead_weights={1: 1.0}, lead_temperature=0.2)
    assert list(losses) == ["kl", "margin_mse", "infonce", "embedding", "lead"]
    assert list(LOSS_ORDER) == ["kl", "margin_mse", "mse", "infonce", "embedding", "lead"]
    assert isinstance(losses["kl"], ListwiseKLLoss) and losses["kl"].teacher_temperature == 0.5
    assert isinstance(losses["infonce"], InfoNCELoss) and losses["infonce"].temperature == 0.25
    assert losses["infonce"].rank == 1
    assert isinstance(losses["embedding"], EmbeddingMatchLoss) and losses["embedding"].mode == "cosine"
    assert isinstance(losses["lead"], LeadLoss) and losses["lead"].weights == {1: 1.0}
    assert losses["lead"].temperature == 0.2
    # targets the scores do not hold switch a loss off even with a weight
    assert list(build_losses(w, available={"embedding": False, "lead": False})) == ["kl", "margin_mse", "infonce"]


def test_weighted_sum_equals_the_sum_of_weighted_functional_forms():
    g = torch.Generator().manual_seed(0)
    q, d = torch.randn(2, 3, generator=g, requires_grad=True), torch.randn(6, 3, generator=g)
    t, mask = torch.randn(2, 3, generator=g), torch.tensor([[True, True, True], [True, True, False]])
    b = StepBatch(scores=pair_scores(q, d, 3), teacher_scores=t, mask=mask, queries=q, docs=d)
    w = {"kl": 1.0, "margin_mse": 0.5, "mse": 0.0, "infonce": 0.0, "embedding": 0.0, "lead": 0.0}
    loss, terms = weighted_sum(build_losses(w, teacher_temperature=2.0), w, b)
    kl, mm = listwise_kl(b.scores, t, 2.0, 1.0, mask), margin_mse(b.scores, t, 2.0, 1.0, mask)
    assert list(terms) == ["kl", "margin_mse"] and torch.equal(terms["kl"], kl) and torch.equal(terms["margin_mse"], mm)
    assert torch.equal(loss, 1.0 * kl + 0.5 * mm)
    loss.backward()
    assert q.grad is not None and torch.isfinite(q.grad).all()
