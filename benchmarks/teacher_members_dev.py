"""Does a member pay in an ensemble teacher? Dev-split nDCG@10 of members alone and of fixed fusions, before any
student trains on them.

    python benchmarks/teacher_members_dev.py RUN_DIR --member mpnet=/models/all-mpnet-base-v2 \\
        --member hard10=RUN_DIR/sweep/labels10_hard-seed0/student --bm25 \\
        --fusion mpnet=0.5,bm25=0.5 --fusion mpnet=1,bm25=1,hard10=1 [--data-dir DIR] [--config CFG] [KEY=VALUE ...]

RUN_DIR: a run whose ``mine`` stage is done (its zero-shot corpus vectors give the pool). The pool is the one
``teacher.fit_weights`` fits on (distill.stages.score.dev_candidates): each held-out dev query's BM25 top
``mining.depth`` and zero-shot top ``mining.depth``, no judged positive added. Every member scores every pair
(a dual encoder: q . d in bf16 autocast where ``precision: auto`` takes it; BM25: bm25s over the whole corpus);
each ``--fusion`` (weights normalised to sum 1) is z-scored per query and summed as distill.ensemble fuses; the
best point of the 0.1 simplex grid is printed too, marked as fitted on dev (for information: a fitted teacher
would be chosen on the same queries). No test query is scored. Writes ``--out`` (default
``benchmarks/results/teacher_members_dev.json``).
"""

from __future__ import annotations

import argparse
import datetime
import json
import os
import sys
import time
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

import numpy as np  # noqa: E402


def parse_fusion(spec: str) -> dict[str, float]:
    """``a=1,b=2`` -> {a: 1/3, b: 2/3} (weights normalised to sum 1; each must be >= 0, their sum > 0)."""
    out: dict[str, float] = {}
    for part in spec.split(","):
        name, sep, w = part.partition("=")
        if not sep or not name.strip():
            raise ValueError(f"--fusion wants name=weight[,name=weight...], got {spec!r}")
        out[name.strip()] = float(w)
    total = sum(out.values())
    if any(w < 0 for w in out.values()) or total <= 0:
        raise ValueError(f"--fusion weights must be >= 0 with a positive sum, got {spec!r}")
    return {k: v / total for k, v in out.items()}


class _PoolRun:
    """What dev_candidates and load_data read of a run directory, without locking or writing the run."""

    def __init__(self, config, run_dir: Path, scratch: Path):
        self.config, self.run_dir, self.path, self.manifest = config, run_dir, scratch, {}

    def stage_path(self, stage: str) -> Path:
        from distill.layout import stage_dir

        return self.run_dir / stage_dir(stage)

    def record_inputs(self, paths) -> None:
        pass


