"""Ensemble teacher (``teacher.kind: ensemble``): member scores normalised per query, then a weighted sum.

For one query q with candidates d_1..d_n and member m's raw scores x_m(q, d_i):

    zscore:  n_m(q, d_i) = (x_m(q, d_i) - mean_i x_m(q, .)) / max(std_i x_m(q, .), 1e-6)
    rrf:     n_m(q, d_i) = 1 / (rrf_k + rank_m(q, d_i))          (rank 1 = member m's best candidate)
    fused:   t(q, d_i)  = sum_m w_m n_m(q, d_i)

Members are BM25 (scored here, from the corpus statistics), dual encoders and cross-encoders (scored by
``distill.stages.score.TeacherActor``). Weights come from the config, or are fitted on the held-out dev
split (``teacher.fit_weights``): every point of the simplex grid with step ``teacher.weight_grid_step`` is
tried and the one with the best dev nDCG@10 is kept (ties: the earlier grid point). Never the test split.
Lexical + dense fusion as a teacher: docs/METHODS.md, "Ensemble teacher".
"""

from __future__ import annotations

import itertools
import json
from pathlib import Path

import numpy as np
import pandas as pd

ENSEMBLE_FILE = "ensemble.json"  # in the score stage's output: members, fusion, weights and how they were chosen
MEMBER_PREFIX = "teacher_member_"  # scores.parquet: one raw-score column per member beside teacher_score


def member_column(name: str) -> str:
    return MEMBER_PREFIX + name


def group_index(keys) -> np.ndarray:
    """Integer group id per row: rows with the same key (one query's candidates) share an id."""
    _, inv = np.unique(np.asarray(keys, dtype=object).astype(str), return_inverse=True)
    return inv.reshape(-1)


def normalise(scores, groups: np.ndarray, fusion: str = "zscore", rrf_k: int = 60) -> np.ndarray:
    """Per-group z-scores (``zscore``) or reciprocal ranks ``1 / (rrf_k + rank)`` (``rrf``) of ``scores``."""
    x = np.asarray(scores, dtype=np.float64)
    out = np.zeros_like(x)
    order = np.argsort(groups, kind="stable")
    bounds = np.flatnonzero(np.diff(groups[order])) + 1
    for rows in np.split(order, bounds):
        if len(rows) == 0:
            continue
        v = x[rows]
        if fusion == "zscore":
            out[rows] = (v - v.mean()) / max(float(v.std()), 1e-6)
        elif fusion == "rrf":
            ranks = np.empty(len(v))
            ranks[np.argsort(-v, kind="stable")] = np.arange(1, len(v) + 1)
            out[rows] = 1.0 / (rrf_k + ranks)
        else:
            raise ValueError(f"unknown fusion {fusion!r} (zscore or rrf)")
    return out


def fuse(member_scores: dict[str, np.ndarray], weights: dict[str, float], groups: np.ndarray,
         fusion: str = "zscore", rrf_k: int = 60) -> np.ndarray:
    """sum_m w_m * normalise(x_m) per group; float32."""
    total = np.zeros(len(groups), dtype=np.float64)
    for name, w in weights.items():
        if w:
            total += w * normalise(member_scores[name], groups, fusion, rrf_k)
    return total.astype(np.float32)


def simplex_grid(n: int, step: float) -> list[tuple[float, ...]]:
    """Every weight vector of ``n`` non-negative multiples of ``step`` summing to 1 (in a fixed order)."""
    k = round(1 / step)
    if abs(k * step - 1) > 1e-9:
        raise ValueError(f"weight_grid_step must divide 1, got {step}")
    return [tuple(c / k for c in combo) for combo in itertools.product(range(k + 1), repeat=n) if sum(combo) == k]


def ndcg10(qids: np.ndarray, docids: np.ndarray, scores: np.ndarray, qrels: dict[str, dict[str, int]]) -> float:
    """The project's nDCG@10 (ranx, distill.metrics) of ``scores`` over the given (qid, docid) rows."""
    from distill.metrics import evaluate_run

    run: dict[str, dict[str, float]] = {}
    for q, d, s in zip(qids, docids, scores):
        run.setdefault(str(q), {})[str(d)] = float(s)
    return evaluate_run(qrels, run, ["ndcg@10"])["ndcg@10"]


