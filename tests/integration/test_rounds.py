"""Reader-to-retriever distillation in iterative rounds, on a local Ray cluster (tiny random T5 and BERT).

One ``rounds: 2`` pipeline with a FiD reader teacher: the reader is fine-tuned on question-answer pairs
(Ray Train), scores every question's candidates by cross-attention (Ray Data), the student trains on
those targets with KL; round 2 mines with round 1's student. Training dies in round 2; the re-run
resumes in round 2 (round 1 untouched) and the report holds both rounds.
"""

import json
from collections import Counter

import numpy as np
import pandas as pd
import pyarrow.parquet as pq
import pytest

from distill.config import build_config
from distill.manifest import ROUND_STAGES, STAGES
from distill.pipeline import run_pipeline
from builders import make_beir, make_tiny_bert, make_tiny_t5

pytestmark = [pytest.mark.ray, pytest.mark.slow]


def _write_answers(data) -> int:
    """Answers for the train queries: the word of the query's positive document that no other document
    has and the query does not name (a question the reader can only answer from that document). Test
    queries appear without answers; one row names an unknown query (a counted reject)."""
    corpus = {d["_id"]: d for d in map(json.loads, (data / "corpus.jsonl").read_text().splitlines())}
    queries = {q["_id"]: q["text"] for q in map(json.loads, (data / "queries.jsonl").read_text().splitlines())}
    words = {d: f"{c['title']} {c['text']}".split() for d, c in corpus.items()}
    df = Counter(w for ws in words.values() for w in set(ws))
    train = pd.read_csv(data / "qrels" / "train.tsv", sep="\t", dtype=str)
    test = pd.read_csv(data / "qrels" / "test.tsv", sep="\t", dtype=str)
    rows = [{"_id": q, "answers": [next(w for w in words[d] if df[w] == 1 and w not in queries[q].split())]}
            for q, d in zip(train["query-id"], train["corpus-id"])]
    rows += [{"_id": q} for q in test["query-id"]] + [{"_id": "no-such-query", "answers": ["x"]}]
    (data / "answers.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    return len(train)


@pytest.mark.timeout(600)
def test_reader_teacher_two_rounds_resume_in_round_two(ray_session, tmp_path, monkeypatch, capsys):
    info = make_beir(tmp_path / "data", topics=4, docs_per_topic=6, train_queries=16, test_queries=8)
    assert _write_answers(tmp_path / "data") == 16
    make_tiny_t5(tmp_path / "reader", info["vocab"], d_model=32, layers=2, heads=4)
    make_tiny_bert(tmp_path / "student", info["vocab"], hidden=32, layers=2)
    cfg = build_config({
        "name": "rounds", "runs_dir": str(tmp_path / "runs"), "rounds": 2,
        "data": {"dir": str(tmp_path / "data"), "answers": "answers.jsonl"},
        "teacher": {"kind": "reader", "model": str(tmp_path / "reader"), "finetune": True, "max_length": 32,
                    "reader_passages": 4, "batch_size": 8, "learning_rate": 1e-3, "answer_max_length": 3},
        "student": {"model": str(tmp_path / "student"), "max_length": 32},
        "mining": {"sources": ["bm25", "student"], "depth": 5},
        "scoring": {"actors": 1, "batch_size": 64},
        "training": {"backend": "ddp", "num_workers": 1, "cpus_per_worker": 1, "max_steps": 6,
                     "queries_per_batch": 8, "group_size": 4, "learning_rate": 3e-3, "teacher_temperature": 0.02,
                     "checkpoint_every": 3, "max_failures": 0, "losses": {"kl": 1.0}},
        "encoding": {"actors": 1, "batch_size": 64},
        "evaluation": {"rerank_depth": 5, "first_stage_depth": 20, "speed_sample": 8},
        "ray": {"num_cpus": 2},
    })
    run = cfg.run_dir
    # training dies hard after step 3 of round 2 only: round 1's once-marker (train.py's default, beside its
    # groups) already exists, round 2 has its own train_work/
    monkeypatch.setenv("DISTILL_FAIL_AT_STEP", "3")
    monkeypatch.delenv("DISTILL_FAIL_ONCE_FILE", raising=False)
    (run / "train_work").mkdir(parents=True)
    (run / "train_work" / "fault.once").write_text("round 1 does not fail")
    with pytest.raises(Exception):
        run_pipeline(cfg)
    m = json.loads((run / "manifest.json").read_text())
    assert set(m["stages"]) == set(STAGES)  # round 1 finished
    assert set(m["rounds"]["2"]["stages"]) == {"mine", "score"}
    assert not (run / "round-2" / "student").exists()
    assert m.get("final_round", 1) == 1  # serving would still read round 1
    round1 = {s: m["stages"][s]["finished_at"] for s in STAGES}
    capsys.readouterr()

    # the reader: fine-tuned on the 16 answered train questions (8 steps of 2), QA rows counted
    st = m["stages"]["teacher"]
    assert st["counts"] == {"questions": 16, "steps": 8}
    assert st["answers"] == {"rows": 25, "answered": 16, "no_answers": 8, "rejected": 1}
    # its scores: one finite attention mass per candidate; a question's candidates were read together, so
    # their masses (default aggregation) sum to 1
    scores = pq.read_table(run / "teacher" / "scores.parquet").to_pandas()
    cands = pq.read_table(run / "candidates" / "candidates.parquet").to_pandas()
    assert len(scores) == len(cands) == m["stages"]["score"]["counts"]["pairs_out"]
    assert np.isfinite(scores["teacher_score"]).all() and (scores["teacher_score"] > 0).all()
    np.testing.assert_allclose(scores.groupby("qid")["teacher_score"].sum().to_numpy(), 1.0, atol=1e-4)

    # 2) re-run: round 1 and round 2's mine/score are skipped, round 2's training resumes from step 3
    monkeypatch.delenv("DISTILL_FAIL_AT_STEP")
    rd = run_pipeline(cfg)
    out = capsys.readouterr().out
    for s in STAGES:
        assert f"[{s}] already finished, skipped" in out
    for s in ("mine", "score"):
        assert f"[round-2/{s}] already finished, skipped" in out
    assert {s: rd.manifest["stages"][s]["finished_at"] for s in STAGES} == round1  # round 1 not redone
    r2 = rd.manifest["rounds"]["2"]["stages"]
    assert set(r2) == set(ROUND_STAGES)
    assert r2["train"]["resumed_from_step"] == 3 and r2["train"]["counts"]["steps"] == 6
    assert r2["mine"]["counts"]["queries"] == 16 and r2["encode"]["counts"]["embeddings"] == 24
    # round 2 mined with round 1's student, not the zero-shot one: the same pairs score differently
    c2 = pq.read_table(run / "round-2" / "candidates" / "candidates.parquet").to_pandas()
    both = cands[cands["source"] == "student"].merge(c2[c2["source"] == "student"], on=["qid", "docid"])
    assert len(both) > 0 and not np.allclose(both["score_x"], both["score_y"])
    r2_scores = pq.read_table(run / "round-2" / "teacher" / "scores.parquet").to_pandas()
    np.testing.assert_allclose(r2_scores.groupby("qid")["teacher_score"].sum().to_numpy(), 1.0, atol=1e-4)
    # round 2 has its own index version; serving reads the final round
    v1 = json.loads((run / "index" / "meta.json").read_text())["version"]
    v2 = json.loads((run / "round-2" / "index" / "meta.json").read_text())["version"]
    assert v1 != v2 and rd.manifest["final_round"] == 2
    from serve.core import RunArtifacts

    art = RunArtifacts.load(run)
    assert art.student == run / "round-2" / "student" and art.version == v2

    # the report: metrics for round 0 (zero-shot), 1 and 2, and the reader's reranking as reference
    report = json.loads((run / "rounds" / "report.json").read_text())
    assert [r["round"] for r in report["rounds"]] == [0, 1, 2]
    assert all(0.0 <= r["metrics"]["ndcg@10"] <= 1.0 for r in report["rounds"])
    assert set(report["reference"]) == {"bm25", "teacher_rerank@5"}
    assert (run / "rounds" / "metrics.png").stat().st_size > 1000
    assert "| 2 |" in (run / "rounds" / "report.md").read_text()
