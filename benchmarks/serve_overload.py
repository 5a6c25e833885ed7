"""Overload benchmark (issue 14 item 1): the Serve app at 16 and at 400 closed-loop clients.

Per cell it records every answer by status (200, 503, other, client timeouts and connection errors),
p50/p99/max latency of all answers and of the 200s, successful throughput (200s per second inside the
measured window), how many answers took longer than the server's deadline + 1 s, and, from a separate
prober sending ``GET /healthz`` every 100 ms during the cell, the health check's p50/p99/max. The 400-client
cell's successful throughput is compared with the 16-client cell's (no collapse: ratio >= 1).

The app is deployed as ``python -m serve`` would (direct ingress: the ingress replica serves HTTP itself;
``--proxy``: through Serve's HTTP proxy; default limits: 10 s deadline, 32 in flight + up to 512 waiting
while the expected wait is within 5 s, refusals held 1 s, proxy timeout 12 s), and first, side by side in the
same process, with the admission of sessions 6-8 (:data:`BEFORE`; ``--no-before`` skips it). The clients
re-send at once after any answer, ignoring Retry-After, as a hostile or naive client does with the Retriever fixed at
``--serve-replicas`` (default 2) so cells are comparable; without ``--run-dir`` it builds all-MiniLM-L6-v2
over data/sample as benchmarks/serve_load.py does.

    .venv/bin/python benchmarks/serve_overload.py --duration 20 --work-dir /tmp/serve-bench
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import platform
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "benchmarks"))
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

from serve_load import Conn, ServeServer, get, make_bodies, outcome, pct, sample_run  # noqa: E402

# The admission of sessions 6-8, measured side by side with the default: 64 waiting at most whatever the
# wait, and a refusal answered at once (clients that re-send at once then make refusals a storm).
BEFORE = {"max_queued_requests": 64, "queue_wait_s": 1e9, "shed_hold_s": 0.0}
PROBE_TIMEOUT_S = 2.0  # a /healthz unanswered this long counts as a timeout (its latency: this), then reconnects


async def overload_cell(port: int, bodies: list[bytes], clients: int, duration: float, warmup: float,
                        client_timeout: float, deadline_s: float) -> dict:
    """``clients`` closed-loop clients for warmup + duration seconds, plus a /healthz prober."""
    t0 = time.perf_counter()
    t_measure, t_end = t0 + warmup, t0 + warmup + duration
    answers: list[tuple[float, float, str]] = []  # (sent, latency, status)
    health: list[tuple[float, str]] = []

    async def client(i: int):
        conn, n = Conn("127.0.0.1", port), i
        try:
            while (ts := time.perf_counter()) < t_end:
                what = await outcome(conn, conn.post("/search", bodies[n % len(bodies)]), client_timeout)
                if what == "conn_error":
                    await asyncio.sleep(0.05)
                answers.append((ts, time.perf_counter() - ts, what))
                n += clients
        finally:
            conn.close()

    async def prober():
        conn = Conn("127.0.0.1", port)
        try:
            while (ts := time.perf_counter()) < t_end:
                what = await outcome(conn, get(conn, "/healthz"), PROBE_TIMEOUT_S)
                if ts >= t_measure:
                    health.append((time.perf_counter() - ts, what))
                await asyncio.sleep(max(0.0, 0.1 - (time.perf_counter() - ts)))
        finally:
            conn.close()

    tasks = [asyncio.ensure_future(client(i)) for i in range(clients)] + [asyncio.ensure_future(prober())]
    await asyncio.wait(tasks, timeout=warmup + duration + client_timeout + 5)
    for t in tasks:
        t.cancel()
    await asyncio.gather(*tasks, return_exceptions=True)

    measured = [(ts, lat, s) for ts, lat, s in answers if ts >= t_measure]
    statuses: dict[str, int] = {}
    for _, _, s in measured:
        statuses[s] = statuses.get(s, 0) + 1
    ok_in_window = sum(1 for ts, lat, s in answers if s == "200" and t_measure <= ts + lat <= t_end)
    lat_all = [lat for _, lat, _ in measured]
    lat_ok = [lat for _, lat, s in measured if s == "200"]
    lat_503 = [lat for _, lat, s in measured if s == "503"]
    hl = [lat for lat, _ in health]
    return {
        "clients": clients,
        "requests": len(measured),
        "statuses": statuses,
        "ok_qps": round(ok_in_window / duration, 2),
        "answers_per_s": round(len(measured) / duration, 2),
        "p50_ms": pct(lat_all, 50), "p99_ms": pct(lat_all, 99), "max_ms": pct(lat_all, 100),
        "ok_p50_ms": pct(lat_ok, 50), "ok_p99_ms": pct(lat_ok, 99),
        "503_p50_ms": pct(lat_503, 50), "503_p99_ms": pct(lat_503, 99),
        "over_deadline_plus_1s": sum(1 for x in lat_all if x > deadline_s + 1),
        "healthz": {"n": len(hl), "statuses": {s: sum(1 for _, w in health if w == s) for s in {w for _, w in health}},
                    "p50_ms": pct(hl, 50), "p99_ms": pct(hl, 99), "max_ms": pct(hl, 100)},
    }


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--run-dir", help="run directory to serve (default: build MiniLM over data/sample)")
    p.add_argument("--work-dir", help="where to build the default run directory (default: a temp dir)")
    p.add_argument("--clients", default="16,400", help="comma list of closed-loop client counts")
    p.add_argument("--duration", type=float, default=20.0, help="measured seconds per cell")
    p.add_argument("--warmup", type=float, default=3.0)
    p.add_argument("--client-timeout", type=float, default=30.0, help="a client gives up after this")
    p.add_argument("--k", type=int, default=10)
    p.add_argument("--serve-replicas", type=int, default=2)
    p.add_argument("--request-timeout-s", type=float, default=10.0, help="the app's deadline (default 10)")
    p.add_argument("--proxy", action="store_true", help="through Serve's HTTP proxy (python -m serve --proxy)")
    p.add_argument("--no-before", action="store_true",
                   help="measure the default configuration only, not also the admission of sessions 6-8 (64 "
                   "waiting, refusals answered at once) side by side before it")
    p.add_argument("--json", default=str(ROOT / "benchmarks" / "results" / "serve_overload.json"))
    a = p.parse_args(argv)

    from serve.testing import read_queries

    run_dir, tmp = sample_run(a, "serve-overload-")
    queries = read_queries(ROOT / "data" / "sample" / "queries.jsonl")
    bodies = make_bodies(queries, a.k, False, 1)  # no rerank: the depth is unused (but must be valid)
    # ServeServer's knobs: serve_load's defaults (fast path, direct ingress unless --proxy, no extra env).
    sargs = argparse.Namespace(fast_path=True, serve_env=None, serve_cpus=2, serve_replicas=a.serve_replicas,
                               serve_threads=1, max_batch_size=32, batch_wait_ms=2.0, serve_rerank_threads=1,
                               ingress_replicas=1, ingress_inflight=4, ingress_coalesce=8, precision="auto")
    load0 = os.getloadavg()
    t0 = time.time()
    configs = {} if a.no_before else {"before": BEFORE}
    configs["default"] = {}
    by_config = {}
    for label, extra in configs.items():
        cells = []
        with ServeServer(run_dir, False, sargs, proxy=a.proxy,
                         app_args={"request_timeout_s": a.request_timeout_s, **extra}) as s:
            path = "direct ingress" if s.direct else "Serve HTTP proxy"
            print(f"HTTP path: {path}; admission: {label} {extra}", flush=True)
            asyncio.run(overload_cell(s.port, bodies, 2, 2.0, 1.0, a.client_timeout, a.request_timeout_s))  # warm
            for c in (int(x) for x in a.clients.split(",")):
                la = os.getloadavg()[0]
                r = asyncio.run(overload_cell(s.port, bodies, c, a.duration, a.warmup, a.client_timeout,
                                              a.request_timeout_s))
                r["load_1min_before"] = round(la, 2)
                cells.append(r)
                print(json.dumps(r), flush=True)
        by = {c["clients"]: c for c in cells}
        ratio = None
        if 16 in by and 400 in by and by[16]["ok_qps"]:
            ratio = round(by[400]["ok_qps"] / by[16]["ok_qps"], 3)
        by_config[label] = {"app_args": extra, "cells": cells, "ok_qps_400_over_16": ratio}
        print(f"{label}: successful throughput 400/16 clients: {ratio}", flush=True)
    try:
        cpu = next(ln.split(":", 1)[1].strip() for ln in open("/proc/cpuinfo") if ln.startswith("model name"))
    except (OSError, StopIteration):
        cpu = platform.processor()
    out = {
        "date": time.strftime("%Y-%m-%d %H:%M:%S UTC", time.gmtime()),
        "machine": {"cpu": cpu, "cpus": os.cpu_count(), "load_1_5_15_at_start": [round(x, 2) for x in load0]},
        "command": "benchmarks/serve_overload.py " + " ".join(argv if argv is not None else sys.argv[1:]),
        "setup": {"path": f"{path} -> SearchIngress -> Retriever", "retriever_replicas": a.serve_replicas,
                  "request_timeout_s": a.request_timeout_s, "max_inflight": 32, "max_queued": 512, "queue_wait_s": a.request_timeout_s / 2,
                  "proxy_request_timeout_s": a.request_timeout_s + 2, "k": a.k, "rerank": False,
                  "duration_s": a.duration, "warmup_s": a.warmup, "client_timeout_s": a.client_timeout,
                  "shed_hold_s": 1.0, "max_held": 1024},
        "cells": cells,  # the default configuration's
        "ok_qps_400_over_16": ratio,
        "by_admission": by_config,
        "seconds": round(time.time() - t0, 1),
    }
    Path(a.json).parent.mkdir(parents=True, exist_ok=True)
    Path(a.json).write_text(json.dumps(out, indent=2) + "\n")
    print(f"wrote {a.json}; successful throughput 400/16 clients: {ratio}")
    if tmp:
        import shutil

        shutil.rmtree(tmp, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
