"""The SciFact benchmark's target lines (no Ray): each soft-label system against the hard-label control
of its own size."""

import importlib.util
from pathlib import Path

spec = importlib.util.spec_from_file_location(
    "quality_scifact", Path(__file__).resolve().parents[2] / "benchmarks" / "quality_scifact.py")
qs = importlib.util.module_from_spec(spec)
spec.loader.exec_module(qs)


def _row(params, losses, nd, mrr, rec, seeds=(0,)):
    return {"parameters": params, "losses": losses, "mean": {"ndcg@10": nd, "mrr@10": mrr, "recall@100": rec},
            "sd": {"ndcg@10": None, "mrr@10": None, "recall@100": None}, "seeds": list(seeds),
            "share_of_teacher_ndcg": nd / 0.8}


REFERENCE = {"student_zero_shot": {"ndcg@10": 0.60}, "teacher_rerank@20": {"ndcg@10": 0.72},
             "teacher_ensemble_union@20": {"ndcg@10": 0.76}}


def test_targets_compare_each_soft_system_with_the_control_of_its_size():
    table = {"base_label": "kl", "reference": REFERENCE, "systems": {
        "kl": _row(100, {"kl": 1.0, "infonce": 0.1}, 0.66, 0.62, 0.90),
        "hard_label": _row(100, {"infonce": 1.0}, 0.67, 0.63, 0.91),
        "margin_mse": _row(100, {"margin_mse": 1.0, "infonce": 0.1}, 0.68, 0.64, 0.92),
        "small2_kl": _row(50, {"kl": 1.0}, 0.50, 0.45, 0.85),
        "small2_hard_label": _row(50, {"infonce": 1.0}, 0.48, 0.46, 0.84),
        "cnn_kl": _row(10, {"kl": 1.0}, 0.3, 0.3, 0.7)}}  # no control of its size: no line
    lines = qs.targets(table)
    assert lines[0] == "- distilled system: `kl` (the base run's)"
    assert lines[1] == "- distilled nDCG@10 >= 0.74: 0.6600 missed by 0.0800"
    assert lines[6] == "- best teacher nDCG@10 >= 0.75 (`teacher_ensemble_union@20`): 0.7600 met"
    assert "- distilled above hard-label on ndcg@10: 0.6600 vs 0.6700 (-0.0100) missed" in lines
    assert ("- `margin_mse` above `hard_label` on every metric: ndcg@10 +0.0100, mrr@10 +0.0100, "
            "recall@100 +0.0100 met") in lines
    assert ("- `small2_kl` above `small2_hard_label` on every metric: ndcg@10 +0.0200, mrr@10 -0.0100, "
            "recall@100 +0.0100 missed") in lines
    assert not any("cnn_kl" in line for line in lines) and lines[5].endswith("82.5% missed by 12.5%")
    assert len(lines) == 9
    table["selected_on_dev"] = "margin_mse"  # the targets follow the system chosen on dev
    lines = qs.targets(table)
    assert lines[:2] == ["- distilled system: `margin_mse` (selected on the dev split, before looking at test)",
                         "- distilled nDCG@10 >= 0.74: 0.6800 missed by 0.0600"]
    assert "- `kl` above `hard_label` on every metric: ndcg@10 -0.0100, mrr@10 -0.0100, recall@100 -0.0100 missed" \
        in lines and not any(line.startswith("- `margin_mse` above") for line in lines)


