"""distill/losses/embedding.py: embedding matching (l2, cosine) by hand, and EmbeddingMatchLoss through the
common signature, symmetric (projected queries and documents) and asymmetric (queries only)."""

import pytest
import torch

from distill.losses import EmbeddingMatchLoss, embedding_match


def test_embedding_match_by_hand():
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


def test_embedding_match_loss_through_the_common_signature_equals_its_functional_form(step_batch):
    b = step_batch()
    p, m = b.projection, b.mask
    expect = embedding_match(p(b.queries), b.teacher_queries, "cosine") + \
        embedding_match(p(b.docs), b.teacher_docs, "cosine", m.reshape(-1))
    assert torch.equal(EmbeddingMatchLoss("cosine")(b), expect)
    asym = step_batch(asymmetric=True)  # the documents are the teacher's: queries only, no projection
    assert torch.equal(EmbeddingMatchLoss("l2")(asym), embedding_match(asym.queries, asym.teacher_queries, "l2"))
