"""Bounded soak: the Serve app at a fixed concurrency for a few minutes over loopback, with one Retriever
replica killed in the middle (``ray.kill``, no restart: Serve's controller must replace it).

Reports requests sent, answered, failed (non-200 or connection error) and unfinished, and latency
percentiles in three windows: *before* the kill, *during* (from the kill until the controller has two
healthy Retriever replicas again, at least 5 s) and *after*. Closed-loop keep-alive clients (the same
minimal HTTP/1.1 client as ``serve_load.py``) run in this process; Serve runs on a local Ray started here.
Without ``--run-dir`` it builds all-MiniLM-L6-v2 over data/sample (offline), as serve_load.py does.

    .venv/bin/python benchmarks/serve_soak.py --duration 120 --concurrency 8
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import sys
import tempfile
import threading
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "benchmarks"))
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

from serve_load import Conn, free_port, wait_ready  # noqa: E402


def retriever_replicas(app: str) -> list[str]:
    import ray

    return sorted(a["name"] for a in ray.util.list_named_actors(all_namespaces=True)
                  if a["namespace"] == "serve" and a["name"].startswith(f"SERVE_REPLICA::{app}#Retriever#"))


async def soak(port: int, bodies: list[bytes], concurrency: int, duration: float, log: list) -> None:
    """Closed loop for ``duration`` s; appends (t_sent, t_done, ok, detail) per request to ``log``."""
    t_end = time.perf_counter() + duration

    async def client(i: int):
        conn, n = Conn("127.0.0.1", port), i
        try:
            while time.perf_counter() < t_end:
                t0 = time.perf_counter()
                try:
                    status, data = await asyncio.wait_for(conn.post("/search", bodies[n % len(bodies)]), 30)
                    ok, detail = status == 200, "" if status == 200 else f"{status} {data[:100]!r}"
                except (OSError, asyncio.IncompleteReadError, asyncio.TimeoutError, ValueError) as err:
                    conn.close()
                    ok, detail = False, repr(err)[:100]
                log.append((t0, time.perf_counter(), ok, detail))
                n += concurrency
        finally:
            conn.close()

    await asyncio.gather(*(client(i) for i in range(concurrency)))


def pct(xs: list[float], p: float) -> float:
    xs = sorted(xs)
    return xs[min(len(xs) - 1, int(round(p / 100 * (len(xs) - 1))))] * 1000 if xs else float("nan")


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--run-dir")
    ap.add_argument("--duration", type=float, default=120.0)
    ap.add_argument("--concurrency", type=int, default=8)
    ap.add_argument("--k", type=int, default=10)
    a = ap.parse_args(argv)
    import ray

    from serve.app import APP_NAME, deploy, shutdown, start_serve
    from serve.testing import make_sample_run, read_queries

    tmp = None
    run_dir = a.run_dir
    if not run_dir:
        tmp = tempfile.TemporaryDirectory()
        run_dir = str(Path(tmp.name) / "sample")
        make_sample_run(run_dir)
    queries = read_queries(ROOT / "data" / "sample" / "queries.jsonl")
    bodies = [json.dumps({"query": q, "k": a.k}).encode() for q in queries]
    port = free_port()
    log: list = []
    kill_at, healed_at = [None], [None]
    try:
        start_serve(port=port)
        deploy(run_dir, port=port, retriever_replicas=2)
        wait_ready(port)
        asyncio.run(soak(port, bodies, 2, 3.0, []))  # warm-up, not counted

        def killer():
            time.sleep(a.duration / 2)
            victims = retriever_replicas(APP_NAME)
            kill_at[0] = time.perf_counter()
            ray.kill(ray.get_actor(victims[0], namespace="serve"), no_restart=True)
            while time.perf_counter() - kill_at[0] < a.duration / 2:
                live = retriever_replicas(APP_NAME)
                if len(live) == 2 and victims[0] not in live:
                    healed_at[0] = time.perf_counter()
                    return
                time.sleep(0.5)

        th = threading.Thread(target=killer, daemon=True)
        th.start()
        t0 = time.perf_counter()
        asyncio.run(soak(port, bodies, a.concurrency, a.duration, log))
        th.join(timeout=5)
    finally:
        shutdown()
        if tmp:
            tmp.cleanup()
    k = kill_at[0]
    end_during = max(k + 5, healed_at[0] or k + 5) if k else None
    windows = {"before": lambda t: k is None or t < k, "during": lambda t: k is not None and k <= t < end_during,
               "after": lambda t: k is not None and t >= end_during}
    print(f"soak: {a.duration:.0f} s at {a.concurrency} clients, one of 2 Retriever replicas killed at "
          f"{(k - t0) if k else float('nan'):.0f} s; replaced after "
          f"{(healed_at[0] - k) if healed_at[0] else float('nan'):.1f} s; load {os.getloadavg()[0]:.2f}")
    print("| window | sent | failed | p50 ms | p99 ms | QPS |")
    print("|---|---|---|---|---|---|")
    for name, inside in windows.items():
        rows = [r for r in log if inside(r[0])]
        lat = [r[1] - r[0] for r in rows if r[2]]
        span = (max(r[1] for r in rows) - min(r[0] for r in rows)) if rows else float("nan")
        print(f"| {name} | {len(rows)} | {sum(1 for r in rows if not r[2])} | {pct(lat, 50):.0f} | "
              f"{pct(lat, 99):.0f} | {len(lat) / span if rows else float('nan'):.1f} |")
    failed = [r for r in log if not r[2]]
    print(f"total: {len(log)} sent, {len(log) - len(failed)} answered 200, {len(failed)} failed"
          + (f"; first failure: {failed[0][3]}" if failed else ""))
    return 0


if __name__ == "__main__":
    sys.exit(main())
