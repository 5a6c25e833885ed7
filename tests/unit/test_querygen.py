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
