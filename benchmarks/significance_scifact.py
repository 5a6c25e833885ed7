"""Are the SciFact table's differences between a distilled system and its control more than query noise?

    python benchmarks/significance_scifact.py --data-dir /path/to/scifact runs_dir=/work/runs
    python benchmarks/significance_scifact.py --data-dir ... --pair kl0.25+hard_label:hard_label

For each pair TREATMENT:CONTROL (by default the selected recipe and the 2-layer recipe against their hard-label
controls) it finds the finished runs of both systems under ``runs/<name>/sweep/`` (``<system>-seed<n>``; the base
run is its ``sweep.base_label``), reads each run's metrics per test query (``eval/per_query.json``, or recomputes
them through the run's own student and FAISS index where the run was evaluated before that file existed),
averages each query over a system's seeds and runs the paired randomization test and bootstrap interval of
distill.significance on nDCG@10, MRR@10 and Recall@100 (distill.compare, as ``ray-distill compare`` does for any
runs). Prints a table and writes
``benchmarks/results/<run>-significance.json``, with every run's per-query values, so that a later sitting
whose machine no longer has those runs pools them with its own: ``--merge EARLIER.json`` adds the seeds of an
earlier file that are not on this machine (a seed on both is taken from this machine's run).
"""

from __future__ import annotations

import argparse
import json
import re
import sys
from datetime import date
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "benchmarks"))

from distill.metrics import METRICS, table_head  # noqa: E402

PAIRS = ["kl0.25+hard_label:hard_label", "small2_kl0.25+hard_label:small2_hard_label"]
SEEDED = re.compile(r"^(?P<system>.+)-seed(?P<seed>\d+)$")


def runs_by_system(cfg) -> dict[str, dict[int, object]]:
    """{system: {seed: RunDir}} of every run of ``cfg``'s sweep that finished ``evaluate``, the base run included."""
    from distill.manifest import RunDir
    from distill.sweep import earlier_runs

    base = RunDir(cfg)
    out: dict[str, dict[int, object]] = {}
    if base.is_done("evaluate"):
        out.setdefault(cfg.sweep.base_label, {})[cfg.seed] = base
    for rd in earlier_runs(base):
        m = SEEDED.match(rd.path.name)
        if m and rd.is_done("evaluate"):
            out.setdefault(m["system"], {})[int(m["seed"])] = rd
    return out


def student_per_query(rd, data) -> tuple[dict[str, dict[str, float]], str]:
    """(``{metric: {qid: value}}`` of the run's distilled student on the reported split, where it came from)."""
    from distill import layout
    from distill.stages.evaluate import reported_queries, student_ranking
    from distill.metrics import per_query

    stored = rd.stage_path("evaluate") / layout.PER_QUERY
    if stored.is_file():
        return json.loads(stored.read_text())["student_distilled"], "stored"
    qids, qrels, qtexts = reported_queries(rd.config, data)
    return per_query(qrels, student_ranking(rd, qids, qtexts)[2]), "recomputed"


def seed_values(runs: dict, data, earlier: dict, system: str) -> dict[str, tuple[dict, str]]:
    """{seed: (``{metric: {qid: value}}``, where it came from)} of ``system``: this machine's runs, then the seeds
    of an earlier results file's ``per_query`` that are not here."""
    out = {str(seed): student_per_query(rd, data) for seed, rd in sorted(runs.get(system, {}).items())}
    for seed, values in earlier.get(system, {}).items():
        out.setdefault(seed, (values, "merged"))
    return dict(sorted(out.items(), key=lambda kv: int(kv[0])))


def write_results(path: Path, head: dict, per_query: dict[str, dict[str, dict]]) -> None:
    """``head`` as indented JSON plus ``qids`` and ``per_query`` (``{system: {seed: {metric: [value per qid]}}}``,
    six decimals) each on one line: every run's values, compact."""
    qids = sorted({q for seeds in per_query.values() for v in seeds.values() for q in v[METRICS[0]]})
    compact = {s: {k: {m: [round(v[m][q], 6) for q in qids] for m in METRICS} for k, v in seeds.items()}
               for s, seeds in per_query.items()}
    text = json.dumps(head, indent=2)[:-2]
    text += ',\n  "qids": ' + json.dumps(qids) + ',\n  "per_query": ' + json.dumps(compact, separators=(",", ":"))
    path.write_text(text + "\n}\n")


