"""Sweeps: several students trained on one run's teacher, candidates and teacher scores (``sweep:``).

A run config's ``sweep`` names variants, each ``{dotted.key: value}`` overrides of the run's config (a
dict value replaces the whole section and its unset keys take their defaults, so hard labels alone are
``training.losses: {kl: 0.0, infonce: 1.0}``: ``kl`` defaults to 1.0), and
the training seeds (``system_seeds`` gives named systems their own). After the run's own pipeline, every (system, seed) is a run of its own under
``runs/<name>/sweep/<system>-seed<s>/`` (the run itself is system ``base_label`` at ``training.seed``):

- each stage whose config digest equals the base run's, or an earlier sweep run's (this sitting's, then any
  already under ``sweep/`` from an earlier one), is *shared*: a relative
  symlink to the output of the run that computed it and a manifest entry ``shared_from`` naming that run;
  a stage that differs runs, and so does every stage that reads it (a variant of ``training`` shares teacher,
  mine and score: the expensive teacher work is done once; a variant of ``teacher`` shares mine, which does
  not read the teacher; two variants that both need the teacher's layer scores compute them once);
- a variant that changes ``student`` mines with the base run's student (``mining.encoder`` pinned), so a
  small student learns from the same candidates and scores;
- each run's ``evaluate`` scores only its own student (distill.stages.evaluate.evaluate_student).

``runs/<name>/sweep/table.json`` and ``table.md`` hold every system's metrics (mean and sample standard
deviation over seeds), parameters and one-query encode latency beside the teacher's, and the base run's
BM25, zero-shot and teacher-rerank rows.
"""

from __future__ import annotations

import json
import os
import statistics
from pathlib import Path

from distill import layout, pipeline
from distill.atomic import write_text_atomic
from distill.config import ConfigError, RunConfig, build_config, set_dotted
from distill.manifest import STAGES, RunDir
from distill.metrics import METRICS, metric_cells, table_head

SWEEP_DIR = layout.SWEEP_DIR


def variant_config(cfg: RunConfig, label: str, seed: int, overrides: dict) -> RunConfig:
    """The config of system ``label`` at training seed ``seed``: the run's config plus ``overrides``."""
    tree = cfg.model_dump(mode="json")
    tree.pop("sweep")
    tree.update(name=f"{label}-seed{seed}", runs_dir=str(cfg.run_dir / SWEEP_DIR))
    for key, value in overrides.items():
        try:
            set_dotted(tree, key, json.loads(json.dumps(value)))
        except ConfigError as err:
            raise ConfigError(f"sweep override {key!r}: {err}") from None
    tree["training"]["seed"] = seed
    if tree["student"] != cfg.student.model_dump(mode="json") and not any(k.split(".")[0] == "mining" for k in overrides):
        tree["mining"]["encoder"] = cfg.mining_encoder.model_dump(mode="json")  # share the base's candidates
    try:
        return build_config(tree)
    except ConfigError as err:
        raise ConfigError(f"sweep variant {label!r}: {err}") from None


def plan(cfg: RunConfig) -> list[tuple[str, int, RunConfig | None]]:
    """(system, seed, config) for every run of the sweep; config None is the base run itself."""
    seeds = cfg.sweep.seeds or [cfg.training.seed]
    out: list[tuple[str, int, RunConfig | None]] = []
    for label, overrides in [(cfg.sweep.base_label, {}), *cfg.sweep.variants.items()]:
        for s in cfg.sweep.system_seeds.get(label, seeds):
            base_itself = label == cfg.sweep.base_label and s == cfg.training.seed
            out.append((label, s, None if base_itself else variant_config(cfg, label, s, overrides)))
    return out


