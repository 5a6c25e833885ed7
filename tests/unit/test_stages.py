"""distill.stages: one table of ``run(rd, data) -> counts`` in pipeline order, walked by the pipeline."""

from __future__ import annotations

import inspect

import pytest

from distill import stages
from distill.manifest import STAGES


def test_every_stage_is_registered_once_in_pipeline_order_with_one_signature():
    assert list(stages.RUNNERS) == STAGES
    for name, run in stages.RUNNERS.items():
        assert list(inspect.signature(run).parameters) == ["rd", "data"], name
    with pytest.raises(ValueError, match="unknown stage 'nope'"):
        stages.runner("nope")


def test_the_pipeline_dispatches_from_the_table(monkeypatch):
    from distill import pipeline

    seen = []
    monkeypatch.setitem(stages.RUNNERS, "index", lambda rd, data: seen.append((rd, data)) or {"vectors": 3})
    assert pipeline.run_stage("RD", "DATA", "index") == {"vectors": 3} and seen == [("RD", "DATA")]


def test_score_and_train_see_the_generated_queries_first(monkeypatch):
    """The stages that read mine's candidates make its generated queries visible themselves."""
    from distill.stages import score

    calls = []
    monkeypatch.setattr(stages.mine, "add_generated_queries", lambda rd, data: calls.append("generated"))
    monkeypatch.setattr(score, "score_candidates", lambda rd, data, teacher: calls.append(teacher) or {})
    monkeypatch.setattr("distill.layout.teacher_dir", lambda rd: "/teacher")
    score.run("rd", "data")
    assert calls == ["generated", "/teacher"]
    assert "add_generated_queries" in inspect.getsource(stages.train.run)