def test_each_soft_system_meets_the_control_of_its_label_share_trained_as_long():
    variants = {"hard_label": {}, "labels10_kl": {"training.label_share": 0.1},
                "labels10_hard": {"training.label_share": 0.1},
                "labels10_hard_steps": {"training.label_share": 0.1, "training.epochs": 22},
                "labels30_hard": {"training.label_share": 0.3}}
    table = {"base_label": "kl", "reference": REFERENCE, "variants": variants, "systems": {
        "kl": _row(100, {"kl": 1.0, "infonce": 0.1}, 0.70, 0.66, 0.94),
        "labels10_kl": _row(100, {"kl": 1.0, "infonce": 0.1}, 0.69, 0.66, 0.93),
        "hard_label": _row(100, {"infonce": 1.0}, 0.74, 0.71, 0.94),
        "labels10_hard": _row(100, {"infonce": 1.0}, 0.67, 0.63, 0.92),
        "labels10_hard_steps": _row(100, {"infonce": 1.0}, 0.68, 0.64, 0.92),
        "labels30_hard": _row(100, {"infonce": 1.0}, 0.69, 0.65, 0.94)}}
    lines = qs.soft_vs_hard(table)
    assert lines == [
        "- `kl` above `hard_label` on every metric: ndcg@10 -0.0400, mrr@10 -0.0500, recall@100 +0.0000 missed",
        "- `labels10_kl` above `labels10_hard` on every metric: ndcg@10 +0.0200, mrr@10 +0.0300, recall@100 "
        "+0.0100 met"]


def test_label_budget_curve_targets_results_and_plot(tmp_path):
    systems = {"kl": _row(100, {"kl": 1.0}, 0.70, 0.6, 0.9, seeds=(0, 1, 2)),
               "hard_label": _row(100, {"infonce": 1.0}, 0.72, 0.6, 0.9, seeds=(0, 1, 2)),
               "labels0_kl": _row(100, {"kl": 1.0}, 0.64, 0.6, 0.9), "labels10_kl": _row(100, {"kl": 1.0}, 0.66, 0.6, 0.9),
               "labels10_hard": _row(100, {"infonce": 1.0}, 0.64, 0.6, 0.9)}
    systems["labels10_kl"]["sd"]["ndcg@10"] = 0.01
    table = {"base_label": "kl", "reference": REFERENCE, "systems": systems}
    curve = qs.label_budget(table)
    assert list(curve["kl"]) == [0, 10, 100] and list(curve["hard"]) == [0, 10, 100]
    assert curve["hard"][0]["ndcg@10"] == 0.60 and curve["hard"][100]["ndcg@10"] == 0.72  # zero-shot; the control
    assert curve["kl"][100]["seeds"] == 3 and curve["kl"][10]["sd"] == 0.01
    by = {c["target"]: c for c in qs.checks(table)}
    zero, ten = by["0% labels: teacher-trained >= hard-label + 0.03"], by["10% labels: teacher-trained >= hard-label + 0.03"]
    assert zero["met"] and abs(zero["margin"] - 0.01) < 1e-9  # 0.64 - 0.60 - 0.03
    assert not ten["met"] and abs(ten["margin"] + 0.01) < 1e-9  # 0.66 - 0.64 - 0.03
    res = qs.results(table, "cmd")
    assert res["command"] == "cmd" and res["label_budget"] == curve and len(res["targets"]) >= 4
    qs.plot_budget(curve, tmp_path / "curve.png")
    assert (tmp_path / "curve.png").read_bytes()[:4] == b"\x89PNG"
    assert qs.label_budget({"base_label": "kl", "reference": REFERENCE, "systems": {"kl": systems["kl"]}}) == {}


def test_label_budget_takes_the_recipe_best_on_dev_at_each_share_never_test():
    def dev(row, nd):
        return {**row, "dev_mean": {"ndcg@10": nd}}

    systems = {"kl": _row(100, {"kl": 1.0}, 0.70, 0.6, 0.9), "hard_label": _row(100, {"infonce": 1.0}, 0.72, 0.6, 0.9),
               "mix": _row(100, {"kl": 0.25, "infonce": 1.0}, 0.74, 0.7, 0.9),
               "labels10_kl": dev(_row(100, {"kl": 1.0}, 0.68, 0.6, 0.9), 0.62),  # best on test
               "labels10_kl+hard_label": dev(_row(100, {"kl": 1.0, "infonce": 1.0}, 0.66, 0.6, 0.9), 0.63),  # on dev
               "labels10_hard": _row(100, {"infonce": 1.0}, 0.64, 0.6, 0.9),
               "labels10_hard_steps": _row(100, {"infonce": 1.0}, 0.65, 0.6, 0.9)}  # a hard recipe: not teacher
    table = {"base_label": "kl", "reference": REFERENCE, "systems": systems, "selected_on_dev": "mix"}
    curve = qs.label_budget(table)
    assert curve["kl"][10] == {"system": "labels10_kl+hard_label", "ndcg@10": 0.66, "sd": None, "seeds": 1,
                               "selected_on_dev_from": ["labels10_kl", "labels10_kl+hard_label"]}
    assert curve["hard"][10]["system"] == "labels10_hard" and curve["kl"][100]["system"] == "mix"
    ten = next(c for c in qs.checks(table) if c["target"].startswith("10%"))
    assert ten["system"] == "labels10_kl+hard_label" and ten["control"] == "labels10_hard"
    assert abs(ten["margin"] - (0.66 - 0.64 - 0.03)) < 1e-9
    del systems["labels10_kl+hard_label"]["dev_mean"]  # without dev metrics for every recipe: the default one
    assert qs.label_budget(table)["kl"][10]["system"] == "labels10_kl"


