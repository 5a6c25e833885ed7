"""distill.metrics: ranx metrics, runs from rankings, and the one markdown metrics table."""

from __future__ import annotations

import pytest

from distill.metrics import METRICS, evaluate_run, metrics_table, per_query, table_head, to_run


def test_a_perfect_and_an_empty_ranking():
    qrels = {"q1": {"d1": 1}, "q2": {"d2": 1}, "q3": {"d9": 0}}  # q3 has no positive: not counted
    perfect = evaluate_run(qrels, to_run(["q1", "q2"], [["d1", "x"], ["d2", "y"]], [[2.0, 1.0], [2.0, 1.0]]))
    assert perfect == {m: 1.0 for m in METRICS}
    half = evaluate_run(qrels, {"q1": {"x": 2.0, "d1": 1.0}})  # q1's positive second, q2 retrieved nothing
    assert half["mrr@10"] == pytest.approx(0.25) and half["recall@100"] == pytest.approx(0.5)


def test_the_markdown_table():
    lines = metrics_table([("bm25", {"ndcg@10": 0.5, "mrr@10": 0.25, "recall@100": 1.0})], first="round")
    assert lines == ["| round | ndcg@10 | mrr@10 | recall@100 |", "|---|---|---|---|",
                     "| bm25 | 0.5000 | 0.2500 | 1.0000 |"]
    assert metrics_table([("a", {"x": 3})], metrics=["x", "y"], fmt=str)[-1] == "| a | 3 |  |"
    assert table_head(["a", "b", "c"]) == ["| a | b | c |", "|---|---|---|"]


def test_per_query_values_average_to_the_reported_means():
    qrels = {"q1": {"d1": 1}, "q2": {"d2": 1}, "q3": {"d9": 0}}  # q3: no positive, not a judged query
    run = {"q1": {"x": 2.0, "d1": 1.0}}  # q1's positive second, q2 retrieved nothing
    values = per_query(qrels, run)
    assert values["mrr@10"] == {"q1": 0.5, "q2": 0.0} and values["recall@100"] == {"q1": 1.0, "q2": 0.0}
    means = evaluate_run(qrels, run)
    assert {m: sum(v.values()) / 2 for m, v in values.items()} == pytest.approx(means)
    assert per_query(qrels, run, ["mrr@10"]) == {"mrr@10": {"q1": 0.5, "q2": 0.0}}