def read_per_query(path: Path) -> dict[str, dict[str, dict]]:
    """An earlier results file's runs as ``{system: {seed: {metric: {qid: value}}}}``."""
    res = json.loads(path.read_text())
    qids = res.get("qids", [])
    return {s: {k: {m: dict(zip(qids, vals)) for m, vals in v.items()} for k, v in seeds.items()}
            for s, seeds in res.get("per_query", {}).items()}


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--config", default="configs/scifact_cpu.yaml")
    ap.add_argument("--data-dir", required=True)
    ap.add_argument("--pair", action="append", help="TREATMENT:CONTROL (repeatable); default: " + ", ".join(PAIRS))
    ap.add_argument("--permutations", type=int, default=10_000)
    ap.add_argument("--merge", help="an earlier results JSON of this script: its seeds not on this machine join")
    ap.add_argument("--out", help="results JSON (default benchmarks/results/<run>-significance.json)")
    ap.add_argument("overrides", nargs="*", help="config overrides, e.g. runs_dir=/work/runs")
    args = ap.parse_args(argv)

    from distill.config import load_config
    from distill.data import read_beir
    from distill.compare import COLUMNS, compare, table_rows
    from quality_scifact import machine

    cfg = load_config(args.config, [f"data.dir={args.data_dir}", *args.overrides])
    c = cfg.data
    data = read_beir(c.dir, c.corpus, c.queries, (c.test_split,), c.max_reject_share)
    runs = runs_by_system(cfg)
    earlier = read_per_query(Path(args.merge)) if args.merge else {}
    pairs, kept = [], {}
    for spec in args.pair or PAIRS:
        treatment, _, control = spec.partition(":")
        if not control:
            print(f"[significance] {spec}: skipped, not TREATMENT:CONTROL", flush=True)
            continue
        per_seed = {s: kept.get(s) or seed_values(runs, data, earlier, s) for s in (treatment, control)}
        missing = [s for s, v in per_seed.items() if not v]
        if missing:
            print(f"[significance] {spec}: skipped, no finished run of {', '.join(missing)} under {cfg.run_dir}"
                  + (f" nor in {args.merge}" if args.merge else ""), flush=True)
            continue
        kept.update(per_seed)
        tests = compare([v[0] for v in per_seed[control].values()], [v[0] for v in per_seed[treatment].values()],
                        permutations=args.permutations)
        pairs.append({"treatment": treatment, "control": control,
                      "seeds": {s: [int(k) for k in per_seed[s]] for s in (treatment, control)},
                      "per_query_values": {s: {k: v[1] for k, v in per_seed[s].items()} for s in per_seed},
                      "metrics": tests})

    lines = table_head(["treatment - control (seeds)", *COLUMNS[1:]])
    for p in pairs:
        lines += table_rows(f"{p['treatment']} ({','.join(map(str, p['seeds'][p['treatment']]))}) - "
                            f"{p['control']} ({','.join(map(str, p['seeds'][p['control']]))})", p["metrics"])
    print("\n".join(lines))
    out = Path(args.out) if args.out else ROOT / "benchmarks" / "results" / f"{cfg.name}-significance.json"
    out.parent.mkdir(parents=True, exist_ok=True)
    write_results(out, {
        "date": date.today().isoformat(), "machine": machine(),
        "command": " ".join(["python", "benchmarks/significance_scifact.py", *(argv if argv is not None else sys.argv[1:])]),
        "split": c.test_split, "queries": next(iter(pairs[0]["metrics"].values()))["queries"] if pairs else 0,
        "test": "paired randomization (sign flips) over queries, each query averaged over a system's seeds; "
                "95% bootstrap interval of the mean difference (distill.significance)",
        "permutations": args.permutations, "pairs": pairs}, {s: {k: v[0] for k, v in seeds.items()}
                                                           for s, seeds in kept.items()})
    print(f"[significance] wrote {out}")
    return 0 if pairs else 1


if __name__ == "__main__":
    raise SystemExit(main())