def test_the_hard_label_control_is_chosen_on_dev_among_those_trained_as_long_never_test():
    def dev(row, nd):
        return {**row, "dev_mean": {"ndcg@10": nd}}

    label_free = {"teacher.members": [{"name": "bm25", "kind": "bm25"}], "teacher.fit_weights": False}
    variants = {"hard_label": {"training.losses": {"kl": 0.0, "infonce": 1.0}},
                "labels10_kl": {"training.label_share": 0.1},
                "labels10_hard": {"training.label_share": 0.1},
                "labels10_hard_steps": {"training.label_share": 0.1, "training.epochs": 22},
                # a run with another teacher: a hard-label student never reads it, so it is still a control
                "labels10_hard_lr1e-4": {**label_free, "training.label_share": 0.1, "training.learning_rate": 1e-4}}
    systems = {"kl": _row(100, {"kl": 1.0}, 0.70, 0.6, 0.9), "hard_label": _row(100, {"infonce": 1.0}, 0.72, 0.6, 0.9),
               "labels10_kl": dev(_row(100, {"kl": 1.0}, 0.69, 0.66, 0.93), 0.64),
               "labels10_hard": dev(_row(100, {"infonce": 1.0}, 0.67, 0.63, 0.92), 0.60),  # best on test
               "labels10_hard_steps": dev(_row(100, {"infonce": 1.0}, 0.64, 0.60, 0.90), 0.70),  # trained longer
               "labels10_hard_lr1e-4": dev(_row(100, {"infonce": 1.0}, 0.66, 0.62, 0.92), 0.63)}  # best on dev
    table = {"base_label": "kl", "reference": REFERENCE, "variants": variants, "systems": systems}
    names = ["labels10_hard", "labels10_hard_steps", "labels10_hard_lr1e-4"]
    assert qs.trained_as_long(table, names) == ["labels10_hard", "labels10_hard_lr1e-4"]
    assert qs.pick_control(table, names) == "labels10_hard_lr1e-4"
    curve = qs.label_budget(table)
    assert curve["hard"][10] == {"system": "labels10_hard_lr1e-4", "ndcg@10": 0.66, "sd": None, "seeds": 1,
                                 "selected_on_dev_from": ["labels10_hard", "labels10_hard_lr1e-4"]}
    ten = next(c for c in qs.checks(table) if c["target"].startswith("10%"))
    assert ten["control"] == "labels10_hard_lr1e-4" and abs(ten["margin"] - (0.69 - 0.66 - 0.03)) < 1e-9
    assert ("- `labels10_kl` above `labels10_hard_lr1e-4` on every metric: ndcg@10 +0.0300, mrr@10 +0.0400, "
            "recall@100 +0.0100 met") in qs.soft_vs_hard(table)
    del systems["labels10_hard"]["dev_mean"]  # without dev metrics for every control: the plainest one
    assert qs.pick_control(table, names) == "labels10_hard" and qs.label_budget(table)["hard"][10]["system"] \
        == "labels10_hard"


