import numpy as np

from distill.config import QueryGenConfig
from distill.querygen import generate, span_queries


def test_spans_come_from_one_sentence_within_bounds():
    text = "Tides follow the moon closely. Bread rises because yeast releases carbon dioxide gas."
    for q in span_queries(text, 20, np.random.default_rng(0), min_words=3, max_words=5):
        assert 3 <= len(q.split()) <= 5
        assert q in text.replace(".", "")


def test_generate_filters_duplicates_and_test_leaks_and_counts_them():
    docs = {"a": "alpha beta gamma delta epsilon.", "b": "alpha beta gamma delta epsilon.", "c": "one two three four five."}
    cfg = QueryGenConfig(enabled=True, per_doc=1, min_words=5, max_words=5, max_test_overlap=0.6)
    queries, qrels, counts = generate(docs, cfg, seen_queries=[], test_queries=["one two three four five"])
    # a -> kept; b -> same text as a: duplicate; c -> identical to a test query: leak
    assert counts == {"generated": 3, "kept": 1, "empty": 0, "duplicate": 1, "leaks_test": 1}
    assert list(queries.values()) == ["alpha beta gamma delta epsilon"]
    assert qrels == {"gen:a:0": {"a": 1}}


def test_seq2seq_generator_path_with_a_tiny_random_t5(tmp_path):
    """The configured-generator path, on a T5 built from a config (no download): n queries per doc."""
    import torch
    from transformers import T5Config, T5ForConditionalGeneration

    from builders import word_tokenizer

    words = ["tide", "moon", "bread", "yeast", "rise", "gas", "sea"]
    tok = word_tokenizer(["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"] + words)
    torch.manual_seed(0)
    t5 = T5ForConditionalGeneration(T5Config(vocab_size=len(words) + 5, d_model=16, d_ff=32, num_layers=1,
                                             num_heads=2, d_kv=8, pad_token_id=0, eos_token_id=3,
                                             decoder_start_token_id=0))
    t5.save_pretrained(tmp_path, safe_serialization=True)
    tok.save_pretrained(tmp_path)
    docs = {"a": "tide moon sea", "b": "bread yeast rise gas"}
    cfg = QueryGenConfig(enabled=True, model=str(tmp_path), per_doc=3, max_test_overlap=1.0)
    queries, qrels, counts = generate(docs, cfg, seen_queries=[], test_queries=[], seed=1)
    assert counts["generated"] == 6 and counts["kept"] + counts["duplicate"] + counts["empty"] == 6
    assert all(set(q.split()) <= set(words) for q in queries.values())
    assert all(len(v) == 1 and list(v.values()) == [1] for v in qrels.values())
