"""Evaluation helpers without Ray: the teacher-rerank run keeps the first stage's tail."""

import numpy as np
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