def share_stages(donors: RunDir | list[RunDir], rd: RunDir) -> dict[str, str]:
    """Link every stage of ``rd`` whose digest equals a finished donor's (the base run first, then earlier
    sweep runs; never ``evaluate``, which scores each run's own student). Digests are cumulative over the
    stages a stage reads (distill.manifest.upstream), so an equal digest means the same inputs all the way
    up: a teacher variant shares ``mine`` but not ``score``. The link points at the run that computed the
    output; returns {stage: that run's path}."""
    donors = [donors] if isinstance(donors, RunDir) else list(donors)
    shared: dict[str, str] = {}
    for stage in STAGES[:-1]:
        if stage not in rd.config.stages:
            continue
        if rd.is_done(stage) and rd.stages[stage].get("shared_from"):
            shared[stage] = rd.stages[stage]["shared_from"]
            continue
        donor = next((d for d in donors if d.is_done(stage) and d.digest(stage) == rd.digest(stage)), None)
        if donor is None:
            continue  # computed by this run; a later stage that does not read it may still be shared
        owner = donor.stages[stage].get("shared_from") or str(donor.path)
        src, dst = Path(os.path.realpath(donor.stage_path(stage))), rd.stage_path(stage)
        if dst.is_symlink() or dst.is_file():
            dst.unlink()
        elif dst.exists():
            import shutil

            shutil.rmtree(dst)
        dst.symlink_to(os.path.relpath(src, os.path.realpath(dst.parent)), target_is_directory=True)
        rd.stages[stage] = {**donor.stages[stage], "output": dst.name, "shared_from": owner}
        rd.save()
        shared[stage] = owner
    return shared


def base_stages(cfg: RunConfig) -> list[str] | None:
    """The stages the base run itself runs: all (None) where it is one of the sweep's systems, else (its
    ``sweep.system_seeds`` entry empty) only those before ``train``, which its systems share."""
    if any(vcfg is None for _, _, vcfg in plan(cfg)):
        return None
    return [s for s in STAGES[:STAGES.index("train")] if s in cfg.stages]


def wants_sweep(cfg: RunConfig, only: list[str] | None = None) -> bool:
    """Whether a run of ``cfg`` is followed by its sweep: a whole-pipeline run with variants or seeds that
    evaluates."""
    return only is None and bool(cfg.sweep.variants or cfg.sweep.seeds) and "evaluate" in cfg.stages


def run_with_sweep(cfg: RunConfig, only: list[str] | None = None, force: bool = False, log=print) -> RunDir:
    """The run's pipeline (distill.pipeline), then, for a whole-pipeline run of a config with a sweep, every
    sweep run and the table; the base run's directory stays locked, and its ``run.log`` records, throughout."""
    if not wants_sweep(cfg, only):
        return pipeline.run_pipeline(cfg, only=only, force=force, log=log)
    rd = RunDir(cfg)
    log = pipeline.logged(log)
    with pipeline.holding(rd, log, only, force):
        data = pipeline.load_logged(rd, log)
        pipeline.run_stages(rd, data, base_stages(cfg), force, log)
        run_sweep(cfg, rd, data, force=force, log=log)
        if rd.is_done("evaluate"):
            log(f"[sweep] table in {rd.path / SWEEP_DIR / 'table.md'}")
        else:
            log("[sweep] the base run trained no student, so no reference rows: add the sweep's runs to a "
                "committed table with `benchmarks/quality_scifact.py --add-to`")
    return rd


def earlier_runs(base: RunDir) -> list[RunDir]:
    """The runs already under ``runs/<name>/sweep/`` (from earlier sittings, whatever systems their command
    named), each opened from the config its manifest records, in name order: donors for
    :func:`share_stages`, which trusts a stage only where its digest, recomputed, still matches. A directory
    whose manifest or config no longer reads is skipped."""
    from distill.atomic import RunDirError

    root, out = base.path / SWEEP_DIR, []
    for d in sorted(p for p in root.iterdir() if (p / layout.MANIFEST).is_file()) if root.is_dir() else []:
        try:
            rd = RunDir(build_config(json.loads((d / layout.MANIFEST).read_text())["config"]))
        except (OSError, ValueError, KeyError, TypeError, ConfigError, RunDirError):
            continue
        if rd.path == d.resolve():
            out.append(rd)
    return out


