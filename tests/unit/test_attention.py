"""The attention-to-score maths (distill.attention) on hand-built attention tensors: attention mass per
passage averaged over layers, heads and output tokens, its options, padding, and the answer positions. No
model, no Ray."""

import numpy as np
import pytest
import torch

from distill.attention import aggregate_attention, aggregate_kwargs, answer_positions

# One question, 2 passages of 3 key slots each; passage 1's third slot is padding.
# Rows (layer, head, output token) -> attention over the 6 slots [p0: 3 | p1: 3].
ROWS = {
    (0, 0, 0): [0.5, 0.1, 0.1, 0.2, 0.1, 0.0],  # mass p0 0.7, p1 0.3
    (0, 0, 1): [0.1, 0.1, 0.0, 0.4, 0.4, 0.0],  # 0.2, 0.8
    (0, 1, 0): [0.2, 0.2, 0.2, 0.2, 0.2, 0.0],  # 0.6, 0.4
    (0, 1, 1): [0.0, 0.0, 0.0, 0.5, 0.5, 0.0],  # 0.0, 1.0
    (1, 0, 0): [0.6, 0.3, 0.1, 0.0, 0.0, 0.0],  # 1.0, 0.0
    (1, 0, 1): [0.3, 0.3, 0.3, 0.1, 0.0, 0.0],  # 0.9, 0.1
    (1, 1, 0): [0.1, 0.1, 0.1, 0.4, 0.3, 0.0],  # 0.3, 0.7
    (1, 1, 1): [0.1, 0.0, 0.0, 0.45, 0.45, 0.0],  # 0.1, 0.9
}
KEY_MASK = torch.tensor([[[1, 1, 1], [1, 1, 0]]])


def _attn(rows=ROWS) -> torch.Tensor:
    a = torch.zeros(2, 1, 2, 2, 2, 3, dtype=torch.float64)  # [layers, B, heads, T, P, L]
    for (l, h, t), w in rows.items():
        a[l, 0, h, t] = torch.tensor(w, dtype=torch.float64).view(2, 3)
    return a


def test_default_is_mean_attention_mass_over_layers_heads_tokens():
    s = aggregate_attention(_attn(), KEY_MASK)
    # p0: (0.7+0.2+0.6+0.0+1.0+0.9+0.3+0.1)/8 = 3.8/8; p1: (0.3+0.8+0.4+1.0+0.0+0.1+0.7+0.9)/8 = 4.2/8
    assert s.shape == (1, 2)
    np.testing.assert_allclose(s[0].numpy(), [0.475, 0.525], atol=1e-12)
    assert float(s.sum()) == pytest.approx(1.0)  # every key belongs to a passage: the masses sum to 1


def test_output_token_mask_layers_and_first_token():
    a = _attn()
    # only output token 0 counts: p0 (0.7+0.6+1.0+0.3)/4 = 0.65
    np.testing.assert_allclose(aggregate_attention(a, KEY_MASK, torch.tensor([[1, 0]]))[0].numpy(),
                               [0.65, 0.35], atol=1e-12)
    np.testing.assert_allclose(aggregate_attention(a, KEY_MASK, output_tokens="first")[0].numpy(),
                               [0.65, 0.35], atol=1e-12)
    # layer 2 only: p0 (1.0+0.9+0.3+0.1)/4 = 0.575
    np.testing.assert_allclose(aggregate_attention(a, KEY_MASK, layers=[2])[0].numpy(), [0.575, 0.425], atol=1e-12)
    # layer 1, first token: p0 (0.7+0.6)/2
    np.testing.assert_allclose(aggregate_attention(a, KEY_MASK, layers=[1], output_tokens="first")[0].numpy(),
                               [0.65, 0.35], atol=1e-12)
    with pytest.raises(ValueError, match="out of range"):
        aggregate_attention(a, KEY_MASK, layers=[3])


def test_mean_over_passage_tokens_divides_by_real_tokens_only():
    s = aggregate_attention(_attn(), KEY_MASK, passage_tokens="mean")
    # p0 has 3 real tokens, p1 has 2: 0.475/3 and 0.525/2
    np.testing.assert_allclose(s[0].numpy(), [0.475 / 3, 0.525 / 2], atol=1e-12)


def test_padding_gets_no_mass():
    rows = {k: list(v) for k, v in ROWS.items()}
    for v in rows.values():
        v[5] = 0.9  # weight on the padding slot (real attention gives ~0 there); it must not count
    for kw in ({}, {"passage_tokens": "mean"}):
        np.testing.assert_allclose(aggregate_attention(_attn(rows), KEY_MASK, **kw).numpy(),
                                   aggregate_attention(_attn(), KEY_MASK, **kw).numpy(), atol=1e-12)
    # a passage that is all padding scores 0
    empty = torch.tensor([[[1, 1, 1], [0, 0, 0]]])
    assert aggregate_attention(_attn(), empty)[0, 1] == 0.0
    assert aggregate_attention(_attn(), empty, passage_tokens="mean")[0, 1] == 0.0


def test_logits_mean_equals_pre_softmax_average_up_to_one_shift():
    # two rows with pre-softmax scores over [p0: 3 | p1: 2 + pad]; attention = softmax over the real keys
    pre = torch.tensor([[1.0, 2.0, 3.0, 4.0, 5.0], [0.0, -1.0, 2.0, 1.0, 1.0]], dtype=torch.float64)
    a = torch.zeros(1, 1, 1, 2, 2, 3, dtype=torch.float64)
    for t in range(2):
        p = torch.softmax(pre[t], 0)
        a[0, 0, 0, t, 0] = p[:3]
        a[0, 0, 0, t, 1, :2] = p[3:]
    s = aggregate_attention(a, KEY_MASK, weights="logits", passage_tokens="mean")[0].numpy()
    # pre-softmax means: row 0: p0 2.0, p1 4.5; row 1: p0 1/3, p1 1.0 -> averaged p1 - p0 = (2.5 + 2/3) / 2
    assert s[1] - s[0] == pytest.approx((2.5 + 2 / 3) / 2, abs=1e-9)
    target = torch.softmax(torch.tensor(s), 0).numpy()
    expected = torch.softmax(torch.tensor([(2.0 + 1 / 3) / 2, (4.5 + 1.0) / 2]), 0).numpy()
    np.testing.assert_allclose(target, expected, atol=1e-9)


def test_answer_positions_stop_after_the_end_token():
    # decoder inputs: start(0), a, </s>(1), pad -> positions 0 and 1 produce the answer (a, </s>)
    assert answer_positions(torch.tensor([[0, 7, 1, 0]]), 1).tolist() == [[1.0, 1.0, 0.0, 0.0]]
    # BART-style start token == end token: position 0 still counts
    assert answer_positions(torch.tensor([[2, 5, 6]]), 2).tolist() == [[1.0, 1.0, 1.0]]


def test_aggregate_kwargs_takes_the_attention_options_only():
    from distill.config import AttentionConfig

    assert aggregate_kwargs({"weights": "logits", "passage_tokens": "mean", "other": 1}) == \
        {"weights": "logits", "passage_tokens": "mean"}
    assert aggregate_kwargs(AttentionConfig()) == {"weights": "probs", "passage_tokens": "sum",
                                                   "output_tokens": "all", "layers": None}