def test_end_to_end_budget_is_a_series_of_its_own_never_mixed_into_the_curve(tmp_path):
    """A student whose teacher saw no more labels than it did (teacher.label_share, or a label-free
    ensemble) is the kl_e2e series and its own targets; the main curve keeps the teacher of every label."""
    free = [{"name": "minilm", "kind": "dual-encoder", "model": "m", "weight": 0.5},
            {"name": "bm25", "kind": "bm25", "weight": 0.5}]
    variants = {"hard_label": {}, "labels0_kl": {"training.label_share": 0.0},
                "labels10_kl": {"training.label_share": 0.1}, "labels10_hard": {"training.label_share": 0.1},
                "labelfree_kl": {"teacher.members": free, "teacher.fit_weights": False, "training.label_share": 0.0},
                "fitted_kl": {"teacher.members": free, "training.label_share": 0.0},  # weights fitted: not label-free
                "e2e10_kl": {"teacher.label_share": 0.1, "training.label_share": 0.1},
                "labels10_kl_t10": {"teacher.label_share": 0.1, "training.label_share": 0.1},
                "teacher30_kl": {"teacher.label_share": 0.3, "training.label_share": 0.1},  # saw more: neither
                "free10_kl": {"teacher.members": free, "teacher.fit_weights": False,  # saw none: 10% end to end
                              "training.label_share": 0.1}}
    systems = {"kl": _row(100, {"kl": 1.0}, 0.70, 0.6, 0.9), "hard_label": _row(100, {"infonce": 1.0}, 0.72, 0.6, 0.9),
               "labels0_kl": _row(100, {"kl": 1.0}, 0.66, 0.6, 0.9), "labels10_kl": _row(100, {"kl": 1.0}, 0.68, 0.6, 0.9),
               "labels10_hard": _row(100, {"infonce": 1.0}, 0.64, 0.6, 0.9),
               "labelfree_kl": _row(100, {"kl": 1.0}, 0.65, 0.6, 0.9), "fitted_kl": _row(100, {"kl": 1.0}, 0.1, 0.1, 0.1),
               "e2e10_kl": _row(100, {"kl": 1.0}, 0.66, 0.6, 0.9),
               "labels10_kl_t10": _row(100, {"kl": 1.0}, 0.65, 0.6, 0.9),
               "teacher30_kl": _row(100, {"kl": 1.0}, 0.9, 0.9, 0.9),
               "free10_kl": _row(100, {"kl": 1.0}, 0.67, 0.6, 0.9)}
    for name, nd in (("e2e10_kl", 0.61), ("labels10_kl_t10", 0.62), ("free10_kl", 0.60)):
        systems[name]["dev_mean"] = {"ndcg@10": nd}
    table = {"base_label": "kl", "reference": REFERENCE, "systems": systems, "variants": variants}
    assert [qs.teacher_label_share(variants[n]) for n in ("labelfree_kl", "fitted_kl", "e2e10_kl", "hard_label")] \
        == [0.0, 1.0, 0.1, 1.0]
    curve = qs.label_budget(table)
    assert curve["kl"][10]["system"] == "labels10_kl" and curve["kl"][0]["system"] == "labels0_kl"
    assert {p: v["system"] for p, v in curve["kl_e2e"].items()} == {0: "labelfree_kl", 10: "labels10_kl_t10",
                                                                     100: "kl"}  # 10%: the better on dev
    assert curve["kl_e2e"][10]["selected_on_dev_from"] == ["e2e10_kl", "free10_kl", "labels10_kl_t10"]
    by = {c["target"]: c for c in qs.checks(table)}
    e2e0 = by["0% labels end to end (the teacher saw no more labels than the student): teacher-trained >= hard-label + 0.03"]
    e2e10 = by["10% labels end to end (the teacher saw no more labels than the student): teacher-trained >= hard-label + 0.03"]
    assert e2e0["met"] and abs(e2e0["margin"] - (0.65 - 0.60 - 0.03)) < 1e-9
    assert not e2e10["met"] and abs(e2e10["margin"] - (0.65 - 0.64 - 0.03)) < 1e-9
    qs.plot_budget(curve, tmp_path / "curve.png")
    assert (tmp_path / "curve.png").read_bytes()[:4] == b"\x89PNG"