def run_variant(vcfg: RunConfig, base: RunDir, donors: list[RunDir], data, force: bool = False,
                log=print) -> RunDir:
    """One sweep run: the base run's loaded ``data`` and input checksums, every stage a donor (never
    the run itself) finished with the same digest shared (:func:`share_stages`), the rest run by the pipeline."""
    rd = RunDir(vcfg)
    log = pipeline.logged(log)
    with pipeline.holding(rd, log, None, force, announce=False):
        rd.manifest["data"] = base.manifest.get("data")
        rd.manifest["inputs"] = base.manifest.get("inputs")
        rd.shared_with = base
        shared = share_stages([d for d in donors if d.path != rd.path] or [base], rd)
        for owner in dict.fromkeys(shared.values()):
            log(f"[sweep] shares {', '.join(s for s, o in shared.items() if o == owner)} with {owner}")
        pipeline.run_stages(rd, data, None, force, log)
    return rd


def run_sweep(cfg: RunConfig, base: RunDir, data, force: bool = False, log=print) -> dict:
    """Train and evaluate every variant run of ``cfg.sweep``; write and return the table ({} where the base run
    was not evaluated: :func:`base_stages`)."""
    runs: list[tuple[str, int, RunDir]] = []
    earlier = earlier_runs(base)  # donors from earlier sittings, after this sitting's own runs
    for label, seed, vcfg in plan(cfg):
        if vcfg is None:
            runs.append((label, seed, base))
            continue
        log(f"[sweep] {label} seed {seed}: {vcfg.run_dir}")
        now = [r for _, _, r in runs if r is not base]
        donors = [base, *now, *(e for e in earlier if all(e.path != r.path for r in now))]
        rd = run_variant(vcfg, base, donors, data, force=force,
                         log=lambda m, p=f"{label}-seed{seed}": log(f"  {p} {m}"))
        runs.append((label, seed, rd))
    if not base.is_done("evaluate"):  # a base run that trains no student (base_stages): no reference rows
        return {}
    table = collect(cfg, base, runs)
    write_table(table, base.path / SWEEP_DIR)
    return table


def finished_runs(cfg: RunConfig, base: RunDir) -> tuple[list[tuple[str, int, RunDir]], list[str]]:
    """The runs of ``cfg``'s sweep whose ``evaluate`` is finished (with the digest it has now), in plan order,
    and the ``system-seed<s>`` names of the others: a table of a sweep that takes several sittings."""
    done, missing = [], []
    for label, seed, vcfg in plan(cfg):
        rd = base if vcfg is None else RunDir(vcfg)
        (done.append((label, seed, rd)) if rd.is_done("evaluate") else missing.append(f"{label}-seed{seed}"))
    return done, missing


def _mean_sd(values: list[float]) -> tuple[float, float | None]:
    return statistics.fmean(values), (statistics.stdev(values) if len(values) > 1 else None)


def collect(cfg: RunConfig, base: RunDir | None, runs: list[tuple[str, int, RunDir]],
            base_report: dict | None = None) -> dict:
    """The sweep table as data: reference rows from the base run's report (``base_report``, else the base run's
    ``evaluate`` output), one row per system."""
    if base_report is None:
        base_report = json.loads((base.stage_path("evaluate") / "report.json").read_text())
    reference = {k: v for k, v in base_report["metrics"].items() if k != "student_distilled"}
    sp, sizes = base_report["speed"], base_report["sizes"]
    teacher = {"parameters": sizes["teacher_parameters"]}
    if "teacher_pairs_per_s" in sp:  # a cross-encoder or reader: one query costs rerank_depth pair scores
        teacher["pairs_per_s"] = sp["teacher_pairs_per_s"]
        teacher["rerank_ms_per_query"] = 1000 * base_report["rerank_depth"] / sp["teacher_pairs_per_s"]
    if "teacher_query_latency_ms" in sp:
        teacher["query_latency_ms"] = sp["teacher_query_latency_ms"]
    systems: dict[str, dict] = {}
    for label, seed, rd in runs:
        rep = json.loads((rd.stage_path("evaluate") / "report.json").read_text())
        row = systems.setdefault(label, {"seeds": [], "per_seed": {}, "parameters": None, "latency_ms": [],
                                         "stage_seconds": {}, "shared": {}})
        row["seeds"].append(seed)
        row["per_seed"][str(seed)] = rep["metrics"]["student_distilled"]
        row["parameters"] = rep["sizes"]["student_parameters"]
        row["latency_ms"].append(rep["speed"]["student_query_latency_ms"])
        row["stage_seconds"][str(seed)] = {s: e.get("seconds") for s, e in rd.stages.items()
                                           if not e.get("shared_from")}
        row["shared"][str(seed)] = [s for s, e in rd.stages.items() if e.get("shared_from")]
        row["losses"] = {k: v for k, v in rd.config.training.losses.model_dump().items() if v}
        if rep.get("dev"):
            row.setdefault("dev_per_seed", {})[str(seed)] = rep["dev"]["metrics"]["student_distilled"]
    for row in systems.values():
        summarise(row, reference, teacher)
    base_dev = base_report.get("dev") or {}
    return {"run": cfg.name, "split": base_report["split"], "queries": base_report["queries"],
            "rerank_depth": base_report["rerank_depth"], "reference": reference, "teacher": teacher,
            "systems": systems, "variants": cfg.sweep.variants, "base_label": cfg.sweep.base_label,
            "dev_queries": base_dev.get("queries"), "dev_reference": base_dev.get("metrics", {}),
            "selected_on_dev": select_on_dev(systems, cfg.sweep.base_label, precision_checks(cfg.sweep.variants))}