def dual_scores(path: str, pairs, data, precision: str) -> np.ndarray:
    """q . d of each (qid, docid) row, each distinct text encoded once (a saved student, or a model dir/hub id)."""
    from distill.models import ENCODER_META, DualEncoder

    enc = DualEncoder.load(path) if (Path(path) / ENCODER_META).exists() else DualEncoder(path, max_length=256)
    enc.eval()
    uq, qi = np.unique(pairs["qid"].to_numpy().astype(str), return_inverse=True)
    ud, di = np.unique(pairs["docid"].to_numpy().astype(str), return_inverse=True)
    qe = enc.encode([data.queries[q] for q in uq], 64, precision=precision)
    de = enc.encode([data.doc_text(d) for d in ud], 32, precision=precision)
    return (qe[qi.reshape(-1)] * de[di.reshape(-1)]).sum(-1).astype(np.float32)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("run_dir", type=Path)
    p.add_argument("overrides", nargs="*", help="config overrides, as for `distill run` (data.dir=... is set by "
                   "--data-dir)")
    p.add_argument("--config", default=str(ROOT / "configs/scifact_cpu.yaml"))
    p.add_argument("--data-dir", default=str(ROOT.parent / "shared/data/scifact"))
    p.add_argument("--member", action="append", default=[], metavar="NAME=PATH", help="a dual-encoder member")
    p.add_argument("--bm25", action="store_true", help="add BM25 as the member `bm25`")
    p.add_argument("--fusion", action="append", default=[], metavar="NAME=W,...", help="a fixed fusion to score")
    p.add_argument("--precision", default="auto", choices=["auto", "fp32", "bf16"])
    p.add_argument("--out", type=Path, default=ROOT / "benchmarks/results/teacher_members_dev.json")
    a = p.parse_args(argv)

    import torch

    from distill import ensemble as E
    from distill.config import load_config
    from distill.pipeline import load_data
    from distill.precision import describe_device, resolve
    from distill.stages.score import dev_candidates

    members = dict(m.split("=", 1) for m in a.member)
    fusions = {spec: parse_fusion(spec) for spec in a.fusion}
    names = list(members) + (["bm25"] if a.bm25 else [])
    unknown = {n for f in fusions.values() for n in f} - set(names)
    if unknown or len(names) < 1:
        raise SystemExit(f"--fusion names members not given: {sorted(unknown)}" if unknown else "no member given")
    cfg = load_config(a.config, [f"data.dir={a.data_dir}", *a.overrides])
    if not cfg.data.dev_queries:
        raise SystemExit("the config holds out no dev split (data.dev_queries)")
    scratch = Path(os.environ.get("TMPDIR", "/tmp")) / f"teacher_members_dev-{os.getpid()}"
    scratch.mkdir(parents=True, exist_ok=True)
    run = _PoolRun(cfg, a.run_dir, scratch)
    data = load_data(run)
    pool = dev_candidates(run, data)
    precision = resolve(a.precision, "cpu", warn=False)
    torch.set_num_threads(os.cpu_count() or 1)
    scores, seconds = {}, {}
    for name, path in members.items():
        t = time.perf_counter()
        scores[name] = dual_scores(path, pool, data, precision)
        seconds[name] = round(time.perf_counter() - t, 1)
    if a.bm25:
        t = time.perf_counter()
        docids = list(data.corpus)
        scores["bm25"] = E.BM25PairScorer(docids, [data.doc_text(d) for d in docids]).score(
            [data.queries[q] for q in pool["qid"]], list(pool["docid"]))
        seconds["bm25"] = round(time.perf_counter() - t, 1)
    groups = E.group_index(pool["qid"])
    qrels = {q: data.qrels["dev"][q] for q in dict.fromkeys(pool["qid"])}
    qids, docids = pool["qid"].to_numpy(), pool["docid"].to_numpy()
    rows = {f"{n} alone": E.ndcg10(qids, docids, scores[n], qrels) for n in names}
    rows.update({spec: E.ndcg10(qids, docids, E.fuse(scores, w, groups), qrels) for spec, w in fusions.items()})
    fit = E.fit_weights(pool.assign(**{E.member_column(n): v for n, v in scores.items()}), names, qrels, 0.1)
    print(f"dev pool: {len(qrels)} queries, {len(pool)} pairs, {int(pool['label'].sum())} judged pairs in it; "
          f"{describe_device('cpu')}, precision {precision}")
    print("| teacher (dev nDCG@10 over the pool) | nDCG@10 |\n|---|---|")
    for k, v in rows.items():
        print(f"| {k} | {v:.4f} |")
    print(f"| fitted on dev (information only) {fit['weights']} | {fit['ndcg@10']:.4f} |")
    a.out.parent.mkdir(parents=True, exist_ok=True)
    a.out.write_text(json.dumps({
        "date": datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%d"),
        "command": "python benchmarks/teacher_members_dev.py " + " ".join(sys.argv[1:] if argv is None else argv),
        "split": "dev", "queries": len(qrels), "pairs": len(pool), "precision": precision, "members": members
        | ({"bm25": "bm25s"} if a.bm25 else {}), "member_seconds": seconds, "ndcg@10": rows,
        "fusions": fusions, "fitted_on_dev": {"weights": fit["weights"], "ndcg@10": fit["ndcg@10"]}}, indent=1) + "\n")
    print(f"wrote {a.out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
