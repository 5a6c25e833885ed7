"""distill.bm25: the lexical first stage (bm25s) used by mining, evaluation and ensemble teachers."""

from __future__ import annotations

import numpy as np

from distill.bm25 import BM25

DOCS = {"d1": "the cat sat on the mat", "d2": "a dog chased the cat", "d3": "stock markets fell sharply",
        "d4": "the dog slept"}


def test_the_document_sharing_the_rare_terms_ranks_first():
    bm = BM25(list(DOCS), list(DOCS.values()))
    ids, scores = bm.search(["markets fell", "dog chased"], 2)
    assert ids[0][0] == "d3" and ids[1][0] == "d2"
    assert scores.shape == (2, 2) and np.all(np.diff(scores, axis=1) <= 0)  # best first


def test_k_is_capped_at_the_corpus_size_and_ids_are_the_callers():
    bm = BM25(list(DOCS), list(DOCS.values()))
    ids, scores = bm.search(["cat"], 10)
    assert len(ids[0]) == len(DOCS) == scores.shape[1] and set(ids[0]) == set(DOCS)
    assert set(ids[0][:2]) == {"d1", "d2"}  # the two documents with the term, above the two without


def test_stopwords_alone_match_nothing_better_than_anything_else():
    bm = BM25(list(DOCS), list(DOCS.values()))
    _, scores = bm.search(["the a on"], 4)
    assert np.allclose(scores, 0.0)