def test_a_sweep_student_in_the_teacher_brings_the_labels_it_trained_on():
    """A round of student -> teacher: a fixed-weight ensemble with a member that is a student of this sweep saw
    the labels that student trained on (its variant's training.label_share; all of them if the variant is
    unknown), so the round-2 student at 10% stays in the 10% end-to-end series and never enters the 0% one."""
    zero_shot = {"name": "mpnet", "kind": "dual-encoder", "model": "/models/all-mpnet-base-v2", "weight": 0.4}
    bm25 = {"name": "bm25", "kind": "bm25", "weight": 0.4}

    def member(path):
        return {"name": "s", "kind": "dual-encoder", "model": path, "weight": 0.2}

    variants = {"labels10_hard": {"training.label_share": 0.1, "training.losses": {"kl": 0.0, "infonce": 1.0}},
                "r2_kl": {"teacher.members": [zero_shot, bm25, member("runs/x/sweep/labels10_hard-seed0/student")],
                          "teacher.fit_weights": False, "training.label_share": 0.1},
                "r2_0_kl": {"teacher.members": [zero_shot, bm25, member("runs/x/sweep/labels10_hard-seed0/student")],
                            "teacher.fit_weights": False, "training.label_share": 0.0},
                "unknown_kl": {"teacher.members": [zero_shot, member("/r/sweep/gone-seed3/student/")],
                               "teacher.fit_weights": False, "training.label_share": 0.1}}
    assert [qs.teacher_label_share(variants[n], variants) for n in ("r2_kl", "r2_0_kl", "unknown_kl")] \
        == [0.1, 0.1, 1.0]
    assert qs.teacher_label_share({"teacher.members": [zero_shot, bm25], "teacher.fit_weights": False}) == 0.0
    systems = {n: _row(100, {"kl": 1.0}, 0.7, 0.6, 0.9) for n in ("r2_kl", "r2_0_kl", "unknown_kl")}
    table = {"base_label": "kl", "reference": REFERENCE, "systems": systems, "variants": variants}
    assert qs._end_to_end(table) == {10: ["r2_kl"]}


def test_outside_evaluation_agrees_with_the_projects(tmp_path):
    """A student saved by the project, evaluated with SentenceTransformer + numpy + ranx on the BEIR files,
    gives the nDCG@10 the project's own exact search and metrics give."""
    from distill.data import read_beir
    from distill.index import build_index
    from distill.metrics import evaluate_run, to_run
    from distill.models import DualEncoder
    from builders import make_beir, make_bow_encoder

    info = make_beir(tmp_path / "data", topics=6, docs_per_topic=5, train_queries=10, test_queries=20)
    DualEncoder(str(make_bow_encoder(tmp_path / "bow", info["vocab"], hidden=64)), max_length=32).save(
        tmp_path / "student")
    outside = qs.outside_ndcg(tmp_path / "student", tmp_path / "data", "test")
    data = read_beir(tmp_path / "data", "corpus.jsonl", "queries.jsonl", ("test",), 0.05)
    enc = DualEncoder.load(tmp_path / "student")
    docids = list(data.corpus)
    qids = list(data.qrels["test"])
    sc, ix = build_index(enc.encode([data.doc_text(d) for d in docids])).search(
        enc.encode([data.queries[q] for q in qids]), 30)
    ours = evaluate_run(data.qrels["test"], to_run(qids, [[docids[j] for j in row] for row in ix], sc))["ndcg@10"]
    assert 0.0 < ours and abs(outside - ours) <= 0.002


