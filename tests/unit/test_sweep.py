"""Sweeps (no Ray): variant configs, which stages a variant shares with its base run, the table; the dev
split carved from the train queries; the mining encoder's digest."""

import json

import pytest

from distill.config import ConfigError, build_config
from distill.data import BeirData, DataError, Rejects, carve_dev
from distill.manifest import RunDir
from distill.sweep import (base_stages, collect, earlier_runs, finished_runs, log_table, plan, precision_checks,
                           render_markdown, share_stages, variant_config)

BASE = {"teacher": {"model": "t"}, "student": {"model": "s", "max_length": 64},
        "training": {"seed": 0, "losses": {"kl": 1.0, "infonce": 0.1}}}
SWEEP = {"seeds": [0, 1], "variants": {
    "hard": {"training.losses": {"infonce": 1.0}},
    "small": {"student.num_layers": 2, "training.learning_rate": 1e-4}}}


def _cfg(tmp_path, **extra):
    return build_config({**BASE, "runs_dir": str(tmp_path), "sweep": SWEEP, **extra})


def _finish(rd, stage, report=None):
    with rd.atomic_output(stage) as tmp:
        (tmp / "out").write_text(rd.config.name)
        if report is not None:
            (tmp / "report.json").write_text(json.dumps(report))
    rd.mark_done(stage, {"n": 1})


def test_plan_variant_overrides_replace_sections_and_pin_the_mining_encoder(tmp_path):
    cfg = _cfg(tmp_path)
    runs = plan(cfg)
    assert [(label, seed, c is None) for label, seed, c in runs] == [
        ("distilled", 0, True), ("distilled", 1, False), ("hard", 0, False), ("hard", 1, False),
        ("small", 0, False), ("small", 1, False)]
    hard = runs[2][2]
    assert hard.training.losses.infonce == 1.0 and hard.training.losses.kl == 1.0  # section replaced: kl default
    assert hard.run_dir == tmp_path / "demo" / "sweep" / "hard-seed0" and hard.sweep.variants == {}
    assert hard.mining.encoder is None  # student unchanged: mines with it anyway
    small = runs[5][2]
    assert small.student.num_layers == 2 and small.training.seed == 1
    assert small.mining.encoder == cfg.student  # the base's student mines, so candidates and scores are shared


def test_named_systems_take_their_own_seeds(tmp_path):
    cfg = build_config({**BASE, "runs_dir": str(tmp_path), "sweep": {**SWEEP, "seeds": [], "system_seeds": {
        "distilled": [0, 1, 2], "hard": [0, 1, 2]}}})
    assert [(label, seed) for label, seed, _ in plan(cfg)] == [
        ("distilled", 0), ("distilled", 1), ("distilled", 2), ("hard", 0), ("hard", 1), ("hard", 2), ("small", 0)]
    for bad, match in (({"nope": [1]}, "neither the base label"), ({"hard": [1, 1]}, "repeat"),
                       ({"hard": []}, "empty")):
        with pytest.raises(ConfigError, match=match):
            build_config({**BASE, "sweep": {**SWEEP, "system_seeds": bad}})
    assert base_stages(cfg) is None  # the base run is a system: it runs every stage


def test_a_base_run_with_no_seeds_trains_nothing_and_its_systems_follow(tmp_path):
    cfg = build_config({**BASE, "runs_dir": str(tmp_path), "sweep": {**SWEEP, "system_seeds": {"distilled": []}}})
    assert [(label, seed, c is None) for label, seed, c in plan(cfg)] == [
        ("hard", 0, False), ("hard", 1, False), ("small", 0, False), ("small", 1, False)]
    assert base_stages(cfg) == ["teacher", "mine", "score"]  # what its systems share


