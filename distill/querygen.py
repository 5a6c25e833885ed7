"""Query generation (EmbedDistill, docs/METHODS.md, section 2.4): extra training queries from corpus documents.

With ``model`` set, a seq2seq generator (a local dir or hub id, e.g. a doc2query T5) writes queries by
sampling; otherwise the built-in method samples a span of ``min_words``..``max_words`` words from one
sentence of the document's text (not its title). Each generated query's source document is its
positive. Generated queries that duplicate each other or a training query, or that leak a test query
(the same normalised text, or a word-set Jaccard overlap of at least ``max_test_overlap``), are
filtered and counted.
"""

from __future__ import annotations

import re

import numpy as np

_WORD = re.compile(r"\w+", re.UNICODE)
_SENT = re.compile(r"(?<=[.!?])\s+")


def _norm(text: str) -> str:
    return " ".join(_WORD.findall(text.lower()))


def _words(text: str) -> set[str]:
    return set(_WORD.findall(text.lower()))


def span_queries(text: str, n: int, rng: np.random.Generator, min_words: int = 4, max_words: int = 10) -> list[str]:
    """Built-in generator: ``n`` spans, each from a random sentence of ``text``."""
    sents = [s.split() for s in _SENT.split(text) if len(s.split()) >= min_words] or [text.split()]
    out = []
    for _ in range(n):
        words = sents[int(rng.integers(len(sents)))]
        if not words:
            continue
        length = int(rng.integers(min(min_words, len(words)), min(max_words, len(words)) + 1))
        start = int(rng.integers(0, len(words) - length + 1))
        out.append(" ".join(words[start:start + length]).strip(" ,;:.!?"))
    return out


def seq2seq_queries(texts: list[str], model: str, n: int, max_new_tokens: int = 32, seed: int = 0,
                    trust_remote_code: bool = False, batch_size: int = 16) -> list[list[str]]:
    """``n`` sampled queries per text from a seq2seq generator (e.g. a doc2query T5)."""
    import torch
    from transformers import AutoModelForSeq2SeqLM, AutoTokenizer

    from distill.models import resolve_model

    path = resolve_model(model)
    tok = AutoTokenizer.from_pretrained(path, trust_remote_code=trust_remote_code)
    gen = AutoModelForSeq2SeqLM.from_pretrained(path, trust_remote_code=trust_remote_code).eval()
    torch.manual_seed(seed)
    out: list[list[str]] = []
    with torch.inference_mode():
        for i in range(0, len(texts), batch_size):
            enc = tok(texts[i:i + batch_size], truncation=True, max_length=256, padding=True, return_tensors="pt")
            ids = gen.generate(input_ids=enc["input_ids"], attention_mask=enc["attention_mask"], do_sample=True, top_k=10, num_return_sequences=n, max_new_tokens=max_new_tokens)
            dec = tok.batch_decode(ids, skip_special_tokens=True)
            out += [dec[j * n:(j + 1) * n] for j in range(len(dec) // n)]
    return out


def generate(docs: dict[str, str], cfg, seen_queries: list[str], test_queries: list[str], seed: int = 0):
    """Return (queries {qid: text}, qrels {qid: {docid: 1}}, counts of kept and filtered)."""
    rng = np.random.default_rng(seed)
    ids = list(docs)
    if cfg.max_docs and cfg.max_docs < len(ids):
        ids = [ids[i] for i in sorted(rng.choice(len(ids), cfg.max_docs, replace=False))]
    if cfg.model:
        texts = seq2seq_queries([docs[d] for d in ids], cfg.model, cfg.per_doc, seed=seed,
                                trust_remote_code=cfg.trust_remote_code)
    else:
        texts = [span_queries(docs[d], cfg.per_doc, rng, cfg.min_words, cfg.max_words) for d in ids]
    test_norm = {_norm(t) for t in test_queries}
    test_sets = [_words(t) for t in test_queries]
    seen = {_norm(t) for t in seen_queries}
    queries, qrels = {}, {}
    counts = {"generated": 0, "kept": 0, "empty": 0, "duplicate": 0, "leaks_test": 0}
    for d, cands in zip(ids, texts):
        for j, q in enumerate(cands):
            counts["generated"] += 1
            n = _norm(q)
            if not n:
                counts["empty"] += 1
                continue
            if n in test_norm or any(_jaccard(_words(q), t) >= cfg.max_test_overlap for t in test_sets):
                counts["leaks_test"] += 1
                continue
            if n in seen:
                counts["duplicate"] += 1
                continue
            seen.add(n)
            qid = f"gen:{d}:{j}"
            queries[qid] = q.strip()
            qrels[qid] = {d: 1}
            counts["kept"] += 1
    return queries, qrels, counts


def _jaccard(a: set, b: set) -> float:
    return len(a & b) / len(a | b) if a and b else 0.0