def summarise(row: dict, reference: dict, teacher: dict) -> dict:
    """A system row's figures over its seeds (``per_seed``, ``latency_ms``, ``dev_per_seed``): mean and sample
    sd per metric, median query latency, share of the teacher-rerank row's nDCG@10, teacher-to-student size,
    the dev mean where every seed has dev metrics."""
    per = list(row["per_seed"].values())
    row["mean"] = {m: _mean_sd([p[m] for p in per])[0] for m in METRICS}
    row["sd"] = {m: _mean_sd([p[m] for p in per])[1] for m in METRICS}
    row["query_latency_ms"] = statistics.median(row["latency_ms"])
    rerank_key = next((k for k in reference if k.startswith("teacher_rerank")), None)
    if rerank_key:
        row["share_of_teacher_ndcg"] = row["mean"]["ndcg@10"] / reference[rerank_key]["ndcg@10"]
    row["teacher_to_student_size"] = teacher["parameters"] / row["parameters"]
    dev = row.get("dev_per_seed", {})
    if dev and len(dev) == len(row["per_seed"]):
        row["dev_mean"] = {m: statistics.fmean(p[m] for p in dev.values()) for m in METRICS}
    return row


SOFT_LOSSES = {"kl", "margin_mse", "mse", "embedding", "lead"}


def precision_checks(variants: dict) -> set[str]:
    """Variants that differ from another system of the sweep (another variant, or the base run: no overrides)
    only in ``training.precision``: they check how a recipe is computed against that recipe's own seeds, not
    what it learns, and are not candidates for selection. A recipe run only at one precision is a recipe."""
    recipes = [{}] + [over for over in variants.values() if "training.precision" not in over]
    return {n for n, over in variants.items() if "training.precision" in over
            and {k: v for k, v in over.items() if k != "training.precision"} in recipes}


def select_on_dev(systems: dict, base_label: str, exclude: set[str] = frozenset()) -> str | None:
    """The distilled system a user would ship, chosen without the test split: among the systems of the base
    system's size trained on a teacher signal (a loss in SOFT_LOSSES), except ``exclude``, the best mean dev
    nDCG@10 (first on ties); None unless every one of them has dev metrics."""
    if base_label not in systems:  # the base run trained no student (base_stages)
        return None
    size = systems[base_label]["parameters"]
    pool = [(n, r) for n, r in systems.items() if r["parameters"] == size and n not in exclude
            and SOFT_LOSSES & set(r.get("losses", {}))]
    if not pool or any("dev_mean" not in r for _, r in pool):
        return None
    return max(pool, key=lambda nr: nr[1]["dev_mean"]["ndcg@10"])[0]


