"""A dual-head cross-encoder teacher gives score, pooled vectors and per-layer scores from one forward per
batch (CrossEncoder.score_all), equal to the separate methods it replaces in the score stage."""

import numpy as np
import pytest

from distill.models import CrossEncoder
from builders import make_tiny_bert

VOCAB = "capital of france paris river stone london england what is the alpha beta gamma".split()
Q = ["capital of france", "river", "what is the capital", "alpha"]
D = ["paris is the capital of france", "stone", "london is the capital of england alpha beta gamma", "beta gamma"]


@pytest.fixture(scope="module")
def dual(tmp_path_factory):
    d = tmp_path_factory.mktemp("ce")
    make_tiny_bert(d, VOCAB, hidden=32, layers=3, cross_encoder=True)
    return CrossEncoder(str(d), 32, head="dual"), d


def test_one_forward_gives_what_three_methods_did(dual):
    ce, _ = dual
    out = ce.score_all(Q, D, batch_size=3, vectors=True, layers=True)
    qv, dv, s = ce.score_with_vectors(Q, D, batch_size=2)
    np.testing.assert_allclose(out["score"], ce.score(Q, D, batch_size=4), atol=1e-5)
    np.testing.assert_allclose(out["score"], s, atol=1e-5)
    np.testing.assert_allclose(out["q_emb"], qv, atol=1e-5)
    np.testing.assert_allclose(out["d_emb"], dv, atol=1e-5)
    np.testing.assert_allclose(out["layer_scores"], ce.layer_scores(Q, D, batch_size=1), atol=1e-5)  # no padding
    np.testing.assert_allclose(out["layer_scores"][:, -1] * float(ce.scale.detach()), out["score"], atol=1e-5)
    assert out["layer_scores"].shape == (4, 3) and out["q_emb"].shape == (4, 32)
    assert set(ce.score_all(Q, D, layers=True)) == {"score", "layer_scores"}
    assert set(ce.score_all(Q, D)) == {"score"}
    ce.train()  # dropout off while scoring, and the mode is restored
    a, b = ce.score_all(Q, D, layers=True), ce.score_all(Q, D, layers=True)
    np.testing.assert_array_equal(a["layer_scores"], b["layer_scores"])
    assert ce.training
    ce.eval()


def test_vectors_need_the_dual_head(dual):
    _, d = dual
    linear = CrossEncoder(str(d), 32, head="linear")
    assert linear.score_all(Q, D)["score"].shape == (4,)
    with pytest.raises(ValueError, match="head: dual"):
        linear.score_all(Q, D, layers=True)
