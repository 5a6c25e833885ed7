"""Evaluation helpers without Ray: the teacher-rerank run keeps the first stage's tail."""

import pandas as pd

from distill.metrics import evaluate_run
from distill.stages.evaluate import reranked_run


def test_rerank_reorders_the_top_depth_and_keeps_the_first_stage_tail():
    first = [["a", "b", "c", "d", "e"], ["x", "y", "z"]]
    scored = pd.DataFrame({"qid": ["q1", "q1", "q2", "q2"], "docid": ["a", "b", "x", "y"],
                           "teacher_score": [0.1, 2.0, -3.0, -1.0]})
    run = reranked_run(["q1", "q2"], first, scored, depth=2)
    order = {q: sorted(r, key=r.get, reverse=True) for q, r in run.items()}
    assert order == {"q1": ["b", "a", "c", "d", "e"], "q2": ["y", "x", "z"]}
    # a judged document ranked below the rerank depth still counts for recall
    m = evaluate_run({"q1": {"e": 1}, "q2": {"y": 1}}, run)
    assert m["recall@100"] == 1.0 and m["mrr@10"] == (0.2 + 1.0) / 2
