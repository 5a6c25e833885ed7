"""Evaluation helpers without Ray: the teacher-rerank run keeps the first stage's tail."""

import numpy as np
import pandas as pd
import pytest

from distill.metrics import evaluate_run
from distill.stages.evaluate import gain_over_start, payoff_lines, per_query_values, reranked_run


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


def test_the_report_tests_the_distilled_student_against_its_own_start():
    # 12 queries, one relevant document each: the start ranks it 2nd everywhere, the distilled student 1st on
    # 9 queries, 2nd on 2 (level) and 3rd on one (worse)
    qrels = {f"q{i}": {"rel": 1} for i in range(12)}
    start = {q: {"x": 3.0, "rel": 2.0, "y": 1.0} for q in qrels}
    ranks = [1] * 9 + [2, 2, 3]
    dist = {q: {"rel": 3.0, "x": 2.0, "y": 1.0} if r == 1 else start[q] if r == 2 else {"x": 3.0, "y": 2.0, "rel": 1.0}
            for q, r in zip(qrels, ranks)}
    values = per_query_values(qrels, {"student_zero_shot": start, "student_distilled": dist})
    gain = gain_over_start(values, "student_zero_shot")
    t = gain["tests"]["mrr@10"]
    assert (gain["control"], gain["treatment"]) == ("student_zero_shot", "student_distilled")
    assert (t["queries"], t["wins"], t["losses"], t["ties"]) == (12, 9, 1, 2)
    assert t["control"] == 0.5 and t["diff"] == pytest.approx((9 * 0.5 - (0.5 - 1 / 3)) / 12)
    assert t["p"] < 0.01 and t["ci95"][0] > 0 and set(gain["tests"]) == {"ndcg@10", "mrr@10", "recall@100"}
    # the report's payoff lines say it in words
    report = {"metrics": {"student_zero_shot": {"ndcg@10": 0.6}, "student_distilled": {"ndcg@10": 0.8},
                          "teacher_rerank@20": {"ndcg@10": 0.9}},
              "sizes": {"student_parameters": 10, "teacher_parameters": 20, "teacher_to_student_size": 2.0},
              "speed": {}, "gain_over_start": gain}
    n = gain["tests"]["ndcg@10"]
    assert (f"Paired over the 12 queries, distilled vs its start: {n['diff']:+.4f} nDCG@10" in payoff_lines(report)[1]
            and "better on 9 queries, worse on 1, level on 2." in payoff_lines(report)[1])
    # nothing to test: a ranking missing, or no judged query
    assert gain_over_start({"student_distilled": values["student_distilled"]}, "student_zero_shot") is None
    assert gain_over_start({"student_zero_shot": {"ndcg@10": {}}, "student_distilled": {"ndcg@10": {}}},
                           "student_zero_shot") is None


def test_dev_split_metrics_through_an_index(tmp_path):
    """The dev split (held-out training queries) is evaluated beside test, never instead of it."""
    from types import SimpleNamespace

    from distill.models import DualEncoder
    from distill.stages.evaluate import dev_split, search_metrics
    from builders import make_bow_encoder

    enc = DualEncoder(str(make_bow_encoder(tmp_path / "e", ["cat", "dog", "car", "sun", "sea"], hidden=64)),
                      max_length=16)
    docs = {"d1": "cat", "d2": "dog", "d3": "car", "d4": "sun"}
    data = SimpleNamespace(queries={"q1": "cat cat", "q2": "sun", "q3": "sea"}, qrels={
        "test": {"q1": {"d1": 1}}, "dev": {"q2": {"d4": 1}, "q3": {"d2": 1}}})
    emb = enc.encode(list(docs.values()))
    ids = list(docs)

    def search(v, k):
        order = (-(v @ emb.T)).argsort(1)[:, :k]
        return [[ids[j] for j in row] for row in order], -np.sort(-(v @ emb.T), 1)[:, :k]

    rd = SimpleNamespace(config=SimpleNamespace(data=SimpleNamespace(test_split="test")))
    dev = dev_split(rd, data)
    assert dev == data.qrels["dev"]
    m = search_metrics(enc, search, dev, data, depth=4)
    assert m["mrr@10"] < 1.0 and m["recall@100"] == 1.0  # q2 finds d4 first; q3 ("sea") has no overlap
    assert search_metrics(enc, search, {"q2": {"d4": 1}}, data, 4)["ndcg@10"] == 1.0
    rd.config.data.test_split = "dev"  # reporting dev itself: nothing extra
    assert dev_split(rd, data) is None
    assert dev_split(SimpleNamespace(config=SimpleNamespace(data=SimpleNamespace(test_split="test"))),
                     SimpleNamespace(qrels={"test": {}})) is None


def test_the_stage_evaluates_every_system_or_only_a_later_round_or_sweep_runs_student(tmp_path, monkeypatch):
    import types

    from distill.config import build_config
    from distill.manifest import RunDir
    from distill.stages import evaluate

    calls = []
    monkeypatch.setattr(evaluate, "evaluate_student", lambda rd, data, label: calls.append(label) or {})
    monkeypatch.setattr(evaluate, "evaluate_all", lambda rd, data, teacher: calls.append(("all", teacher)) or {})
    rd = RunDir(build_config({"teacher": {"model": "/t", "finetune": False}, "student": {"model": "s"}},
                             [f"runs_dir={tmp_path}", "rounds=2"]))
    evaluate.run(rd, None)
    evaluate.run(rd.for_round(2), None)
    sweep_run = types.SimpleNamespace(round=1, shared_with=rd, config=types.SimpleNamespace(name="kl-seed1"))
    evaluate.run(sweep_run, None)
    assert calls == [("all", "/t"), "round 2", "sweep run kl-seed1"]
