"""``ray-distill compare``: is one set of runs better than another, query by query?

    ray-distill compare --control runs/sci/sweep/hard_label-seed* --treatment runs/sci/sweep/kl-seed*
    ray-distill compare --control runs/a --treatment runs/b --system student_zero_shot --json out.json

Each run is a run directory (its ``eval/per_query.json``, which the evaluate stage writes) or such a file. A side's
runs (its seeds) are averaged per query, then each metric gets distill.significance's paired randomization test
and bootstrap interval. Prints a Markdown table; exits 2, with the reason, on runs that cannot be compared (a
missing file or system, different queries).
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from distill import layout
from distill.metrics import METRICS, table_head
from distill.significance import paired_test, seed_mean

COLUMNS = ["treatment - control", "metric", "control", "treatment", "diff", "95% CI", "p", "wins/losses/ties"]


class CompareError(ValueError):
    """Runs that cannot be compared: the message says which and why."""


def read_per_query(path: str | Path, system: str = "student_distilled") -> dict[str, dict[str, float]]:
    """``{metric: {qid: value}}`` of ``system`` in a run directory's ``eval/per_query.json`` (or that file)."""
    p = Path(path)
    f = p / layout.stage_dir("evaluate") / layout.PER_QUERY if p.is_dir() else p
    if not f.is_file():
        raise CompareError(f"{p}: no {layout.stage_dir('evaluate')}/{layout.PER_QUERY} (not a run directory, or "
                           "a run evaluated before the evaluate stage wrote per-query metrics: evaluate it again)")
    try:
        systems = json.loads(f.read_text())
    except (OSError, ValueError) as err:
        raise CompareError(f"{f}: not readable as JSON ({err})") from err
    if system not in systems:
        raise CompareError(f"{f}: no system {system!r} (it has {', '.join(sorted(systems)) or 'none'})")
    return systems[system]


def compare(control: list[dict], treatment: list[dict], permutations: int = 10_000, seed: int = 0) -> dict:
    """``{metric: paired_test(...)}`` of the treatment's runs against the control's (each side's runs
    averaged per query), over the metrics every run has, in :data:`METRICS` order first."""
    runs = [*control, *treatment]
    if not control or not treatment:
        raise CompareError("compare: at least one run a side")
    common = set.intersection(*(set(r) for r in runs))
    metrics = [m for m in METRICS if m in common] + sorted(common - set(METRICS))
    if not metrics:
        raise CompareError("compare: the runs share no metric")
    try:
        return {m: paired_test(seed_mean([r[m] for r in control]), seed_mean([r[m] for r in treatment]),
                               permutations=permutations, resamples=permutations, seed=seed) for m in metrics}
    except ValueError as err:
        raise CompareError(str(err)) from err


def table_rows(label: str, tests: dict) -> list[str]:
    """Markdown rows ``| label | metric | control | treatment | diff | [lo, hi] | p | w/l/t |`` (under
    ``table_head(COLUMNS)``)."""
    return [f"| {label} | {m} | {t['control']:.4f} | {t['treatment']:.4f} | {t['diff']:+.4f} | "
            f"[{t['ci95'][0]:+.4f}, {t['ci95'][1]:+.4f}] | {t['p']:.3f} | {t['wins']}/{t['losses']}/{t['ties']} |"
            for m, t in tests.items()]


def main(argv: list[str] | None = None, prog: str = "ray-distill compare") -> int:
    ap = argparse.ArgumentParser(prog=prog, description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--control", nargs="+", required=True, help="the control's runs (run directories or files)")
    ap.add_argument("--treatment", nargs="+", required=True, help="the treatment's runs")
    ap.add_argument("--system", default="student_distilled",
                    help="the ranking compared (per_query.json key: student_distilled, student_zero_shot, bm25)")
    ap.add_argument("--permutations", type=int, default=10_000, help="sign flips and bootstrap resamples")
    ap.add_argument("--json", help="also write the tests to this file")
    args = ap.parse_args(argv)
    try:
        tests = compare([read_per_query(p, args.system) for p in args.control],
                        [read_per_query(p, args.system) for p in args.treatment], args.permutations)
    except CompareError as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    label = f"{len(args.treatment)} run(s) - {len(args.control)} run(s)"
    print("\n".join(table_head(COLUMNS) + table_rows(label, tests)))
    if args.json:
        Path(args.json).write_text(json.dumps({"system": args.system, "control": args.control,
                                               "treatment": args.treatment, "metrics": tests}, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
