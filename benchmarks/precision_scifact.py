"""Does bf16 change a SciFact metric? The same trained student encodes the corpus and the test queries in fp32 and
in bf16 (``distill.precision``: autocast, fp32 weights, float32 vectors out); both go through the same exact
index search and the project's metrics.

    python benchmarks/precision_scifact.py RUN_DIR [--data-dir ../shared/data/scifact]

RUN_DIR: a finished run whose ``student/`` was trained on SciFact. Its fp32 corpus embeddings (``embeddings/``,
when the run encoded in fp32) are reused; otherwise both sides are encoded here. Prints a table and writes
``benchmarks/results/precision_scifact.json``: nDCG@10, MRR@10, Recall@100 per precision, the difference, the mean
and minimum cosine between the two vectors of each passage, the seconds of each encoding, the CPU and whether it
has native bf16 (issue 15's bar: nDCG@10 within 0.002, mean cosine >= 0.9999).
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


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("run_dir", type=Path)
    ap.add_argument("--data-dir", type=Path, default=ROOT.parent / "shared" / "data" / "scifact")
    ap.add_argument("--batch-size", type=int, default=64)
    ap.add_argument("--json", type=Path, default=ROOT / "benchmarks" / "results" / "precision_scifact.json")
    args = ap.parse_args()

    from distill.data import read_beir
    from distill.index import build_index
    from distill.metrics import evaluate_run, to_run
    from distill.models import DualEncoder
    from distill.precision import describe
    from distill.stages.encode import read_embeddings

    data = read_beir(args.data_dir, splits=("test",))
    qrels = data.qrels["test"]
    qids = list(qrels)
    qtexts = [data.queries[q] for q in qids]
    docids = list(data.corpus)
    dtexts = [data.doc_text(d) for d in docids]
    student = DualEncoder.load(args.run_dir / "student")
    manifest = json.loads((args.run_dir / "manifest.json").read_text())
    emb, seconds = {}, {}
    reuse = (manifest["stages"].get("encode") or {}).get("precision") == "fp32" and (args.run_dir / "embeddings").exists()
    if reuse:
        ids, vecs = read_embeddings(args.run_dir / "embeddings")
        order = {d: i for i, d in enumerate(ids)}
        emb["fp32"] = vecs[[order[d] for d in docids]]
        seconds["fp32"] = None  # the run's encode stage
    for p in ("bf16",) if reuse else ("fp32", "bf16"):
        t0 = time.perf_counter()
        emb[p] = student.encode(dtexts, batch_size=args.batch_size, precision=p)
        seconds[p] = time.perf_counter() - t0
    rows = {}
    for p in ("fp32", "bf16"):
        q = student.encode(qtexts, batch_size=args.batch_size, precision=p)
        scores, idx = build_index(emb[p]).search(q, 100)
        rows[p] = evaluate_run(qrels, to_run(qids, [[docids[j] for j in r] for r in idx], scores))
    cos = np.sum(emb["fp32"] * emb["bf16"], axis=1) / (
        np.linalg.norm(emb["fp32"], axis=1) * np.linalg.norm(emb["bf16"], axis=1))
    machine = describe("bf16")
    print(f"{machine['cpu_model']} (torch CPU capability {machine['cpu_capability']}, native bf16 "
          f"{machine['native_bf16']}); {len(docids)} passages, {len(qids)} test queries; run {args.run_dir}")
    print(f"{'precision':<10}{'nDCG@10':>9}{'MRR@10':>9}{'R@100':>9}{'encode s':>10}")
    for p in ("fp32", "bf16"):
        s = "(run)" if seconds[p] is None else f"{seconds[p]:.1f}"
        print(f"{p:<10}{rows[p]['ndcg@10']:>9.4f}{rows[p]['mrr@10']:>9.4f}{rows[p]['recall@100']:>9.4f}{s:>10}")
    diff = {k: rows["bf16"][k] - rows["fp32"][k] for k in rows["fp32"]}
    print("bf16 - fp32: " + ", ".join(f"{k} {v:+.4f}" for k, v in diff.items())
          + f"; passage cosine mean {cos.mean():.6f}, min {cos.min():.6f}")
    args.json.parent.mkdir(parents=True, exist_ok=True)
    args.json.write_text(json.dumps({
        "date": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
        "command": "python " + " ".join(sys.argv), "machine": machine, "run_dir": str(args.run_dir),
        "passages": len(docids), "queries": len(qids), "metrics": rows, "bf16_minus_fp32": diff,
        "cosine_mean": float(cos.mean()), "cosine_min": float(cos.min()), "encode_seconds": seconds,
        "fp32_corpus_from_run": reuse,
        "bar": {"ndcg_within": 0.002, "cosine_mean_at_least": 0.9999,
                "met": bool(abs(diff["ndcg@10"]) <= 0.002 and cos.mean() >= 0.9999)}}, indent=2))
    print(f"wrote {args.json}")


if __name__ == "__main__":
    main()
