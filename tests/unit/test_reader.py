"""Reader attention as a teacher signal (distill.reader): the aggregation on hand-built attention tensors,
a tiny random T5 through the FiD scorer, a tiny random BERT cross-encoder's query->passage attention,
QA-pair reading with counted rejects, and the config rules. No Ray."""

import json

import numpy as np
import pytest
import torch

from distill.config import ConfigError, build_config
from distill.reader import FiDReader, aggregate_attention, answer_positions, cross_encoder_attention_scores, \
    read_answers
from builders import make_tiny_bert, make_tiny_t5

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


# ---- a tiny random T5 as a FiD reader -------------------------------------------------------------------
VOCAB = ["alpha", "beta", "gamma", "delta", "river", "stone", "paris", "london", "capital", "city", "of",
         "the", "what", "is", "france", "england"]
PASSAGES = ["paris is the capital of france", "london is the capital of england", "river stone",
            "the city of alpha beta gamma delta river"]


@pytest.fixture(scope="module")
def t5_dir(tmp_path_factory):
    return make_tiny_t5(tmp_path_factory.mktemp("t5") / "reader", VOCAB, d_model=32, layers=2, heads=4)


@pytest.mark.parametrize("attention", [{}, {"weights": "logits", "passage_tokens": "mean", "output_tokens": "first"},
                                       {"layers": [2], "passage_tokens": "mean"}])
def test_fid_scorer_one_finite_score_per_passage_padding_invariant(t5_dir, attention):
    reader = FiDReader(str(t5_dir), max_length=24, answer_max_length=4)
    s = reader.passage_scores("what is the capital of france", PASSAGES, attention)
    assert s.shape == (4,) and s.dtype == np.float32 and np.isfinite(s).all()
    padded = reader.passage_scores("what is the capital of france", PASSAGES, attention, pad_to=24)
    np.testing.assert_allclose(padded, s, atol=1e-5)
    if not attention:
        assert s.sum() == pytest.approx(1.0, abs=1e-5) and (s > 0).all()  # attention masses
    # passages are a set to the decoder: permuting them permutes the scores
    perm = [2, 0, 3, 1]
    np.testing.assert_allclose(reader.passage_scores("what is the capital of france", [PASSAGES[i] for i in perm],
                                                     attention), s[perm], atol=1e-5)


def test_fid_reader_answer_loss_learns(t5_dir):
    torch.manual_seed(0)
    reader = FiDReader(str(t5_dir), max_length=24, answer_max_length=4)
    ids, mask = reader.tokenize(["what is the capital of france"], [PASSAGES])
    assert ids.shape[:2] == (1, 4)
    labels = reader.tokenize_answers(["paris"])
    assert labels.tolist() == [[reader.tokenizer.convert_tokens_to_ids("paris"), 1]]
    opt = torch.optim.AdamW(reader.parameters(), lr=1e-2)
    first = reader(ids, mask, labels).item()
    for _ in range(15):
        loss = reader(ids, mask, labels)
        opt.zero_grad()
        loss.backward()
        opt.step()
    assert np.isfinite(first) and loss.item() < first / 2


def test_reader_warm_started_from_an_encoder_only_model(tmp_path):
    """A BERT checkpoint becomes a BERT2BERT FiD reader: encoder weights kept, it learns an answer, its
    attention masses score passages, and it saves as an ordinary encoder-decoder model."""
    from transformers import AutoModel, AutoModelForSeq2SeqLM

    bert = make_tiny_bert(tmp_path / "bert", VOCAB, hidden=32, layers=2)
    torch.manual_seed(0)
    reader = FiDReader(str(bert), max_length=24, answer_max_length=4)
    assert reader.model.config.is_encoder_decoder and reader.model.config.decoder.add_cross_attention
    src = AutoModel.from_pretrained(bert).state_dict()
    enc = reader.model.get_encoder().state_dict()
    shared = [k for k in src if k in enc and not k.startswith("pooler")]  # the tiny BERT saves no pooler
    assert len(shared) > 10 and all(torch.equal(enc[k], src[k]) for k in shared)  # the encoder is the checkpoint
    ids, mask = reader.tokenize(["what is the capital of france"], [PASSAGES])
    labels = reader.tokenize_answers(["paris"])
    opt = torch.optim.AdamW(reader.parameters(), lr=1e-2)
    first = reader(ids, mask, labels).item()
    for _ in range(15):
        loss = reader(ids, mask, labels)
        opt.zero_grad()
        loss.backward()
        opt.step()
    assert np.isfinite(first) and loss.item() < first / 2
    s = reader.passage_scores("what is the capital of france", PASSAGES)
    assert s.shape == (4,) and s.sum() == pytest.approx(1.0, abs=1e-5) and (s > 0).all()
    reader.save(tmp_path / "reader")
    assert AutoModelForSeq2SeqLM.from_pretrained(tmp_path / "reader").config.model_type == "encoder-decoder"
    again = FiDReader(str(tmp_path / "reader"), max_length=24, answer_max_length=4)
    np.testing.assert_allclose(again.passage_scores("what is the capital of france", PASSAGES), s, atol=1e-5)


