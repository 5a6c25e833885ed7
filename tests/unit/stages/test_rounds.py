"""Iterative rounds in the run directory (no Ray): round views, chained digests, invalidation of later
rounds, the final round that serving reads, and the per-round report."""

import json

import pytest

from distill.config import build_config
from distill.manifest import ROUND_STAGES, RunDir, stage_digest
from serve.core import final_round_dir

BASE = {"teacher": {"model": "t"}, "student": {"model": "s"}, "rounds": 3}


def _finish(view, stage, **info):
    with view.atomic_output(stage) as tmp:
        (tmp / "done").write_text("x")
    view.mark_done(stage, {"n": 1}, **info)


def test_round_views_paths_config_and_digests(tmp_path):
    cfg = build_config(BASE, [f"runs_dir={tmp_path}"])
    rd = RunDir(cfg)
    assert rd.for_round(1) is rd and rd.previous_round() is None and rd.stage_order[0] == "teacher"
    r2, r3 = rd.for_round(2), rd.for_round(3)
    assert r2.stage_order == ROUND_STAGES and r2.previous_round().round == 1
    assert r2.stage_path("train") == rd.path / "round-2" / "student"
    assert r3.stage_path("mine") == rd.path / "round-3" / "candidates"
    assert r2.stage_path("teacher") == rd.stage_path("teacher")  # one teacher for all rounds
    # round r trains on from round r-1's student; everything else is the run's config
    assert r2.config.student.model == str(rd.path / "student")
    assert r3.config.student.model == str(rd.path / "round-2" / "student")
    assert r2.config.training == cfg.training and rd.config.student.model == "s"
    # digests differ per round and chain the previous round's
    assert len({rd.digest("mine"), r2.digest("mine"), r3.digest("mine")}) == 3
    other = RunDir(build_config(BASE, [f"runs_dir={tmp_path}", "training.learning_rate=1e-3"]))
    assert other.digest("mine") == rd.digest("mine")  # round 1's mine does not depend on training
    assert other.for_round(2).digest("mine") != r2.digest("mine")  # round 2's mine does (round 1's student)
    with pytest.raises(ValueError):
        rd.for_round(0)


def test_round_entries_invalidation_and_final_round(tmp_path):
    cfg = build_config(BASE, [f"runs_dir={tmp_path}"])
    rd = RunDir(cfg)
    for s in rd.stage_order:
        _finish(rd, s)
    assert rd.final_round() == 1
    r2 = rd.for_round(2)
    for s in ROUND_STAGES:
        _finish(r2, s)
    m = json.loads(rd.manifest_path.read_text())
    assert set(m["rounds"]["2"]["stages"]) == set(ROUND_STAGES)
    assert m["rounds"]["2"]["stages"]["train"]["output"] == "round-2/student"
    assert m["stages"]["train"]["output"] == "student"
    assert rd.final_round() == 2  # round 3 not finished
    reopened = RunDir(cfg)
    assert all(reopened.for_round(2).is_done(s) for s in ROUND_STAGES)
    # re-running round 1's evaluate keeps round 2; re-running its train forgets round 2
    rd.invalidate_from("evaluate")
    assert "2" in rd.manifest["rounds"]
    rd.manifest["final_round"] = 2
    rd.invalidate_from("train")
    assert rd.manifest["rounds"] == {} and rd.manifest["final_round"] == 1
    assert set(rd.stages) == {"teacher", "mine", "score"}
    # within round 2: re-running encode forgets encode.. evaluate of round 2 and all of round 3
    for s in ("train", "encode", "index", "evaluate"):
        _finish(rd, s)
    for s in ROUND_STAGES:
        _finish(r2, s)
    _finish(rd.for_round(3), "mine")
    r2.invalidate_from("encode")
    assert set(r2.stages) == {"mine", "score", "train"} and "3" not in rd.manifest["rounds"]


def test_serving_finds_the_final_round(tmp_path):
    run = tmp_path / "run"
    run.mkdir()
    assert final_round_dir(run) == run  # no manifest
    (run / "manifest.json").write_text(json.dumps({"final_round": 1}))
    assert final_round_dir(run) == run
    (run / "manifest.json").write_text(json.dumps({"final_round": 3}))
    assert final_round_dir(run) == run / "round-3"
    (run / "manifest.json").write_text("{broken")
    assert final_round_dir(run) == run  # RunArtifacts.load reports the broken manifest itself


def test_rounds_report_from_evaluated_rounds(tmp_path):
    from distill.metrics import METRICS
    from distill.stages.rounds import write_report

    cfg = build_config(BASE, [f"runs_dir={tmp_path}"])
    rd = RunDir(cfg)

    def metrics(v):
        return {k: v for k in METRICS}

    def evaluated(view, report):
        with view.atomic_output("evaluate") as tmp:
            (tmp / "report.json").write_text(json.dumps(report))
        view.mark_done("evaluate", {})

    evaluated(rd, {"split": "test", "queries": 5, "metrics": {
        "bm25": metrics(0.3), "student_zero_shot": metrics(0.4), "teacher_rerank@20": metrics(0.9),
        "student_distilled": metrics(0.5)}})
    evaluated(rd.for_round(2), {"metrics": {"student_distilled": metrics(0.6)}, "index": {"version": "v2"}})
    report = write_report(rd)  # round 3 not evaluated: rounds 0..2
    assert [(r["round"], r["metrics"]["ndcg@10"]) for r in report["rounds"]] == [(0, 0.4), (1, 0.5), (2, 0.6)]
    assert set(report["reference"]) == {"bm25", "teacher_rerank@20"}
    out = rd.path / "rounds"
    assert json.loads((out / "report.json").read_text()) == report
    assert "| 2 | 0.6000" in (out / "report.md").read_text()
    assert (out / "metrics.png").stat().st_size > 1000
    assert stage_digest(cfg, "mine") == rd.digest("mine")  # round 1 keeps the one-round digests
