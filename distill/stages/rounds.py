"""Iterative rounds (``rounds: N``; docs/METHODS.md, section 4.3): retrieve with the current student, score with
the teacher, train, re-encode, re-index, evaluate, repeat.

Round 1 is the ordinary pipeline. Round r > 1 runs ``mine -> score -> train -> encode -> index ->
evaluate`` on a :class:`distill.manifest.RoundDir`: it mines with round r-1's student (its corpus
embeddings from round r-1's ``encode`` and its query encoder), the same teacher scores the new
candidates, and training continues from round r-1's student. The teacher is trained once (round 1).

Round r's evaluation scores only what changed, the distilled student through round r's index (the BM25,
zero-shot and teacher rows are round 1's). After the rounds, ``rounds/report.json``, ``report.md`` and
``metrics.png`` hold every round's metrics; round 0 is the zero-shot student.
"""

from __future__ import annotations

import json
from pathlib import Path

from distill import layout
from distill.atomic import atomic_dir
from distill.metrics import METRICS, metrics_table

REPORT_DIR = layout.ROUNDS_DIR


def collect(rd) -> dict:
    """Every evaluated round's metrics: ``{"rounds": [{"round", "metrics", "counts"}...], "reference": ...}``;
    round 0 is the zero-shot student, ``reference`` round 1's BM25 and teacher rows."""
    first = rd.stage_path("evaluate") / "report.json"
    if not first.exists():
        return {"run": rd.config.name, "rounds": [], "reference": {}}
    r1 = json.loads(first.read_text())
    rows = []
    if "student_zero_shot" in r1["metrics"]:
        rows.append({"round": 0, "metrics": r1["metrics"]["student_zero_shot"]})
    for r in range(1, rd.config.rounds + 1):
        view = rd.for_round(r)
        if not view.is_done("evaluate"):
            break
        rep = json.loads((view.stage_path("evaluate") / "report.json").read_text())
        train = view.stages.get("train", {})
        rows.append({"round": r, "metrics": rep["metrics"]["student_distilled"],
                     "candidates": view.stages.get("mine", {}).get("counts", {}).get("candidates"),
                     "train_steps": train.get("counts", {}).get("steps"),
                     "index_version": rep.get("index", {}).get("version")})
    reference = {k: v for k, v in r1["metrics"].items() if k not in ("student_zero_shot", "student_distilled")}
    return {"run": rd.config.name, "split": r1.get("split"), "queries": r1.get("queries"), "rounds": rows,
            "reference": reference}


def render_markdown(report: dict) -> str:
    lines = [f"# Rounds: run `{report['run']}`, split `{report.get('split')}` ({report.get('queries')} queries)", "",
             *metrics_table([("0 (zero-shot)" if row["round"] == 0 else str(row["round"]), row["metrics"])
                             for row in report["rounds"]]
                            + [(f"{name} (reference)", m) for name, m in report["reference"].items()], first="round")]
    lines += ["", "Round r mines with round r-1's student, the teacher scores the candidates, training continues "
              "from round r-1's student; each round re-encodes and re-indexes the corpus.", ""]
    return "\n".join(lines)


def plot(report: dict, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(7, 4))
    xs = [row["round"] for row in report["rounds"]]
    for i, m in enumerate(METRICS):
        line, = ax.plot(xs, [row["metrics"][m] for row in report["rounds"]], marker="o", label=m)
        teacher = [v for k, v in report["reference"].items() if k.startswith("teacher")]
        if teacher:
            ax.axhline(teacher[0][m], color=line.get_color(), ls=":", lw=1,
                       label="teacher rerank" if i == 0 else None)
    ax.set_xticks(xs, ["0\n(zero-shot)" if x == 0 else str(x) for x in xs])
    ax.set_xlabel("round")
    ax.set_ylim(0, 1)
    ax.legend(fontsize=8)
    ax.set_title("Distilled student per round (test split)")
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)


def write_report(rd) -> dict:
    """Write ``runs/<name>/rounds/`` (report.json, report.md, metrics.png) from the evaluated rounds."""
    report = collect(rd)
    with atomic_dir(rd.path / REPORT_DIR) as tmp:
        (tmp / layout.REPORT_JSON).write_text(json.dumps(report, indent=2))
        (tmp / layout.REPORT_MD).write_text(render_markdown(report))
        if report["rounds"]:
            plot(report, tmp / "metrics.png")
    return report
