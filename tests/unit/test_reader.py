"""The FiD reader (distill.reader): a tiny random T5 through the FiD scorer and fine-tuning, a BERT
warm-started as a reader, grouped scoring and serving with a reader, and the reader config rules. No Ray.
The attention maths: test_attention.py; the cross-encoder's attention: test_cross_encoder_attention.py;
QA pairs: test_answers.py; the score stage's reader actor: test_reader_scoring.py."""

import numpy as np
import pytest
import torch

from distill.config import ConfigError, build_config
from distill.reader import FiDReader
from builders import make_tiny_bert, make_tiny_t5


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
