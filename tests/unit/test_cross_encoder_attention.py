"""A cross-encoder's query->passage attention as its score (distill.cross_encoder_attention), on a tiny
random BERT cross-encoder. No Ray."""

import numpy as np

from distill.cross_encoder_attention import cross_encoder_attention_scores
from builders import make_tiny_bert

VOCAB = ["alpha", "beta", "gamma", "delta", "river", "stone", "paris", "london", "capital", "city", "of",
         "the", "what", "is", "france", "england"]

def test_cross_encoder_attention_scores(tmp_path):
    from distill.models import CrossEncoder

    make_tiny_bert(tmp_path / "ce", VOCAB, hidden=32, layers=2, cross_encoder=True)
    ce = CrossEncoder(str(tmp_path / "ce"), 32)
    q = ["capital of france", "river", "what is the capital"]
    d = ["paris is the capital of france", "stone", "london is the capital of england alpha beta gamma"]
    s = cross_encoder_attention_scores(ce, q, d, {})
    assert s.shape == (3,) and np.isfinite(s).all() and ((s > 0) & (s < 1)).all()  # a share of each query row
    # each pair alone (no batch padding) gives the same score
    alone = np.concatenate([cross_encoder_attention_scores(ce, [a], [b], {}) for a, b in zip(q, d)])
    np.testing.assert_allclose(alone, s, atol=1e-5)
    cls_row = cross_encoder_attention_scores(ce, q, d, {"output_tokens": "first", "passage_tokens": "mean"})
    assert np.isfinite(cls_row).all() and not np.allclose(cls_row, s)
    assert ce.score(q, d).shape == (3,)  # the logit path still works after switching to eager attention