def fit_weights(frame: pd.DataFrame, names: list[str], qrels: dict[str, dict[str, int]], step: float,
                fusion: str = "zscore", rrf_k: int = 60) -> dict:
    """Best dev nDCG@10 over the simplex grid. ``frame``: qid, docid and one ``member_column(name)`` per member,
    for dev queries only (the caller guarantees it). Returns weights, the best score, each member alone and
    every grid point tried."""
    groups = group_index(frame["qid"])
    xs = {n: frame[member_column(n)].to_numpy(np.float64) for n in names}
    norm = {n: normalise(xs[n], groups, fusion, rrf_k) for n in names}
    qids, docids = frame["qid"].to_numpy(), frame["docid"].to_numpy()
    judged = {q: qrels[q] for q in dict.fromkeys(frame["qid"]) if q in qrels}
    tried = []
    for w in simplex_grid(len(names), step):
        fused = sum(wi * norm[n] for wi, n in zip(w, names))
        tried.append({"weights": dict(zip(names, w)), "ndcg@10": ndcg10(qids, docids, fused, judged)})
    best = max(tried, key=lambda r: r["ndcg@10"])  # max keeps the first of equal scores
    alone = {n: ndcg10(qids, docids, xs[n], judged) for n in names}
    return {"weights": best["weights"], "ndcg@10": best["ndcg@10"], "members_alone": alone,
            "queries": len(judged), "pairs": len(frame), "grid": tried}


class BM25PairScorer:
    """BM25 scores of given (query, document id) pairs, from the statistics of the whole corpus (bm25s)."""

    def __init__(self, docids: list[str], texts: list[str]):
        import bm25s

        self.pos = {d: i for i, d in enumerate(docids)}
        self.retriever = bm25s.BM25()
        self.retriever.index(bm25s.tokenize(texts, stopwords="en", show_progress=False), show_progress=False)

    def score(self, queries: list[str], docids: list[str]) -> np.ndarray:
        import bm25s

        out = np.zeros(len(queries), dtype=np.float32)
        uq = list(dict.fromkeys(queries))
        tokens = dict(zip(uq, bm25s.tokenize(uq, stopwords="en", return_ids=False, show_progress=False)))
        cache: dict[str, np.ndarray] = {}
        for i, (q, d) in enumerate(zip(queries, docids)):
            if q not in cache:
                cache[q] = self.retriever.get_scores(tokens[q]) if tokens[q] else np.zeros(len(self.pos))
            out[i] = cache[q][self.pos[d]]
        return out


def member_specs(teacher_cfg, finetuned_dir: str | Path | None) -> list[dict]:
    """Each member as a dict for TeacherActor / the reranker: name, kind, resolved path, max_length, head,
    trust_remote_code, weight. ``model: finetuned`` is the teacher stage's fine-tuned cross-encoder."""
    from distill.models import resolve_model

    out = []
    for m in teacher_cfg.members:
        path = None
        if m.kind != "bm25":
            path = str(finetuned_dir) if m.model == "finetuned" else resolve_model(m.model)
        out.append({"name": m.name, "kind": m.kind, "model": m.model, "path": path, "max_length": m.max_length,
                    "head": m.head, "trust_remote_code": m.trust_remote_code, "weight": m.weight})
    return out


def read_ensemble(score_dir: str | Path) -> dict:
    """The fused teacher's record (``ensemble.json``) written by the score stage."""
    p = Path(score_dir) / ENSEMBLE_FILE
    if not p.exists():
        raise FileNotFoundError(f"{p} is missing: re-run the score stage of this ensemble-teacher run")
    return json.loads(p.read_text())


def fused_scores(frame: pd.DataFrame, record: dict) -> np.ndarray:
    """``record``'s fusion of the member columns of ``frame`` (qid, docid, teacher_member_<name>...)."""
    groups = group_index(frame["qid"])
    xs = {n: frame[member_column(n)].to_numpy(np.float64) for n in record["weights"]}
    return fuse(xs, record["weights"], groups, record["fusion"], record.get("rrf_k", 60))