def test_variant_that_breaks_the_config_names_itself(tmp_path):
    cfg = build_config({**BASE, "runs_dir": str(tmp_path)})
    with pytest.raises(ConfigError, match="sweep variant 'bad'.*training.lerning_rate"):
        variant_config(cfg, "bad", 0, {"training.lerning_rate": 1e-3})
    for bad in ({"variants": {"a/b": {}}}, {"variants": {"x": {"sweep.seeds": [1]}}}, {"seeds": [1, 1]},
                {"variants": {"distilled": {}}}):
        with pytest.raises(ConfigError):
            build_config({**BASE, "sweep": bad})


def test_variants_share_the_stages_whose_inputs_are_the_same(tmp_path):
    cfg = _cfg(tmp_path)
    base = RunDir(cfg)
    for stage in ("teacher", "mine", "score", "train"):
        _finish(base, stage)
    runs = {(label, seed): c for label, seed, c in plan(cfg)}
    seed1 = RunDir(runs[("distilled", 1)])
    assert list(share_stages(base, seed1)) == ["teacher", "mine", "score"]  # training.seed differs
    assert seed1.stage_path("score").is_symlink() and (seed1.stage_path("score") / "out").read_text() == "demo"
    assert seed1.stages["score"]["shared_from"] == str(base.path) and seed1.is_done("score")
    assert not seed1.is_done("train")
    small = RunDir(runs[("small", 0)])
    assert list(share_stages(base, small)) == ["teacher", "mine", "score"]  # student changed, mining encoder pinned
    unpinned = RunDir(variant_config(cfg, "other", 0, {"student.num_layers": 2, "mining.depth": 5}))
    assert list(share_stages(base, unpinned)) == ["teacher"]  # mining changed: candidates are its own
    teacher = RunDir(variant_config(cfg, "teacher", 0, {"teacher.max_length": 64}))
    assert list(share_stages(base, teacher)) == ["mine"]  # mining does not read the teacher; scoring does
    # a variant's own stage replaces the link (not the base's output), and sharing is idempotent
    _finish(seed1, "train")
    assert list(share_stages(base, seed1)) == ["teacher", "mine", "score"]
    _finish(seed1, "score")
    assert not seed1.stage_path("score").is_symlink() and (base.stage_path("score") / "out").read_text() == "demo"


def test_a_variant_shares_an_earlier_variants_stage_and_links_its_owner(tmp_path):
    cfg = _cfg(tmp_path)
    base = RunDir(cfg)
    for stage in ("teacher", "mine", "score", "train"):
        _finish(base, stage)
    rescore = {"scoring.batch_size": 7}  # as two variants that both need the teacher's layer scores
    first = RunDir(variant_config(cfg, "a", 0, {**rescore, "training.losses": {"kl": 1.0, "mse": 1.0}}))
    assert share_stages([base], first) == {"teacher": str(base.path), "mine": str(base.path)}
    _finish(first, "score")  # the first variant that needs the new scores computes them
    second = RunDir(variant_config(cfg, "b", 0, {**rescore, "training.losses": {"mse": 1.0, "kl": 0.0}}))
    assert share_stages([base, first], second) == {"teacher": str(base.path), "mine": str(base.path),
                                                   "score": str(first.path)}
    third = RunDir(variant_config(cfg, "b", 1, {**rescore, "training.losses": {"mse": 1.0, "kl": 0.0}}))
    shared = share_stages([base, second, first], third)  # second's score is itself a link: owner is first
    assert shared["score"] == str(first.path) and third.stages["score"]["shared_from"] == str(first.path)
    assert (third.stage_path("score") / "out").read_text() == first.config.name
    assert third.stage_path("score").resolve() == first.stage_path("score").resolve()
    assert not second.is_done("train") and list(share_stages([base], third)) == ["teacher", "mine", "score"]