def test_fid_inputs_need_the_same_number_of_passages_per_question():
    with pytest.raises(ValueError, match="same, non-zero number"):
        FiDReader.tokenize(None, ["q", "r"], [["a"], ["b", "c"]])


# ---- a tiny random BERT cross-encoder: query -> passage attention ---------------------------------------
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


# ---- QA pairs -------------------------------------------------------------------------------------------
def test_read_answers_counts_and_rejects(tmp_path):
    from distill.data import Rejects

    rows = [{"_id": "q1", "answers": ["paris", " "]}, {"_id": "q2", "answer": "london"}, {"_id": "q3"},
            {"_id": "q4", "answers": []}, {"_id": "q5", "answers": [3]}, {"_id": "nope", "answers": ["x"]},
            {"_id": "q1", "answers": ["again"]}, {"answers": ["no id"]}]
    lines = [json.dumps(r) for r in rows] + ["{broken", ""]
    (tmp_path / "qa.jsonl").write_text("\n".join(lines) + "\n")
    queries = {f"q{i}": "text" for i in range(1, 6)}
    rej = Rejects()
    answers, counts = read_answers(tmp_path / "qa.jsonl", queries, rej)
    assert answers == {"q1": ["paris"], "q2": ["london"]}
    assert counts == {"rows": 9, "answered": 2, "no_answers": 1, "rejected": 6}
    assert rej.counts() == {"bad_answers": 2, "unknown_query": 1, "duplicate_id": 1, "missing_id": 1, "bad_json": 1}


# ---- config ---------------------------------------------------------------------------------------------
def _tree(**teacher):
    return {"teacher": {"model": "m", **teacher}, "student": {"model": "s"}}


def test_config_rules():
    cfg = build_config({**_tree(kind="reader"), "data": {"answers": "qa.jsonl"}, "rounds": 3})
    assert cfg.teacher.attention.weights == "probs" and cfg.teacher.attention.passage_tokens == "sum"
    assert cfg.teacher.attention.output_tokens == "all" and cfg.rounds == 3
    with pytest.raises(ConfigError, match="data.answers"):
        build_config(_tree(kind="reader"))
    build_config(_tree(kind="reader", finetune=False))
    with pytest.raises(ConfigError, match="passage_tokens: mean"):
        build_config(_tree(kind="reader", finetune=False, attention={"weights": "logits"}))
    with pytest.raises(ConfigError, match="dual encoder has no"):
        build_config(_tree(kind="dual-encoder", signal="attention"))
    with pytest.raises(ConfigError, match="store_embeddings"):
        build_config({**_tree(kind="reader", finetune=False), "scoring": {"store_layer_scores": True}})
    with pytest.raises(ConfigError, match="rounds"):
        build_config({**_tree(), "rounds": 0})
    with pytest.raises(ConfigError, match="rounds > 1 needs stages encode"):
        build_config({**_tree(), "rounds": 2, "stages": ["teacher", "mine", "score", "train"]})


def test_serving_reranks_with_a_reader(t5_dir):
    from serve.core import Reranking, TeacherSpec

    rr = Reranking(TeacherSpec(str(t5_dir), "reader", 24, attention={}, answer_max_length=3))
    s = rr.score(["capital of france", "river", "capital of france"], PASSAGES[:3])
    assert s.shape == (3,) and np.isfinite(s).all()
    assert s[0] + s[2] == pytest.approx(1.0, abs=1e-5)  # one query's two documents were read together
    assert s[1] == pytest.approx(1.0, abs=1e-5)  # a single document gets all the attention


def test_score_grouped_reads_each_key_together(t5_dir):
    from distill.reader import score_grouped

    reader = FiDReader(str(t5_dir), max_length=24, answer_max_length=3)
    q = ["capital of france"] * 3
    by_text = score_grouped(reader, q, PASSAGES[:3])
    assert by_text.sum() == pytest.approx(1.0, abs=1e-5)  # one query text: one read over 3 passages
    by_id = score_grouped(reader, q, PASSAGES[:3], keys=["q1", "q2", "q1"])  # same text, two query ids
    assert by_id[1] == pytest.approx(1.0, abs=1e-5) and by_id[0] + by_id[2] == pytest.approx(1.0, abs=1e-5)
