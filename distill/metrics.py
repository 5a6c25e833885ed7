"""Ranking metrics through ranx: nDCG@10, MRR@10, Recall@100 (no hand-written metric code)."""

from __future__ import annotations

import warnings

METRICS = ["ndcg@10", "mrr@10", "recall@100"]


def _ranx_inputs(qrels: dict[str, dict[str, int]], run: dict[str, dict[str, float]]):
    """ranx's Qrels and Run of the judged queries (those with a positive); a query with no results gets an
    unjudged dummy, so it counts as zero."""
    from ranx import Qrels, Run

    judged = {q: {d: int(r) for d, r in docs.items() if r > 0} for q, docs in qrels.items()}
    judged = {q: docs for q, docs in judged.items() if docs}
    full_run = {q: {d: float(s) for d, s in run.get(q, {}).items()} for q in judged}
    for q, docs in full_run.items():
        if not docs:  # ranx needs one entry per query; an unjudged dummy scores zero on every metric
            docs["__none__"] = 0.0
    return Qrels(judged), Run(full_run)


def _ranx_evaluate(qrels, run, metrics: list[str], return_mean: bool):
    from ranx import evaluate

    with warnings.catch_warnings():  # ranx's numba kernels cast its uint64 ranks to int64 when they compile
        warnings.filterwarnings("ignore", message=".*unsafe cast from uint64 to int64")
        scores = evaluate(qrels, run, metrics, return_mean=return_mean, make_comparable=True)
    if len(metrics) == 1 and not isinstance(scores, dict):  # ranx gives a bare result for a single metric
        scores = {metrics[0]: scores}
    return scores


def evaluate_run(qrels: dict[str, dict[str, int]], run: dict[str, dict[str, float]],
                 metrics: list[str] = METRICS) -> dict[str, float]:
    """Mean of each metric over the judged queries; a query with no results counts as zero."""
    scores = _ranx_evaluate(*_ranx_inputs(qrels, run), metrics, return_mean=True)
    return {m: float(scores[m]) for m in metrics}


def per_query(qrels: dict[str, dict[str, int]], run: dict[str, dict[str, float]],
              metrics: list[str] = METRICS) -> dict[str, dict[str, float]]:
    """Each metric of each judged query, ``{metric: {qid: value}}``: the values whose means
    :func:`evaluate_run` reports (for paired tests between systems, distill.significance)."""
    ranx_qrels, ranx_run = _ranx_inputs(qrels, run)
    scores = _ranx_evaluate(ranx_qrels, ranx_run, metrics, return_mean=False)
    qids = list(ranx_qrels.keys())  # ranx's order of the per-query arrays
    return {m: {q: float(v) for q, v in zip(qids, scores[m])} for m in metrics}


def to_run(qids: list[str], ranked_ids: list[list[str]], scores) -> dict[str, dict[str, float]]:
    return {q: {d: float(s) for d, s in zip(ids, row)} for q, ids, row in zip(qids, ranked_ids, scores)}


def table_head(columns: list[str]) -> list[str]:
    """A markdown table's header and rule: ``| a | b |`` and ``|---|---|``."""
    return ["| " + " | ".join(columns) + " |", "|" + "---|" * len(columns)]


def metric_cells(values: dict, metrics: list[str] = METRICS, fmt=lambda v: f"{v:.4f}") -> list[str]:
    return [fmt(values.get(k, "")) for k in metrics]


def metrics_table(rows, first: str = "system", metrics: list[str] = METRICS, fmt=lambda v: f"{v:.4f}") -> list[str]:
    """A markdown table (as lines) with a row ``| name | value | ... |`` per (name, {metric: value}) of
    ``rows``, values formatted by ``fmt`` (four decimals)."""
    return table_head([first, *metrics]) + ["| " + " | ".join([str(name), *metric_cells(m, metrics, fmt)]) + " |"
                                            for name, m in rows]