def test_add_runs_adds_new_systems_and_seeds_never_overwrites(tmp_path):
    """A sweep continued where its base run trained no student: its finished runs join a committed table,
    selection and targets recomputed, the addition recorded; a seed already there is refused."""
    import json

    import pytest

    from distill.config import build_config
    from distill.manifest import RunDir
    from distill.sweep import plan

    m = lambda x: {"ndcg@10": x, "mrr@10": x, "recall@100": x}  # noqa: E731
    cfg = build_config({"runs_dir": str(tmp_path), "teacher": {"model": "t"}, "student": {"model": "s"},
                        "sweep": {"base_label": "kl", "system_seeds": {"kl": [], "hard_label": [1]}, "variants": {
                            "hard_label": {"training.losses": {"kl": 0.0, "infonce": 1.0}},
                            "mse_bf16": {"training.precision": "bf16", "training.losses": {"kl": 0.0, "margin_mse": 1.0}}}}})
    test, dev = {"hard_label": 0.70, "mse_bf16": 0.75}, {"hard_label": 0.62, "mse_bf16": 0.66}
    for label, seed, vcfg in plan(cfg):
        rd = RunDir(vcfg)
        with rd.atomic_output("evaluate") as tmp:
            (tmp / "report.json").write_text(json.dumps({
                "metrics": {"student_distilled": m(test[label])}, "sizes": {"student_parameters": 100},
                "speed": {"student_query_latency_ms": 4.0}, "dev": {"metrics": {"student_distilled": m(dev[label])}}}))
        rd.mark_done("evaluate", {})
    hard0 = {**_row(100, {"infonce": 1.0}, 0.72, 0.72, 0.72), "per_seed": {"0": m(0.72)}, "latency_ms": [6.0],
             "stage_seconds": {"0": {}}, "shared": {"0": []}, "dev_per_seed": {"0": m(0.64)}}
    kl0 = {**_row(100, {"kl": 1.0, "infonce": 0.1}, 0.68, 0.68, 0.68), "per_seed": {"0": m(0.68)}, "latency_ms": [5.0],
           "stage_seconds": {"0": {}}, "shared": {"0": []}, "dev_per_seed": {"0": m(0.60)}, "dev_mean": m(0.60)}
    table = {"run": "demo", "split": "test", "queries": 3, "rerank_depth": 20, "reference": REFERENCE,
             "teacher": {"parameters": 400, "pairs_per_s": 100.0}, "base_label": "kl", "dev_queries": 7,
             "dev_reference": {}, "variants": {"kl": None, "hard_label": {"training.losses": {"infonce": 1.0}}},
             "systems": {"kl": kl0, "hard_label": hard0}, "selected_on_dev": "kl"}
    committed = {**qs.results(table, "first"), "date": "2026-01-01", "export_check": {"met": True},
                 "partial": {"missing": ["hard_label-seed1", "hard_label-seed2"], "note": "n"}}
    res = qs.add_runs(committed, cfg, "second")
    hard = res["table"]["systems"]["hard_label"]
    assert hard["seeds"] == [0, 1] and hard["mean"]["ndcg@10"] == pytest.approx(0.71)  # a new seed joins its row
    assert hard["latency_ms"] == [6.0, 4.0] and hard["dev_mean"]["ndcg@10"] == pytest.approx(0.63)
    new = res["table"]["systems"]["mse_bf16"]
    assert new["seeds"] == [0] and new["share_of_teacher_ndcg"] == pytest.approx(0.75 / 0.72)
    # a recipe run only in bf16 is a recipe: best on dev, it is selected
    assert res["selected_on_dev"] == "mse_bf16" and res["table"]["selected_on_dev"] == "mse_bf16"
    assert res["command"] == "first" and res["date"] == "2026-01-01" and res["export_check"] == {"met": True}
    assert res["added"][-1]["runs"] == ["hard_label-seed1", "mse_bf16-seed0"] and res["added"][-1]["command"] == "second"
    assert res["partial"] == {"missing": ["hard_label-seed2"], "note": "n"}  # what came in is no longer missing
    assert committed["table"]["systems"]["hard_label"]["seeds"] == [0]  # the input is not changed
    assert committed["partial"]["missing"] == ["hard_label-seed1", "hard_label-seed2"]
    with pytest.raises(SystemExit, match="already in the table"):
        qs.add_runs(res, cfg, "third")
    # a base run given another teacher on the command line: its systems record that teacher
    filed = build_config({"runs_dir": str(tmp_path), "teacher": {"model": "t0"}, "student": {"model": "s"}})
    res = qs.add_runs(committed, cfg, "second", file_cfg=filed)
    assert res["table"]["variants"]["mse_bf16"] == {"teacher.model": "t", "training.precision": "bf16",
                                                    "training.losses": {"kl": 0.0, "margin_mse": 1.0}}
    assert qs.teacher_overrides(cfg, cfg) == {} and qs.teacher_overrides(cfg, None) == {}


