"""Lexical first stage with bm25s (Lucene-style BM25, English stopwords)."""

from __future__ import annotations

import numpy as np


class BM25:
    def __init__(self, docids: list[str], texts: list[str]):
        import bm25s

        self.docids = docids
        self.retriever = bm25s.BM25()
        self.retriever.index(bm25s.tokenize(texts, stopwords="en", show_progress=False), show_progress=False)

    def search(self, queries: list[str], k: int) -> tuple[list[list[str]], np.ndarray]:
        import bm25s

        k = min(k, len(self.docids))
        tokens = bm25s.tokenize(queries, stopwords="en", show_progress=False)
        idx, scores = self.retriever.retrieve(tokens, k=k, show_progress=False, n_threads=1)
        return [[self.docids[j] for j in row] for row in idx], scores