def test_an_earlier_sittings_run_is_a_donor(tmp_path):
    cfg = _cfg(tmp_path)
    base = RunDir(cfg)
    for stage in ("teacher", "mine", "train"):
        _finish(base, stage)
    rescore = {"scoring.batch_size": 7}
    first = RunDir(variant_config(cfg, "a", 0, rescore))  # an earlier sitting scored with new settings
    assert share_stages([base], first) == {"teacher": str(base.path), "mine": str(base.path)}
    _finish(first, "score")
    # a broken directory and one without a manifest are skipped, not fatal
    (base.path / "sweep" / "junk").mkdir()
    (base.path / "sweep" / "junk" / "manifest.json").write_text("{not json")
    (base.path / "sweep" / "empty").mkdir()
    found = earlier_runs(base)
    assert [r.path for r in found] == [first.path] and found[0].is_done("score")
    later = RunDir(variant_config(cfg, "a", 1, rescore))  # a later sitting's command names only seed 1
    assert share_stages([base, *found], later)["score"] == str(first.path)
    assert (later.stage_path("score") / "out").read_text() == first.config.name
    assert earlier_runs(RunDir(_cfg(tmp_path / "none"))) == []  # no sweep directory yet


def test_mining_encoder_digest_unset_equals_set_to_the_student(tmp_path):
    a = RunDir(build_config({**BASE, "runs_dir": str(tmp_path)}))
    b = RunDir(build_config({**BASE, "runs_dir": str(tmp_path / "b"), "mining": {"encoder": BASE["student"]}}))
    assert a.digest("mine") == b.digest("mine") and a.digest("train") == b.digest("train")
    c = RunDir(build_config({**BASE, "runs_dir": str(tmp_path / "c"), "student": {"model": "s2"}}))
    assert c.digest("mine") != a.digest("mine")  # unset: mining follows the student
    with pytest.raises(ConfigError, match="rounds > 1"):
        build_config({**BASE, "rounds": 2, "mining": {"encoder": {"model": "x"}}})


def test_table_means_and_sample_sd_over_seeds_and_share_of_teacher(tmp_path):
    cfg = build_config({**BASE, "runs_dir": str(tmp_path), "sweep": {"seeds": [0, 1], "variants": {"hard": {
        "training.losses": {"infonce": 1.0}}}}})
    m = lambda x: {"ndcg@10": x, "mrr@10": x, "recall@100": x}  # noqa: E731
    base = RunDir(cfg)
    _finish(base, "evaluate", {"split": "test", "queries": 3, "rerank_depth": 10, "metrics": {
        "bm25": m(0.3), "student_zero_shot": m(0.4), "teacher_rerank@10": m(0.8), "student_distilled": m(0.6)},
        "sizes": {"teacher_parameters": 400, "student_parameters": 100},
        "speed": {"teacher_pairs_per_s": 50.0, "student_query_latency_ms": 4.0}})
    runs = [("distilled", 0, base)]
    for label, seed, vcfg in plan(cfg)[1:]:
        rd = RunDir(vcfg)
        _finish(rd, "evaluate", {"metrics": {"student_distilled": m({("distilled", 1): 0.8, ("hard", 0): 0.5,
                                                                    ("hard", 1): 0.5}[(label, seed)])},
                                 "sizes": {"student_parameters": 100}, "speed": {"student_query_latency_ms": 6.0}})
        runs.append((label, seed, rd))
    table = collect(cfg, base, runs)
    d = table["systems"]["distilled"]
    assert d["seeds"] == [0, 1] and d["mean"]["ndcg@10"] == pytest.approx(0.7)
    assert d["sd"]["ndcg@10"] == pytest.approx(0.1414, abs=1e-4)  # sample sd of 0.6, 0.8
    assert d["share_of_teacher_ndcg"] == pytest.approx(0.875) and d["query_latency_ms"] == 5.0
    assert table["systems"]["hard"]["sd"]["mrr@10"] == 0.0 and d["teacher_to_student_size"] == 4.0
    assert table["teacher"]["rerank_ms_per_query"] == pytest.approx(200.0)
    assert set(table["reference"]) == {"bm25", "student_zero_shot", "teacher_rerank@10"}
    md = render_markdown(table)
    assert "| distilled | 2 | 0.7000 ± 0.1414 |" in md and "| 87.5% |" in md and "200 (rerank)" in md
    # the resolved loss weights show what a replaced losses section means (kl keeps its default 1.0)
    assert "- `distilled`: base run; losses kl 1, infonce 0.1\n" in md
    assert '- `hard`: `training.losses: {"infonce": 1.0}`; losses kl 1, infonce 1\n' in md
    if log_table(table, tmp_path / "tb"):  # the table as TensorBoard scalars (when tensorboard is installed)
        from distill.tracking import read_scalars

        assert [v for _, v in read_scalars(tmp_path / "tb")["sweep/ndcg@10"]][-2:] == [pytest.approx(0.7), 0.5]


