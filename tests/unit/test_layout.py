"""distill.layout: the run directory's names, the ones the manifest and the CLI use."""

from __future__ import annotations

from distill import layout
from distill.config import build_config
from distill.manifest import STAGES, RunDir


def test_every_stage_has_its_folder_and_the_run_directory_uses_them(tmp_path):
    rd = RunDir(build_config({"teacher": {"model": "t"}, "student": {"model": "s"}}, [f"runs_dir={tmp_path}"]))
    assert set(layout.STAGE_DIRS) == set(STAGES)
    assert {s: rd.stage_path(s).name for s in STAGES} == {
        "teacher": "teacher_model", "mine": "candidates", "score": "teacher", "train": "student",
        "encode": "embeddings", "index": "index", "evaluate": "eval"}
    assert rd.manifest_path == rd.path / layout.MANIFEST == rd.path / "manifest.json"
    assert rd.for_round(2).path == rd.path / "round-2" == rd.path / layout.round_dir(2)
    assert rd.for_round(2).stage_path("teacher") == rd.stage_path("teacher")  # one teacher for every round
    assert layout.partial_dir("encode") == ".embeddings.partial" and layout.partial_dir("score") == ".teacher.partial"


def test_the_teacher_is_loaded_from_its_finetuned_folder_or_its_model(tmp_path):
    from distill.stages.teacher import teacher_path

    base = {"student": {"model": "s"}}
    for teacher, want in [({"model": "/models/ce", "finetune": False}, "/models/ce"),
                          ({"model": "/models/ce", "finetune": True}, None),
                          ({"kind": "ensemble", "members": [{"name": "b", "kind": "bm25"}]}, "")]:
        rd = RunDir(build_config({**base, "teacher": teacher}, [f"runs_dir={tmp_path}"]))
        want = str(rd.stage_path("teacher").resolve()) if want is None else want
        assert layout.teacher_dir(rd) == want == teacher_path(rd)
