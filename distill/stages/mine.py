"""Stage ``mine``: candidates per training query from BM25 and/or the zero-shot student + FAISS.

Each source contributes its top ``depth``; candidates are merged in source order without duplicates,
and every judged positive is kept (appended when no source found it). The zero-shot student's corpus
embeddings are kept beside the candidates (``zeroshot/``) for the baseline row of the evaluation.
Output ``candidates/candidates.parquet``: qid, docid, rank, score, source, label. In round r > 1 of an
iterative run (``rounds: N``) the student source is round r-1's student, searching the corpus
embeddings round r-1 encoded.
"""

from __future__ import annotations

import json

import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq

from distill.bm25 import BM25
from distill.index import build_index
from distill.models import resolve_model
from distill.stages.encode import encode_texts, write_embeddings

GENERATED = "generated_queries.jsonl"


def add_generated_queries(rd, data) -> int:
    """Make the generated training queries that ``mine`` kept visible to the later stages."""
    path = rd.stage_path("mine") / GENERATED
    if not path.exists():
        return 0
    rows = [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines() if line.strip()]
    data.queries.update({r["_id"]: r["text"] for r in rows})
    return len(rows)


def zero_shot_kwargs(student_cfg) -> dict:
    """DualEncoder kwargs (besides the model) of the student as training starts: truncated, CNN or LSTM too."""
    return {k: v for k, v in student_cfg.model_dump().items() if k != "model"}


def _aligned_embeddings(path, docids: list[str]):
    """Corpus embeddings written by an ``encode`` stage, in ``docids`` order (every docid must be there)."""
    from distill.stages.encode import read_embeddings

    ids, emb = read_embeddings(path)
    pos = {d: i for i, d in enumerate(ids)}
    missing = [d for d in docids if d not in pos]
    if missing:
        raise RuntimeError(f"mine: {len(missing)} corpus documents have no embedding in {path} (e.g. {missing[0]!r})")
    return emb[[pos[d] for d in docids]]


def merge_candidates(qids: list[str], ranked: dict[str, tuple[list[list[str]], list]],
                     qrels: dict[str, dict[str, int]]) -> pd.DataFrame:
    """Merge per-source rankings; positives always kept. ``ranked[source] = (docids, scores)`` per qid."""
    rows = []
    for i, q in enumerate(qids):
        seen: set[str] = set()
        rank = 0
        for source, (ids, scores) in ranked.items():
            for d, s in zip(ids[i], scores[i]):
                if d in seen:
                    continue
                seen.add(d)
                rows.append((q, d, rank, float(s), source, int(qrels.get(q, {}).get(d, 0) > 0)))
                rank += 1
        for d, rel in qrels.get(q, {}).items():
            if rel > 0 and d not in seen:
                seen.add(d)
                rows.append((q, d, rank, float("nan"), "qrels", 1))
                rank += 1
    return pd.DataFrame(rows, columns=["qid", "docid", "rank", "score", "source", "label"])


def run(rd, data) -> dict:
    cfg = rd.config
    qrels = dict(data.qrels[cfg.data.train_split])
    qids = list(qrels)
    if cfg.data.max_train_queries:
        qids = qids[: cfg.data.max_train_queries]
    qtexts = [data.queries[q] for q in qids]
    gen_counts = {}
    if cfg.mining.querygen.enabled:
        from distill import querygen

        test = list(data.split_queries(cfg.data.test_split).values())
        gq, gqrels, gen_counts = querygen.generate({d: data.corpus[d][1] for d in data.corpus}, cfg.mining.querygen,
                                                   qtexts, test, seed=cfg.seed)
        qrels.update(gqrels)
        qids += list(gq)
        qtexts += list(gq.values())
    docids = list(data.corpus)
    dtexts = [data.doc_text(d) for d in docids]
    ranked = {}
    with rd.atomic_output("mine") as tmp:
        if "bm25" in cfg.mining.sources:
            ranked["bm25"] = BM25(docids, dtexts).search(qtexts, cfg.mining.depth)
        # zero-shot student (or mining.encoder): corpus embeddings are kept for the baseline evaluation either way
        model = resolve_model(cfg.mining_encoder.model)
        kw = zero_shot_kwargs(cfg.mining_encoder)
        # one Ray Data pass (one model pool) embeds the corpus and the training queries together
        want_q = "student" in cfg.mining.sources
        prev = rd.previous_round()
        if prev is not None:  # round r > 1 (distill.stages.rounds): cfg.student.model is round r-1's student;
            if want_q:        # its corpus embeddings are round r-1's encode output, only the queries are new
                demb = _aligned_embeddings(prev.stage_path("encode"), docids)
                qemb = encode_texts([f"q:{q}" for q in qids], qtexts, model, cfg.ray, cfg.encoding.batch_size,
                                    cfg.encoding.actors, kw)
        else:
            keys = [f"d:{d}" for d in docids] + ([f"q:{q}" for q in qids] if want_q else [])
            emb = encode_texts(keys, dtexts + (qtexts if want_q else []), model, cfg.ray, cfg.encoding.batch_size,
                               cfg.encoding.actors, kw)
            demb, qemb = emb[: len(docids)], emb[len(docids):]
            write_embeddings(tmp / "zeroshot", docids, demb)
        if want_q:
            scores, idx = build_index(demb).search(qemb, min(cfg.mining.depth, len(docids)))
            ranked["student"] = ([[docids[j] for j in row] for row in idx], scores)
        cands = merge_candidates(qids, ranked, qrels)
        pq.write_table(pa.Table.from_pandas(cands, preserve_index=False), tmp / "candidates.parquet")
        if gen_counts:
            with open(tmp / GENERATED, "w", encoding="utf-8") as f:
                for q, t in zip(qids, qtexts):
                    if q.startswith("gen:"):
                        f.write(json.dumps({"_id": q, "text": t}) + "\n")
    counts = {"queries": len(qids), "candidates": len(cands), "positives": int(cands["label"].sum()),
              "positives_added": int((cands["source"] == "qrels").sum())}
    rd.mark_done("mine", counts, query_generation=gen_counts or None)
    return counts