def test_finished_runs_lists_the_evaluated_runs_and_names_the_rest(tmp_path):
    cfg = _cfg(tmp_path)  # base seed 0, then distilled seed 1, hard 0/1, small 0/1
    base = RunDir(cfg)
    assert finished_runs(cfg, base) == ([], ["distilled-seed0", "distilled-seed1", "hard-seed0", "hard-seed1",
                                             "small-seed0", "small-seed1"])
    _finish(base, "evaluate")
    runs = {(label, seed): vcfg for label, seed, vcfg in plan(cfg)}
    _finish(RunDir(runs[("hard", 1)]), "evaluate")
    _finish(RunDir(runs[("small", 0)]), "train")  # trained, not evaluated: still missing
    done, missing = finished_runs(cfg, base)
    assert [(label, seed) for label, seed, _ in done] == [("distilled", 0), ("hard", 1)]
    assert done[0][2] is base and done[1][2].config.name == runs[("hard", 1)].name
    assert missing == ["distilled-seed1", "hard-seed0", "small-seed0", "small-seed1"]


def test_dev_metrics_choose_the_distilled_system_without_the_test_split(tmp_path):
    cfg = build_config({**BASE, "runs_dir": str(tmp_path), "sweep": {"seeds": [0], "variants": {
        "hard": {"training.losses": {"kl": 0.0, "infonce": 1.0}},
        "mmse": {"training.losses": {"kl": 0.0, "margin_mse": 1.0}},
        "small": {"student.num_layers": 1},
        "mmse_bf16": {"training.precision": "bf16", "training.losses": {"kl": 0.0, "margin_mse": 1.0}}}}})
    assert precision_checks(cfg.sweep.variants) == {"mmse_bf16"}
    # a recipe run only in bf16 is a recipe; a bf16 copy of the base run (no other override) is a check
    assert precision_checks({"a": {"training.precision": "bf16", "training.losses": {"kl": 0.5}},
                             "b": {"training.precision": "bf16"}}) == {"b"}
    m = lambda x: {"ndcg@10": x, "mrr@10": x, "recall@100": x}  # noqa: E731
    test = {"distilled": 0.6, "hard": 0.7, "mmse": 0.65, "small": 0.5, "mmse_bf16": 0.66}
    # the best dev systems are not eligible: no teacher signal, another size, a precision check of a recipe
    dev = {"distilled": 0.50, "hard": 0.9, "mmse": 0.55, "small": 0.8, "mmse_bf16": 0.95}
    runs = []
    for label, seed, vcfg in plan(cfg):
        rd = RunDir(vcfg or cfg)
        rep = {"metrics": {"student_distilled": m(test[label])}, "dev": {"queries": 7, "metrics": {
            "student_distilled": m(dev[label])}}, "sizes": {"student_parameters": 50 if label == "small" else 100},
            "speed": {"student_query_latency_ms": 5.0}}
        if vcfg is None:
            rep.update({"split": "test", "queries": 3, "rerank_depth": 10, "speed": {"teacher_pairs_per_s": 50.0,
                        "student_query_latency_ms": 5.0}, "sizes": {"teacher_parameters": 400, "student_parameters": 100}})
            rep["metrics"].update({"bm25": m(0.3), "student_zero_shot": m(0.4), "teacher_rerank@10": m(0.8)})
            rep["dev"]["metrics"]["student_zero_shot"] = m(0.45)
        _finish(rd, "evaluate", rep)
        runs.append((label, seed, rd))
    table = collect(cfg, runs[0][2], runs)
    assert table["selected_on_dev"] == "mmse" and table["dev_queries"] == 7
    assert table["systems"]["hard"]["dev_mean"]["ndcg@10"] == 0.9
    md = render_markdown(table)
    assert "| student_zero_shot | | 0.4000 | 0.4000 | 0.4000 |  |  | | 0.4500 |" in md
    assert "| mmse | 1 | 0.6500 | 0.6500 | 0.6500 | 100 | 5.0 | 81.2% | 0.5500 |" in md
    assert "Selected on dev" in md and "`mmse`." in md
    no_dev = json.dumps({"metrics": {"student_distilled": m(0.7)}, "sizes": {"student_parameters": 100},
                         "speed": {"student_query_latency_ms": 5.0}})
    assert [label for label, _, _ in runs] == ["distilled", "hard", "mmse", "small", "mmse_bf16"]
    (runs[1][2].stage_path("evaluate") / "report.json").write_text(no_dev)
    assert collect(cfg, runs[0][2], runs)["selected_on_dev"] == "mmse"  # hard is not a teacher-signal system
    (runs[2][2].stage_path("evaluate") / "report.json").write_text(no_dev)
    assert collect(cfg, runs[0][2], runs)["selected_on_dev"] is None  # a candidate without dev metrics


