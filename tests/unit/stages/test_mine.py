"""distill.stages.mine without Ray: merging the sources' candidates, and the generated queries."""

from __future__ import annotations

import json
import math
import types

import numpy as np

from distill.config import build_config
from distill.manifest import RunDir
from distill.stages.mine import GENERATED, add_generated_queries, merge_candidates, zero_shot_kwargs


def test_sources_merge_in_order_without_duplicates_and_positives_are_kept():
    ranked = {"bm25": ([["d1", "d2"], ["d5"]], np.array([[3.0, 2.0], [1.0]], dtype=object)),
              "student": ([["d2", "d3"], ["d6"]], np.array([[0.9, 0.8], [0.7]], dtype=object))}
    qrels = {"q1": {"d3": 1, "d4": 2, "d9": 0}, "q2": {}}
    c = merge_candidates(["q1", "q2"], ranked, qrels)
    q1 = c[c.qid == "q1"]
    assert list(q1.docid) == ["d1", "d2", "d3", "d4"] and list(q1["rank"]) == [0, 1, 2, 3]
    assert list(q1.source) == ["bm25", "bm25", "student", "qrels"] and list(q1.label) == [0, 0, 1, 1]
    assert math.isnan(q1.score.iloc[3])  # a positive no source found: appended, unscored
    assert list(c[c.qid == "q2"].docid) == ["d5", "d6"]


def test_merge_candidates_dedups_and_keeps_every_positive():
    ranked = {"bm25": ([["d1", "d2"]], [[5.0, 4.0]]), "student": ([["d2", "d3"]], [[0.9, 0.8]])}
    c = merge_candidates(["q"], ranked, {"q": {"d3": 1, "d9": 1, "d1": 0}})
    assert c["docid"].tolist() == ["d1", "d2", "d3", "d9"]
    assert c["source"].tolist() == ["bm25", "bm25", "student", "qrels"]
    assert c["label"].tolist() == [0, 0, 1, 1] and c["rank"].tolist() == [0, 1, 2, 3]


def test_generated_queries_become_visible_to_later_stages(tmp_path):
    rd = RunDir(build_config({"teacher": {"model": "t"}, "student": {"model": "s"}}, [f"runs_dir={tmp_path}"]))
    data = types.SimpleNamespace(queries={"q1": "real"})
    assert add_generated_queries(rd, data) == 0
    rd.stage_path("mine").mkdir()
    (rd.stage_path("mine") / GENERATED).write_text(json.dumps({"_id": "gen:1", "text": "made up"}) + "\n\n")
    assert add_generated_queries(rd, data) == 1 and data.queries == {"q1": "real", "gen:1": "made up"}


def test_the_zero_shot_student_keeps_every_setting_but_the_model():
    cfg = build_config({"teacher": {"model": "t"}, "student": {"model": "s", "num_layers": 2}})
    kw = zero_shot_kwargs(cfg.student)
    assert "model" not in kw and kw["num_layers"] == 2