def test_teacher_rows_of_another_committed_run_join_the_reference_and_the_best_teacher_target(tmp_path):
    """A teacher some systems learnt from, evaluated by its own run on the same split, joins the reference rows
    under its run's name with its source and users recorded; the best-teacher target is recomputed; a row already
    there, a different split or a system not in the table is refused."""
    import json

    import pytest

    low = {"teacher_rerank@20": {"ndcg@10": 0.70}, "teacher_ensemble_union@20": {"ndcg@10": 0.73}}
    table = {"run": "main", "split": "test", "queries": 300, "reference": {"student_zero_shot": {"ndcg@10": 0.6}, **low},
             "base_label": "kl", "systems": {"kl": _row(100, {"kl": 1.0}, 0.75, 0.7, 0.9),
                                             "t2_kl": _row(100, {"kl": 1.0}, 0.76, 0.7, 0.9)}}
    committed = {**qs.results(table, "first"), "date": "2026-01-01", "export_check": {"met": True}}
    assert committed["targets"][0]["met"] is False and committed["targets"][0]["value"] == 0.73
    other = tmp_path / "teacher2.json"
    other.write_text(json.dumps({"table": {"run": "t2", "split": "test", "queries": 300, "reference": {
        "bm25": {"ndcg@10": 0.66}, "teacher_ensemble_union@20": {"ndcg@10": 0.758}}}}))
    res = qs.add_teacher_rows(committed, [other], ["t2_kl"])
    ref = res["table"]["reference"]
    assert ref["teacher_ensemble_union@20 (t2)"] == {"ndcg@10": 0.758} and "bm25 (t2)" not in ref
    assert ref["teacher_ensemble_union@20"] == {"ndcg@10": 0.73}  # the table's own teacher stays
    assert res["table"]["reference_from"] == {"teacher_ensemble_union@20 (t2)": {"file": "teacher2.json",
                                                                                 "used_by": ["t2_kl"]}}
    best = res["targets"][0]
    assert best["system"] == "teacher_ensemble_union@20 (t2)" and best["met"] is True
    assert best["margin"] == pytest.approx(0.008)
    assert res["added"][-1]["teacher_rows"] == ["teacher_ensemble_union@20 (t2)"]
    assert res["date"] == "2026-01-01" and res["export_check"] == {"met": True}
    assert "teacher_ensemble_union@20 (t2)" not in committed["table"]["reference"]  # the input is not changed
    with pytest.raises(SystemExit, match="already in the table"):
        qs.add_teacher_rows(res, [other], ["t2_kl"])
    with pytest.raises(SystemExit, match="not in the table: nope"):
        qs.add_teacher_rows(committed, [other], ["nope"])
    dev = tmp_path / "dev.json"
    dev.write_text(json.dumps({"table": {"run": "t2", "split": "dev", "queries": 100, "reference": {}}}))
    with pytest.raises(SystemExit, match="not comparable"):
        qs.add_teacher_rows(committed, [dev], ["t2_kl"])


def test_a_table_of_reference_rows_alone_gives_the_teacher_target_only():
    """A run that measured a teacher on its own (no sweep, no student systems) gives results with the best-teacher
    target alone and no curve: what ``--teacher-rows`` reads from it."""
    table = {"run": "lf", "split": "test", "queries": 300, "reference": dict(REFERENCE), "base_label": "kl",
             "systems": {}, "variants": {}}
    res = qs.results(table, "teacher only")
    assert [t["system"] for t in res["targets"]] == ["teacher_ensemble_union@20"]
    assert res["targets"][0]["value"] == 0.76 and res["label_budget"] == {}


def test_the_budget_plot_is_named_after_the_results_file_not_the_run_that_added_to_it():
    assert qs.budget_plot_path(Path("out/scifact-cpu.json")) == Path("out/scifact-cpu_label_budget.png")