def _data(n):
    qrels = {"train": {f"q{i}": {"d": 1} for i in range(n)}, "test": {"t": {"d": 1}}}
    return BeirData({"d": ("", "x")}, {}, qrels, Rejects(), {"qrels/train": n, "qrels/test": 1})


def test_dev_split_is_carved_from_train_deterministically():
    a, b, c = _data(20), _data(20), _data(20)
    dev = carve_dev(a, "train", 5, seed=13)
    assert dev == carve_dev(b, "train", 5, seed=13) and dev != carve_dev(c, "train", 5, seed=14)
    assert len(a.qrels["dev"]) == 5 and len(a.qrels["train"]) == 15 and not set(dev) & set(a.qrels["train"])
    assert a.qrels["test"] == {"t": {"d": 1}} and a.row_counts["qrels/dev"] == 5 and a.row_counts["qrels/train"] == 15
    with pytest.raises(DataError, match="leaves no training queries"):
        carve_dev(_data(3), "train", 3, seed=0)
    with pytest.raises(ConfigError, match="dev_queries"):
        build_config({**BASE, "data": {"train_split": "dev", "dev_queries": 5}})
    assert build_config({**BASE, "data": {"test_split": "dev"}}).data.dev_queries is None  # a dev.tsv of its own
    assert build_config({**BASE, "data": {"test_split": "dev", "dev_queries": 5}}).data.dev_queries == 5


def test_load_data_holds_dev_queries_out_of_training(tmp_path):
    from distill.pipeline import load_data
    from builders import make_beir

    make_beir(tmp_path / "data", topics=4, docs_per_topic=5, train_queries=20, test_queries=10)
    cfg = build_config({**BASE, "runs_dir": str(tmp_path / "runs"),
                        "data": {"dir": str(tmp_path / "data"), "dev_queries": 6, "test_split": "dev"}})
    data = load_data(RunDir(cfg))
    assert len(data.qrels["train"]) == 14 and len(data.qrels["dev"]) == 6 and "test" not in data.qrels
    assert data.row_counts["qrels/train"] + data.row_counts["qrels/dev"] == 20
    again = load_data(RunDir(build_config({**BASE, "runs_dir": str(tmp_path / "r2"),
                                           "data": {"dir": str(tmp_path / "data"), "dev_queries": 6}})))
    assert again.qrels["dev"] == data.qrels["dev"] and len(again.qrels["test"]) == 10  # same held-out queries