def render_markdown(table: dict) -> str:
    n = {len(r["seeds"]) for r in table["systems"].values()}
    dev_col = any("dev_mean" in r for r in table["systems"].values())
    lines = [f"# Sweep: run `{table['run']}`, split `{table['split']}` ({table['queries']} queries)", "",
             *table_head(["system", "seeds", *METRICS, "parameters", "query ms", "% of teacher nDCG@10"]
                         + (["dev nDCG@10"] if dev_col else []))]
    dev_ref = table.get("dev_reference", {})
    t = table["teacher"]
    for name, m in table["reference"].items():
        params = f"{t['parameters']:,}" if name.startswith("teacher") else ""
        ms = f"{t['rerank_ms_per_query']:.0f} (rerank)" if name.startswith("teacher_rerank") and "rerank_ms_per_query" in t \
            else (f"{t['query_latency_ms']:.1f}" if name.startswith("teacher_retrieval") and "query_latency_ms" in t else "")
        dev = (f" {dev_ref[name]['ndcg@10']:.4f} |" if name in dev_ref else " |") if dev_col else ""
        lines.append(f"| {name} | | " + " | ".join(metric_cells(m)) + f" | {params} | {ms} | |" + dev)
    for name, r in table["systems"].items():
        cells = [f"{r['mean'][k]:.4f}" + (f" ± {r['sd'][k]:.4f}" if r["sd"][k] is not None else "") for k in METRICS]
        share = f"{100 * r['share_of_teacher_ndcg']:.1f}%" if "share_of_teacher_ndcg" in r else ""
        dev = (f" {r['dev_mean']['ndcg@10']:.4f} |" if "dev_mean" in r else " |") if dev_col else ""
        lines.append(f"| {name} | {len(r['seeds'])} | " + " | ".join(cells) +
                     f" | {r['parameters']:,} | {r['query_latency_ms']:.1f} | {share} |" + dev)
    lines += ["", ("Mean ± sample standard deviation over training seeds" if max(n) > 1 else "One training seed")
              + "; query ms: median time to encode one query alone (batch of 1) on this machine"
              + ("; the teacher's is the time to score its rerank depth of pairs for one query" if "rerank_ms_per_query" in t
                 else "") + ". Each system lists its overrides of the base run's config, the loss weights they "
              "resolve to, and the stages it shared rather than computed (sharing score means the same teacher "
              "scores of the same candidates).", ""]
    if dev_col:
        sel = table.get("selected_on_dev")
        lines[-1:-1] = ["", f"dev nDCG@10: mean over seeds on the {table.get('dev_queries')} training queries held out "
                        "as split `dev` (no stage trains on them). "
                        + (f"Selected on dev (the best dev nDCG@10 among the systems of the base student's size "
                           f"trained on a teacher signal): `{sel}`." if sel else "")]
    for name, r in table["systems"].items():
        overrides = table["variants"].get(name)
        head = "base run" if overrides is None else ", ".join(f"`{k}: {json.dumps(v)}`" for k, v in overrides.items())
        losses = ", ".join(f"{k} {v:g}" for k, v in r.get("losses", {}).items())
        every_seed = [set(stages) for stages in r["shared"].values()]  # shared by all of its runs
        shared = sorted(set.intersection(*every_seed) if every_seed else set(), key=STAGES.index)
        lines.append(f"- `{name}`: {head}" + (f"; losses {losses}" if losses else "")
                     + ("; shared " + ", ".join(shared) if shared else ""))
    return "\n".join(lines) + "\n"


def write_table(table: dict, directory: Path) -> None:
    directory.mkdir(parents=True, exist_ok=True)
    write_text_atomic(directory / layout.SWEEP_TABLE_JSON, json.dumps(table, indent=2))
    write_text_atomic(directory / layout.SWEEP_TABLE_MD, render_markdown(table))
    log_table(table, directory / "tensorboard")


def log_table(table: dict, log_dir: Path) -> bool:
    """The table as TensorBoard scalars (``sweep/<metric>``: one step per row, reference rows first, then the
    systems' means) and text (the markdown table, and which row is which) under ``log_dir``, replaced on each
    write; False where tensorboard is not installed (distill.tracking)."""
    import shutil

    from distill.tracking import log_sweep_table, tensorboard_available

    if not tensorboard_available():
        return False
    rows = [{"run": name, **m} for name, m in table["reference"].items()]
    rows += [{"run": name, **r["mean"], "parameters": r["parameters"], "query_latency_ms": r["query_latency_ms"]}
             for name, r in table["systems"].items()]
    shutil.rmtree(log_dir, ignore_errors=True)
    return log_sweep_table(rows, log_dir, render_markdown(table))
