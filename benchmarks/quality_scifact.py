"""SciFact quality table: run the pipeline + sweep of a SciFact config and collect the result.

    python benchmarks/quality_scifact.py --data-dir /path/to/scifact                  # configs/scifact_cpu.yaml
    python benchmarks/quality_scifact.py --config configs/scifact.yaml --data-dir ... training.use_gpu=true
    python benchmarks/quality_scifact.py --data-dir ... --collect-only --write BENCHMARKS.md

Runs ``python -m distill run CONFIG data.dir=...`` (the command a user runs; stages already finished are
reused), then prints a Markdown section: date, machine, command, wall time per stage of every run of the
sweep (shared stages marked), the sweep table (runs/<name>/sweep/table.md) and the issue's targets, each
met or missed by how much. ``--write FILE`` replaces that run's section in FILE (between markers).
The same figures go to ``benchmarks/results/<run>.json`` as data (the sweep table, every target with its
value, threshold and margin, the label-budget curve) and the curve to ``benchmarks/results/<run>_label_budget.png``.

Label-budget variants are named ``labels<pct>_<recipe>`` (a teacher signal + the labels there are; of several
recipes at one share, the best on dev is the curve's point, ``labels<pct>_kl`` by default) and ``labels<pct>_hard``
(hard labels only; ``labels<pct>_hard<anything>`` are more hard-label recipes, and the control is chosen among
them as the teacher-trained point is, :func:`pick_control`), with ``training.label_share: <pct>/100``; at 100% the
system selected on dev (else the base) and ``hard_label`` stand in, and at 0% the hard-label point is the
zero-shot student (nothing to train on).
Those students learn from the config's teacher, fine-tuned on every train qrel. A third series, ``kl_e2e``,
holds the budget end to end: teacher-signal students (any name) whose teacher saw no more labels than they
did: ``teacher.label_share`` equal to ``training.label_share``, or at any share a teacher of members none of
which is fine-tuned, with fixed weights (a label-free teacher).

``--add-to JSON --teacher-rows OTHER.json --used-by SYSTEM...`` adds the teacher rows of another committed results
file (a teacher that those systems learnt from, evaluated by its own run on the same split) to the table's
reference rows, so the best-teacher target counts every teacher the table's students learnt from.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import re
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from distill.sweep import SOFT_LOSSES  # noqa: E402  (the losses that carry a teacher's signal)

TARGET_TEACHER = 0.75  # the best teacher row's nDCG@10
TARGET_NDCG = 0.74  # the distilled system selected on dev
TARGET_SHARE = 0.95
BUDGET_MARGIN = 0.03  # at 0% and 10% of the labels: teacher-trained >= hard-label + this (nDCG@10)
BUDGET = re.compile(r"^labels(\d+)_(.+)$")  # labels<pct>_hard[...] (hard labels only) or labels<pct>_<a teacher-signal recipe>
SWEEP_STUDENT = re.compile(r"/sweep/(.+)-seed\d+/student/?$")  # a sweep system's exported student


def machine() -> str:
    cpu = next((line.split(":", 1)[1].strip() for line in Path("/proc/cpuinfo").read_text().splitlines()
                if line.startswith("model name")), platform.processor()) if Path("/proc/cpuinfo").exists() else ""
    gpu = ""
    try:
        import torch

        if torch.cuda.is_available():
            gpu = f", GPU {torch.cuda.get_device_name(0)}"
    except ImportError:
        pass
    return f"{os.cpu_count()} x {cpu}{gpu}"


def stage_table(run_dir: Path, table: dict) -> list[str]:
    """Seconds per stage of the base run and every sweep run ("shared" where a run reused the base's)."""
    from distill.manifest import STAGES

    rows = [("base run", json.loads((run_dir / "manifest.json").read_text())["stages"])]
    for label, row in table["systems"].items():
        for seed in row["seeds"]:
            m = run_dir / "sweep" / f"{label}-seed{seed}" / "manifest.json"
            if m.exists():
                rows.append((f"{label} seed {seed}", json.loads(m.read_text())["stages"]))
    out = ["| run | " + " | ".join(STAGES) + " | total |", "|---|" + "---|" * (len(STAGES) + 1)]
    for name, stages in rows:
        cells, total = [], 0.0
        for s in STAGES:
            e = stages.get(s)
            if e is None:
                cells.append("")
            elif e.get("shared_from"):
                cells.append("shared")
            else:
                total += e.get("seconds") or 0.0
                cells.append(f"{e.get('seconds', 0):.0f}")
        out.append(f"| {name} | " + " | ".join(cells) + f" | {total:.0f} |")
    return out


def _point(systems: dict, name: str, pool: list[str] | None = None) -> dict:
    r = systems[name]
    out = {"system": name, "ndcg@10": r["mean"]["ndcg@10"], "sd": r["sd"]["ndcg@10"], "seeds": len(r["seeds"])}
    if pool and len(pool) > 1:
        out["selected_on_dev_from"] = sorted(pool)
    return out


def _best_on_dev(systems: dict, names: list[str], default: str) -> str:
    """Of several recipes at one label share, the best mean dev nDCG@10 (never test); ``default`` unless
    every one has dev metrics (or it is missing)."""
    if len(names) > 1 and all("dev_mean" in systems[n] for n in names):
        return max(sorted(names), key=lambda n: systems[n]["dev_mean"]["ndcg@10"])
    return default if default in names else sorted(names)[0]


def pick_control(table: dict, names: list[str]) -> str:
    """Of several hard-label controls of one setting, the one a soft system is measured against: those trained
    for the config's epochs (no ``training.epochs`` override: every student as long), then the best on dev
    (never test), as the teacher-trained systems are chosen; the plainest (fewest overrides) unless every one
    has dev metrics."""
    variants, as_long = table.get("variants") or {}, trained_as_long(table, names)
    plainest = min(sorted(as_long), key=lambda n: len(variants.get(n) or {}))
    return _best_on_dev(table["systems"], as_long, plainest)


def trained_as_long(table: dict, names: list[str]) -> list[str]:
    """Those of ``names`` trained for the config's epochs (no ``training.epochs`` override); all if none is."""
    variants = table.get("variants") or {}
    return [n for n in names if "training.epochs" not in (variants.get(n) or {})] or list(names)


def teacher_label_share(overrides: dict | None, variants: dict | None = None) -> float:
    """The share of the train qrels a variant's teacher saw: ``teacher.label_share``; for an ensemble of
    members none of which is fine-tuned by the teacher stage, with fixed weights, the most any member saw: 0
    for a zero-shot model, and for a student of this sweep (``.../sweep/<variant>-seed<k>/student``, a round of
    student -> teacher) that variant's ``training.label_share``, looked up in ``variants`` (1 if unknown);
    else 1 (the config's own teacher, fine-tuned on every train qrel)."""
    over = overrides or {}
    if over.get("teacher.label_share") is not None:
        return float(over["teacher.label_share"])
    members = over.get("teacher.members")
    if members is not None and over.get("teacher.fit_weights") is False \
            and not any(m.get("model") == "finetuned" for m in members):
        return max([0.0] + [_student_share(str(m.get("model", "")), variants or {}) for m in members])
    return 1.0


def _student_share(model: str, variants: dict) -> float:
    """0 for a model that is not a sweep student; else the label share its variant trained with."""
    m = SWEEP_STUDENT.search(model)
    if not m:
        return 0.0
    if m.group(1) not in variants:
        return 1.0
    return float((variants[m.group(1)] or {}).get("training.label_share", 1.0))


def _end_to_end(table: dict) -> dict[int, list[str]]:
    """{pct: teacher-signal systems whose teacher saw no more of the labels than they did (< 100%): the same
    share (``teacher.label_share``) or none (a label-free ensemble)}."""
    out: dict[int, list[str]] = {}
    for name, r in table["systems"].items():
        over = (table.get("variants") or {}).get(name) or {}
        share = float(over.get("training.label_share", 1.0))
        if SOFT_LOSSES & set(r.get("losses") or {}) and share < 1 and teacher_label_share(over, table.get("variants")) <= share:
            out.setdefault(round(100 * share), []).append(name)
    return out


def label_budget(table: dict) -> dict:
    """nDCG@10 (mean, sd, seeds, system) per label share for the teacher-trained (``kl``) and hard-label
    (``hard``) students. Teacher-trained at ``pct``%: a ``labels<pct>_<recipe>`` system with a teacher-signal
    loss (the recipe selected on dev where there are several, ``labels<pct>_kl`` by default); at 100% the
    system selected on dev (else the base). Hard-label: ``labels<pct>_hard`` (of several ``labels<pct>_hard...``
    recipes, :func:`pick_control`); at 100% ``hard_label``; at 0% the zero-shot student. A hard-label student
    never reads the teacher, so which teacher its run had does not matter."""
    systems, curve, pools, controls = table["systems"], {"kl": {}, "hard": {}}, {}, {}
    for name, r in systems.items():
        m = BUDGET.match(name)
        if not m:
            continue
        pct, soft = int(m.group(1)), bool(SOFT_LOSSES & set(r.get("losses") or {}))
        if not soft and m.group(2).startswith("hard"):
            controls.setdefault(pct, []).append(name)
        elif soft and teacher_label_share((table.get("variants") or {}).get(name), table.get("variants")) >= 1:
            pools.setdefault(pct, []).append(name)
    for pct, names in controls.items():
        curve["hard"][pct] = _point(systems, pick_control(table, names), trained_as_long(table, names))
    for pct, names in pools.items():
        curve["kl"][pct] = _point(systems, _best_on_dev(systems, names, f"labels{pct}_kl"), names)
    if not curve["kl"] and not curve["hard"]:
        return {}
    top = table.get("selected_on_dev") or table["base_label"]
    for kind, name in (("kl", top), ("hard", "hard_label")):
        if name in systems and 100 not in curve[kind]:
            curve[kind][100] = _point(systems, name)
    zs = table["reference"].get("student_zero_shot")
    if zs and 0 not in curve["hard"]:
        curve["hard"][0] = {"system": "student_zero_shot", "ndcg@10": zs["ndcg@10"], "sd": None, "seeds": 0,
                            "note": "zero-shot: no labels to train on"}
    e2e = _end_to_end(table)
    if e2e:  # at 100% the teacher-trained point is the same system: the teacher saw every label there too
        curve["kl_e2e"] = {pct: _point(systems, _best_on_dev(systems, names, sorted(names)[0]), names)
                           for pct, names in e2e.items()}
        if 100 in curve["kl"]:
            curve["kl_e2e"][100] = curve["kl"][100]
    return {k: dict(sorted(v.items())) for k, v in curve.items()}


def checks(table: dict) -> list[dict]:
    """Every target of the issue as data: what, value, threshold (or control), margin, met."""
    out = []
    ref = table["reference"]
    teachers = {k: v["ndcg@10"] for k, v in ref.items() if k.startswith("teacher")}
    if teachers:
        best = max(teachers, key=teachers.get)
        out.append({"target": f"best teacher nDCG@10 >= {TARGET_TEACHER}", "system": best, "value": teachers[best],
                    "threshold": TARGET_TEACHER, "margin": teachers[best] - TARGET_TEACHER,
                    "met": teachers[best] >= TARGET_TEACHER})
    name = table.get("selected_on_dev") or table["base_label"]
    if name in table["systems"]:  # a table of reference rows alone (teacher_rows_only) has no student
        nd = table["systems"][name]["mean"]["ndcg@10"]
        out.append({"target": f"distilled nDCG@10 >= {TARGET_NDCG}", "system": name, "value": nd,
                    "threshold": TARGET_NDCG, "margin": nd - TARGET_NDCG, "met": nd >= TARGET_NDCG})
    curve = label_budget(table)
    for series, what in (("kl", ""), ("kl_e2e", " end to end (the teacher saw no more labels than the student)")):
        for pct in (0, 10):
            kl, hard = curve.get(series, {}).get(pct), curve.get("hard", {}).get(pct)
            if kl and hard:
                d = kl["ndcg@10"] - hard["ndcg@10"]
                out.append({"target": f"{pct}% labels{what}: teacher-trained >= hard-label + {BUDGET_MARGIN}",
                            "system": kl["system"], "control": hard["system"], "value": kl["ndcg@10"],
                            "threshold": hard["ndcg@10"] + BUDGET_MARGIN, "margin": d - BUDGET_MARGIN,
                            "met": d >= BUDGET_MARGIN})
    return out


def targets(table: dict) -> list[str]:
    """The issue's targets for the distilled system, each with its margin: the system selected on the dev
    split where the sweep has one (distill.sweep.select_on_dev), else the base system."""
    name = table.get("selected_on_dev") or table["base_label"]
    row = table["systems"][name]
    out = [f"- distilled system: `{name}` (" + ("selected on the dev split, before looking at test)"
                                               if table.get("selected_on_dev") else "the base run's)")]
    for c in checks(table):
        if c["target"].startswith("distilled"):
            out.append(f"- {c['target']}: {c['value']:.4f} "
                       + ("met" if c["met"] else f"missed by {-c['margin']:.4f}"))
    hard = table["systems"].get("hard_label")
    if hard:
        for m, v in row["mean"].items():
            h = hard["mean"][m]
            out.append(f"- distilled above hard-label on {m}: {v:.4f} vs {h:.4f} ({v - h:+.4f}) "
                       + ("met" if v > h else "missed"))
    share = row.get("share_of_teacher_ndcg")
    if share is not None:
        out.append(f"- distilled >= {TARGET_SHARE:.0%} of the teacher's reranking nDCG@10: {share:.1%} "
                   + ("met" if share >= TARGET_SHARE else f"missed by {TARGET_SHARE - share:.1%}"))
    for c in checks(table):
        if not c["target"].startswith("distilled"):
            out.append(f"- {c['target']} (`{c['system']}`): {c['value']:.4f} "
                       + ("met" if c["met"] else f"missed by {-c['margin']:.4f}"))
    return out + soft_vs_hard(table, skip=name)


def plot_budget(curve: dict, path: Path) -> None:
    """nDCG@10 against the share of training labels, teacher-trained vs hard-label students."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(5, 3.5))
    for kind, label, style in (("kl", "teacher signal (+ the labels there are; recipe chosen on dev)", "-"),
                               ("kl_e2e", "the same, the teacher given no more labels than the student", "--"),
                               ("hard", "hard labels only", "-")):
        pts = {int(pct): pt for pct, pt in curve.get(kind, {}).items()}  # a curve read back from JSON: str keys
        if kind == "kl_e2e":  # its 100% point is the first series' own: a line to it would cross shares not run
            pts = {pct: pt for pct, pt in pts.items() if pct < 100}
        if pts:
            xs = list(pts)
            ax.errorbar(xs, [p["ndcg@10"] for p in pts.values()], yerr=[p["sd"] or 0 for p in pts.values()],
                        marker="o", capsize=3, label=label, linestyle=style)
    ax.set_xlabel("% of training queries with labels")
    ax.set_ylabel("nDCG@10 (test)")
    ax.legend(fontsize=8)
    ax.grid(alpha=0.3)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


def outside_ndcg(student_dir: Path, data_dir: Path, split: str = "test", batch_size: int = 64) -> float:
    """nDCG@10 of a student directory evaluated without the project's code: sentence-transformers loads and
    encodes it, numpy ranks the whole corpus exactly, ranx scores the run against the BEIR qrels (read here
    with json/csv). The check that the exported student is the model the project's report measured."""
    import csv

    import numpy as np
    from ranx import Qrels, Run, evaluate
    from sentence_transformers import SentenceTransformer

    docs = [json.loads(line) for line in open(data_dir / "corpus.jsonl", encoding="utf-8") if line.strip()]
    queries = {q["_id"]: q["text"] for q in map(json.loads, open(data_dir / "queries.jsonl", encoding="utf-8"))}
    qrels: dict[str, dict[str, int]] = {}
    with open(data_dir / "qrels" / f"{split}.tsv", encoding="utf-8") as f:
        for row in csv.DictReader(f, delimiter="\t"):
            if int(row["score"]) > 0:
                qrels.setdefault(row["query-id"], {})[row["corpus-id"]] = int(row["score"])
    model = SentenceTransformer(str(student_dir), device="cpu")
    texts = [f"{d['title']}. {d['text']}" if d.get("title") else d["text"] for d in docs]
    demb = model.encode(texts, batch_size=batch_size, convert_to_numpy=True)
    qids = list(qrels)
    qemb = model.encode([queries[q] for q in qids], batch_size=batch_size, convert_to_numpy=True)
    sims = qemb @ demb.T
    top = np.argsort(-sims, axis=1)[:, :100]
    run = {q: {docs[j]["_id"]: float(sims[i, j]) for j in top[i]} for i, q in enumerate(qids)}
    return float(evaluate(Qrels(qrels), Run(run), "ndcg@10"))


def export_check(cfg, table: dict) -> dict | None:
    """The selected system's first-seed student, evaluated outside the project, against its report."""
    name = table.get("selected_on_dev") or table["base_label"]
    seed = table["systems"][name]["seeds"][0]
    base = name == table["base_label"] and seed == cfg.training.seed
    run_dir = cfg.run_dir if base else cfg.run_dir / "sweep" / f"{name}-seed{seed}"
    if not (run_dir / "student").exists():
        return None
    ours = json.loads((run_dir / "eval" / "report.json").read_text())["metrics"]["student_distilled"]["ndcg@10"]
    outside = outside_ndcg(run_dir / "student", Path(cfg.data.dir), cfg.data.test_split)
    return {"system": name, "seed": seed, "student": str(run_dir / "student"), "report_ndcg@10": ours,
            "outside_ndcg@10": outside, "difference": outside - ours, "met": abs(outside - ours) <= 0.002}


def results(table: dict, command: str) -> dict:
    """The committed JSON: when, where, how, the sweep table, the targets and the label-budget curve."""
    return {"date": time.strftime("%Y-%m-%d"), "machine": machine(), "command": command, "table": table,
            "selected_on_dev": table.get("selected_on_dev"), "targets": checks(table) + [
                {"target": line[2:], "met": line.endswith(" met")} for line in soft_vs_hard(table)],
            "label_budget": label_budget(table)}


def _setting(table: dict, name: str) -> tuple:
    """What a control must share with a system: its parameter count and the share of the labels it saw."""
    over = (table.get("variants") or {}).get(name) or {}
    return table["systems"][name]["parameters"], over.get("training.label_share", 1.0)


def soft_vs_hard(table: dict, skip: str | None = None) -> list[str]:
    """Every other system trained on teacher signals against the hard-label control of its setting (a system
    whose loss weights are hard labels only, with the same parameter count and label share; of several, one
    chosen by :func:`pick_control`): above on every metric?"""
    systems = table["systems"]
    by_setting: dict[tuple, list[str]] = {}
    for n, r in systems.items():
        if r.get("losses") and not SOFT_LOSSES & set(r["losses"]):
            by_setting.setdefault(_setting(table, n), []).append(n)
    controls = {k: pick_control(table, names) for k, names in by_setting.items()}
    out = []
    for name, r in systems.items():
        ctrl = controls.get(_setting(table, name))
        if name == skip or ctrl is None or not SOFT_LOSSES & set(r.get("losses", {})):
            continue
        deltas = {m: v - systems[ctrl]["mean"][m] for m, v in r["mean"].items()}
        out.append(f"- `{name}` above `{ctrl}` on every metric: "
                   + ", ".join(f"{m} {d:+.4f}" for m, d in deltas.items())
                   + (" met" if all(d > 0 for d in deltas.values()) else " missed"))
    return out


def partial_table(cfg) -> Path:
    """The table of the sweep's finished runs (distill.sweep.finished_runs), written to <run>/sweep/partial/
    with the unfinished ones under ``missing``; returns that directory."""
    from distill.manifest import RunDir
    from distill.sweep import collect, finished_runs, write_table

    base = RunDir(cfg)
    runs, missing = finished_runs(cfg, base)
    if not runs:
        raise SystemExit(f"no run of the sweep of {cfg.run_dir} has finished evaluate yet")
    table = {**collect(cfg, base, runs), "missing": missing}
    out = cfg.run_dir / "sweep" / "partial"
    write_table(table, out)
    return out


def base_report_of(table: dict) -> dict:
    """The base run's evaluate report as far as a sweep table keeps it: its reference rows, teacher size and
    speed, dev rows (what :func:`distill.sweep.collect` reads from the base run)."""
    t = table["teacher"]
    speed = {"teacher_pairs_per_s": t["pairs_per_s"]} if "pairs_per_s" in t else {}
    if "query_latency_ms" in t:
        speed["teacher_query_latency_ms"] = t["query_latency_ms"]
    return {"metrics": table["reference"], "split": table["split"], "queries": table["queries"],
            "rerank_depth": table["rerank_depth"], "sizes": {"teacher_parameters": t["parameters"]},
            "speed": speed, "dev": {"queries": table.get("dev_queries"), "metrics": table.get("dev_reference", {})}}


def budget_plot_path(results_json: Path) -> Path:
    """The label-budget PNG beside a results file: ``<its stem>_label_budget.png``, named after the file the curve
    is in, not after the run that added rows to it (``--add-to`` from another run's sweep)."""
    return results_json.with_name(f"{results_json.stem}_label_budget.png")


def teacher_overrides(cfg, file_cfg) -> dict:
    """``teacher.<key>: value`` for each teacher setting in which the run's config (``cfg``, with the command line's
    overrides) differs from its config file's (``file_cfg``): a sweep added from a base run given another teacher on
    the command line records that teacher with its systems, so that what it saw of the labels is known."""
    if file_cfg is None:
        return {}
    ran, filed = cfg.teacher.model_dump(mode="json"), file_cfg.teacher.model_dump(mode="json")
    return {f"teacher.{k}": v for k, v in ran.items() if v != filed.get(k)}


def add_runs(res: dict, cfg, command: str, file_cfg=None) -> dict:
    """``res`` (a committed results JSON) with the finished runs of ``cfg``'s sweep other than the base run added:
    a new system becomes a row, a new seed of a known system joins its row (a seed already there is an error:
    nothing is overwritten); selection, targets and the curve are recomputed, and ``added`` records what came
    in, when and by which command. For a sweep continued on another machine or sitting whose base run has the
    same teacher, candidates and scores (stage digests) but was not itself trained or evaluated there. With
    ``file_cfg`` (the config file without the command line's overrides) a teacher set on the command line is
    recorded in each new system's overrides (:func:`teacher_overrides`)."""
    from distill.manifest import RunDir
    from distill.sweep import collect, finished_runs, precision_checks, select_on_dev, summarise

    table = json.loads(json.dumps(res["table"]))
    runs = [r for r in finished_runs(cfg, RunDir(cfg))[0] if r[2].path != cfg.run_dir]
    if not runs:
        raise SystemExit(f"no run of the sweep of {cfg.run_dir} other than the base run has finished evaluate")
    new = collect(cfg, None, runs, base_report=base_report_of(table))
    for name, row in new["systems"].items():
        old = table["systems"].get(name)
        if old is not None:
            again = set(old["per_seed"]) & set(row["per_seed"])
            if again:
                raise SystemExit(f"{name}: seed(s) {sorted(again)} already in the table; nothing added")
            for key in ("per_seed", "stage_seconds", "shared", "dev_per_seed"):
                old.setdefault(key, {}).update(row.get(key, {}))
            old["seeds"] += row["seeds"]
            old["latency_ms"] += row["latency_ms"]
            old.pop("dev_mean", None)
            row = summarise(old, table["reference"], table["teacher"])
        table["systems"][name] = row
        table["variants"][name] = {**teacher_overrides(cfg, file_cfg), **(cfg.sweep.variants.get(name) or {})} or None
    table["selected_on_dev"] = select_on_dev(table["systems"], table["base_label"],
                                             precision_checks({k: v for k, v in table["variants"].items() if v}))
    return _recomputed(res, table, {"date": time.strftime("%Y-%m-%d"), "machine": machine(), "command": command,
                                    "runs": [f"{label}-seed{seed}" for label, seed, _ in runs]})


def _recomputed(res: dict, table: dict, entry: dict) -> dict:
    """``res`` with ``table`` in place of its table, targets and curve recomputed, and ``entry`` (what came in,
    when, by which command) appended to ``added``; the original run's date, command and export check kept."""
    keep = {k: res[k] for k in ("date", "machine", "command", "export_check", "partial") if k in res}
    if "partial" in keep:  # what came in is no longer missing
        keep["partial"] = {**keep["partial"], "missing": [m for m in keep["partial"].get("missing", [])
                                                          if m not in entry.get("runs", [])]}
    return {**results(table, res["command"]), **keep, "added": res.get("added", []) + [entry]}


def add_teacher_rows(res: dict, sources: list[Path], used_by: list[str]) -> dict:
    """``res`` with the teacher rows of other committed results files added to its reference rows: a teacher
    that the systems ``used_by`` of this table learnt from, evaluated by its own run (the project's evaluation,
    on the same split and the same number of queries: anything else is an error). Each row is named
    ``<row> (<run>)``; ``reference_from`` says which file and which systems; the targets (the best teacher among
    them) are recomputed."""
    table = json.loads(json.dumps(res["table"]))
    unknown = [n for n in used_by if n not in table["systems"]]
    if not used_by or unknown:
        raise SystemExit(f"--teacher-rows needs --used-by naming systems of the table that learnt from that "
                         f"teacher{'; not in the table: ' + ', '.join(unknown) if unknown else ''}")
    rows = []
    for path in sources:
        other = json.loads(Path(path).read_text())["table"]
        if (other["split"], other["queries"]) != (table["split"], table["queries"]):
            raise SystemExit(f"{path}: measured on {other['split']} ({other['queries']} queries), this table on "
                             f"{table['split']} ({table['queries']}): not comparable")
        for key, metrics in other["reference"].items():
            if key.startswith("teacher"):
                name = f"{key} ({other['run']})"
                if name in table["reference"]:
                    raise SystemExit(f"{name} already in the table; nothing added")
                table["reference"][name] = metrics
                table.setdefault("reference_from", {})[name] = {"file": Path(path).name, "used_by": list(used_by)}
                rows.append(name)
    if not rows:
        raise SystemExit(f"no teacher rows in {', '.join(map(str, sources))}")
    return _recomputed(res, table, {"date": time.strftime("%Y-%m-%d"), "machine": machine(), "teacher_rows": rows,
                                    "from": [Path(p).name for p in sources], "used_by": list(used_by)})


def teacher_rows_only(cfg, command: str) -> dict | None:
    """The results of a run that evaluated without a sweep (a teacher measured on its own, its student only a
    stand-in so that ``evaluate`` runs): its reference rows alone, no systems; ``teacher_rows_only`` marks it.
    What ``--teacher-rows`` reads. None where the run has not finished ``evaluate``."""
    from distill.manifest import RunDir
    from distill.sweep import collect

    base = RunDir(cfg)
    if not base.is_done("evaluate"):
        return None
    return {**results(collect(cfg, base, []), command), "teacher_rows_only": True}


def section(cfg, command: str, wall_s: float | None, sweep_dir: Path | None = None) -> str:
    run_dir = cfg.run_dir
    sweep_dir = sweep_dir or run_dir / "sweep"
    table = json.loads((sweep_dir / "table.json").read_text())
    lines = [f"<!-- quality_scifact:{cfg.name} -->", f"### SciFact: `{cfg.name}`", "",
             f"{time.strftime('%Y-%m-%d')}, {machine()}. Command: `{command}`"
             + (f"; wall time {wall_s / 60:.1f} min." if wall_s else "."), "",
             (sweep_dir / "table.md").read_text().strip(), "",
             *([f"Partial: not yet evaluated: {', '.join(table['missing'])}.", ""] if table.get("missing") else []),
             "Targets (test split):", *targets(table), "",
             "Seconds per stage:", "", *stage_table(run_dir, table), "", f"<!-- /quality_scifact:{cfg.name} -->"]
    return "\n".join(lines) + "\n"


def write_section(path: Path, name: str, text: str) -> None:
    doc = path.read_text() if path.exists() else ""
    pattern = re.compile(rf"<!-- quality_scifact:{re.escape(name)} -->.*?<!-- /quality_scifact:{re.escape(name)} -->\n?",
                         re.S)
    doc = pattern.sub(lambda _: text, doc) if pattern.search(doc) else doc.rstrip("\n") + "\n\n" + text
    path.write_text(doc)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--config", default="configs/scifact_cpu.yaml")
    p.add_argument("--data-dir", required=True, help="SciFact in BEIR layout")
    p.add_argument("--collect-only", action="store_true", help="do not run; collect a finished run")
    p.add_argument("--partial", action="store_true",
                   help="do not run; table the sweep's runs whose evaluate is finished (a sweep over several sittings), "
                   "in <run>/sweep/partial/, naming the others")
    p.add_argument("--add-to", type=Path, metavar="JSON",
                   help="do not run; add the sweep's finished runs other than the base run (new systems, new seeds) "
                   "to this committed results file, its reference rows standing in for the base run's")
    p.add_argument("--teacher-rows", type=Path, nargs="+", metavar="JSON",
                   help="with --add-to, instead of runs: add these committed results files' teacher rows (a teacher "
                   "that systems of the table learnt from, evaluated by its own run) to the table's reference rows")
    p.add_argument("--used-by", nargs="+", default=[], metavar="SYSTEM",
                   help="with --teacher-rows: the systems of the table that learnt from that teacher")
    p.add_argument("--write", type=Path, help="replace this run's section in this Markdown file")
    p.add_argument("--no-export-check", action="store_true",
                   help="skip evaluating the selected student with SentenceTransformer outside the project")
    p.add_argument("overrides", nargs="*", help="more key=value overrides for the run")
    args = p.parse_args(argv)
    from distill.config import load_config

    overrides = [f"data.dir={args.data_dir}", *args.overrides]
    cfg = load_config(args.config, overrides)
    command = " ".join(["python -m distill run", args.config, *overrides])
    wall = None
    sweep_dir = cfg.run_dir / "sweep"
    if args.add_to:
        res = json.loads(args.add_to.read_text())
        res = (add_teacher_rows(res, args.teacher_rows, args.used_by) if args.teacher_rows
               else add_runs(res, cfg, command, load_config(args.config, [f"data.dir={args.data_dir}"])))
        args.add_to.write_text(json.dumps(res, indent=2) + "\n")
        if res["label_budget"]:
            plot_budget(res["label_budget"], budget_plot_path(args.add_to))
        print("\n".join(f"- {t['target']}" + ("" if t["target"].endswith(("met", "missed")) else
                                               " met" if t["met"] else " missed") for t in res["targets"]))
        what = res["added"][-1].get("runs") or res["added"][-1]["teacher_rows"]
        print(f"added {', '.join(what)} to {args.add_to}; selected on dev: {res['selected_on_dev']}")
        return 0
    if args.partial:
        sweep_dir = partial_table(cfg)
    elif not args.collect_only:
        t0 = time.perf_counter()
        rc = subprocess.call([sys.executable, "-m", "distill", "run", args.config, *overrides], cwd=ROOT)
        wall = time.perf_counter() - t0
        if rc != 0:
            print(f"the run failed (exit {rc})", file=sys.stderr)
            return rc
    if not (sweep_dir / "table.json").exists():
        res = teacher_rows_only(cfg, command) if not args.partial else None
        if res is None:
            print(f"no table in {sweep_dir}: the base run trained no student (sweep.system_seeds "
                  f"{{{cfg.sweep.base_label}: []}}); add the runs to a committed table with --add-to")
            return 0
        out = ROOT / "benchmarks" / "results"
        out.mkdir(parents=True, exist_ok=True)
        (out / f"{cfg.name}.json").write_text(json.dumps(res, indent=2) + "\n")
        print("\n".join(f"- {k}: " + ", ".join(f"{m} {v:.4f}" for m, v in row.items())
                        for k, row in res["table"]["reference"].items()))
        print(f"no sweep: reference rows only (for --teacher-rows): {out / (cfg.name + '.json')}")
        return 0
    text = section(cfg, command, wall, sweep_dir)
    print(text)
    if args.write:
        write_section(args.write, cfg.name, text)
    table = json.loads((sweep_dir / "table.json").read_text())
    out = ROOT / "benchmarks" / "results"
    out.mkdir(parents=True, exist_ok=True)
    res = results(table, command)
    if not args.no_export_check:
        res["export_check"] = export_check(cfg, table)
        print(f"export check (SentenceTransformer outside the project): {res['export_check']}")
    (out / f"{cfg.name}.json").write_text(json.dumps(res, indent=2) + "\n")
    if res["label_budget"]:
        plot_budget(res["label_budget"], budget_plot_path(out / f"{cfg.name}.json"))
    print(f"results: {out / (cfg.name + '.json')}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
