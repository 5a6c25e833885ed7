"""Autoscaling benchmark (issue 18): a load ramp of closed-loop clients (default 1 -> 16 -> 1) against the
Serve app deployed as ``python -m serve`` deploys it (Retriever autoscaling 1..2 with its autoscaling
defaults; HTTP served by the ingress replica itself, direct ingress, or ``--proxy``), recording second by
second the Retriever's running replicas (serve.status()), QPS, p50/p99 latency and failed requests
(anything but 200, client timeouts included).

Writes ``benchmarks/results/serve_autoscale.json`` (per-second rows, phases, scale events: when the count
changed, relative to the start of the 16-client phase and to the start of the last phase, and the
failures during each event; ``upscale``: when Serve decided to add the replica (it shows as STARTING)
and when it was RUNNING, since the peak phase began) and a PNG of replicas, QPS and p50/p99 over time.
Without ``--run-dir`` it builds all-MiniLM-L6-v2 over data/sample as benchmarks/serve_load.py does.

    .venv/bin/python benchmarks/serve_autoscale.py --work-dir /tmp/serve-bench
    .venv/bin/python benchmarks/serve_autoscale.py --phases 1:20,16:60,1:60 --downscale-delay-s 20
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import sys
import threading
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "benchmarks"))
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

from serve_load import Conn, free_port, machine, make_bodies, outcome, pct, sample_run, wait_ready  # noqa: E402


class ReplicaWatcher(threading.Thread):
    """Polls serve.status() every ``every`` s: (seconds since start, running replicas per deployment), and
    the first time each deployment had a replica STARTING (``starting``: {deployment: [seconds]})."""

    def __init__(self, app: str, t0: float, every: float = 0.5):
        super().__init__(daemon=True)
        self.app, self.t0, self.every = app, t0, every
        self.samples: list[tuple[float, dict]] = []
        self.starting: dict[str, list[float]] = {}
        self.stop = threading.Event()

    def run(self):
        from ray import serve as rs

        while not self.stop.is_set():
            try:
                st = rs.status().applications.get(self.app)
                counts = {name: int(d.replica_states.get("RUNNING", 0)) for name, d in st.deployments.items()}
                starting = [name for name, d in st.deployments.items() if d.replica_states.get("STARTING")]
            except Exception:  # noqa: BLE001 - a missed sample
                counts, starting = None, []
            now = time.perf_counter() - self.t0
            if counts is not None:
                self.samples.append((now, counts))
            for name in starting:
                self.starting.setdefault(name, []).append(round(now, 1))
            self.stop.wait(self.every)

    def at(self, t: float, name: str = "Retriever") -> int | None:
        last = None
        for ts, c in self.samples:
            if ts > t:
                break
            last = c.get(name)
        return last


async def ramp(port: int, bodies: list[bytes], phases: list[tuple[int, float]], t0: float,
               client_timeout: float) -> list[tuple[float, float, str]]:
    """Closed-loop clients: ``phases`` of (clients, seconds); client i runs while the phase wants > i."""
    answers: list[tuple[float, float, str]] = []  # (sent since t0, latency, status)
    bounds, t = [], 0.0
    for c, d in phases:
        bounds.append((t, t + d, c))
        t += d
    total = t

    def wanted(now: float) -> int:
        for a, b, c in bounds:
            if a <= now < b:
                return c
        return 0

    async def client(i: int):
        conn, n = Conn("127.0.0.1", port), i
        try:
            while (now := time.perf_counter() - t0) < total:
                if wanted(now) <= i:
                    conn.close()
                    await asyncio.sleep(0.05)
                    continue
                what = await outcome(conn, conn.post("/search", bodies[n % len(bodies)]), client_timeout)
                if what == "conn_error":
                    await asyncio.sleep(0.05)
                answers.append((now, time.perf_counter() - t0 - now, what))
                n += 7
        finally:
            conn.close()

    peak = max(c for c, _ in phases)
    await asyncio.gather(*[client(i) for i in range(peak)])
    return answers


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--run-dir")
    p.add_argument("--work-dir")
    p.add_argument("--phases", default="1:20,16:60,1:60", help="clients:seconds, comma separated")
    p.add_argument("--min-replicas", type=int, default=1)
    p.add_argument("--max-replicas", type=int, default=2)
    p.add_argument("--target-ongoing", type=float, default=None, help="default: python -m serve's (1.5)")
    p.add_argument("--upscale-delay-s", type=float, default=None, help="default: python -m serve's (3)")
    p.add_argument("--downscale-delay-s", type=float, default=20.0,
                   help="python -m serve's default is 60; shorter here to see the way down in a short run")
    p.add_argument("--look-back-period-s", type=float, default=None, help="default: python -m serve's (5)")
    p.add_argument("--metrics-interval-s", type=float, default=None, help="default: python -m serve's (1)")
    p.add_argument("--proxy", action="store_true", help="through Serve's HTTP proxy (python -m serve --proxy)")
    p.add_argument("--precision", choices=["auto", "fp32", "bf16"], default="auto")
    p.add_argument("--client-timeout", type=float, default=30.0)
    p.add_argument("--k", type=int, default=10)
    p.add_argument("--json", default=str(ROOT / "benchmarks" / "results" / "serve_autoscale.json"))
    p.add_argument("--png", default=str(ROOT / "benchmarks" / "results" / "serve_autoscale.png"))
    a = p.parse_args(argv)
    from serve.__main__ import parse_args as serve_args

    d = serve_args(["x"])  # python -m serve's autoscaling defaults
    for ours, theirs in (("upscale_delay_s", "upscale_delay_s"), ("look_back_period_s", "look_back_period_s"),
                         ("metrics_interval_s", "metrics_interval_s"),
                         ("target_ongoing", "retriever_target_ongoing")):
        if getattr(a, ours) is None:
            setattr(a, ours, getattr(d, theirs))
    return a


def autoscaling(a: argparse.Namespace) -> dict:
    return {"min_replicas": a.min_replicas, "max_replicas": a.max_replicas,
            "target_ongoing_requests": a.target_ongoing, "upscale_delay_s": a.upscale_delay_s,
            "downscale_delay_s": a.downscale_delay_s, "look_back_period_s": a.look_back_period_s,
            "metrics_interval_s": a.metrics_interval_s}


def serve_and_ramp(a: argparse.Namespace, run_dir: str, phases, bodies) -> tuple[list, "ReplicaWatcher", bool]:
    """Start a local 2-CPU Ray as python -m serve does (direct ingress unless ``--proxy``), deploy, run the
    ramp while watching the replicas; (answers, watcher, whether direct ingress served)."""
    import ray

    from serve.app import FAST_PATH_ENV, choose_ingress, deploy, direct_ingress_env, shutdown

    port = free_port()
    for k, v in {**FAST_PATH_ENV, **({"RAY_SERVE_ENABLE_DIRECT_INGRESS": "0"} if a.proxy
                                     else direct_ingress_env(port))}.items():
        os.environ[k] = v  # read by Serve's processes at start: set before ray.init
    ray.init(address="local", num_cpus=2, include_dashboard=False, log_to_driver=False,
             runtime_env={"env_vars": {"HF_HUB_OFFLINE": "1", "TOKENIZERS_PARALLELISM": "false"}})
    direct = choose_ingress(False if a.proxy else None, port)[0]
    try:
        deploy(run_dir, port=port, logging_config={"log_level": "WARNING", "enable_access_log": False},
               direct_ingress=direct, precision=a.precision,
               retriever_min_replicas=a.min_replicas, retriever_max_replicas=a.max_replicas,
               retriever_target_ongoing_requests=a.target_ongoing, upscale_delay_s=a.upscale_delay_s,
               downscale_delay_s=a.downscale_delay_s, autoscaling_look_back_period_s=a.look_back_period_s,
               autoscaling_metrics_interval_s=a.metrics_interval_s)
        wait_ready(port)
        t0 = time.perf_counter()
        watch = ReplicaWatcher("distill", t0)
        watch.start()
        answers = asyncio.run(ramp(port, bodies, phases, t0, a.client_timeout))
        watch.stop.set()
        watch.join()
    finally:
        shutdown()
    return answers, watch, direct


def per_second(answers, watch: "ReplicaWatcher", phases) -> list[dict]:
    """One row per second: clients, Retriever replicas running, QPS (200s), p50/p99 and failures."""
    total = int(sum(s for _, s in phases))
    rows = []
    for sec in range(total):
        inside = [(lat, s) for ts, lat, s in answers if sec <= ts + lat < sec + 1]
        ok = [lat for lat, s in inside if s == "200"]
        clients, acc = 0, 0.0
        for c, d in phases:
            if acc <= sec < acc + d:
                clients = c
            acc += d
        rows.append({"t": sec, "clients": clients, "retriever_replicas": watch.at(sec + 1),
                     "qps": len(ok), "p50_ms": pct(ok, 50), "p99_ms": pct(ok, 99),
                     "failed": sum(1 for _, s in inside if s != "200")})
    return rows


def scale_events(answers, watch: "ReplicaWatcher", phases) -> tuple[list[dict], dict]:
    """Each change of the Retriever's running count (relative to the peak and the last phase, with the
    failures within 5 s of it), and the first scale-up: decided (a replica STARTING) and running, in
    seconds since the peak phase began."""
    events, last = [], None
    for ts, c in watch.samples:
        n = c.get("Retriever")
        if last is not None and n != last:
            events.append({"t": round(ts, 1), "from": last, "to": n})
        last = n
    starts, acc = [], 0.0
    for c, d in phases:
        starts.append(acc)
        acc += d
    peak_start = starts[max(range(len(phases)), key=lambda i: phases[i][0])]
    for e in events:
        e["since_peak_phase_s"] = round(e["t"] - peak_start, 1)
        e["since_last_phase_s"] = round(e["t"] - starts[-1], 1)
        e["failed_within_5s"] = sum(1 for ts, lat, s in answers if abs(ts + lat - e["t"]) <= 5 and s != "200")
    decided = next((t for t in watch.starting.get("Retriever", []) if t >= peak_start), None)
    running = next((e["t"] for e in events if e["to"] > e["from"] and e["t"] >= peak_start), None)
    up = {"decided_s": None if decided is None else round(decided - peak_start, 1),
          "running_s": None if running is None else round(running - peak_start, 1)}
    up["replica_start_s"] = (round(up["running_s"] - up["decided_s"], 1)
                             if None not in (up["running_s"], up["decided_s"]) else None)
    return events, up


def plot(rows: list[dict], a: argparse.Namespace) -> bool:
    """The PNG of replicas/clients, QPS and failures, p50/p99 over time (False without matplotlib)."""
    try:
        import matplotlib
    except ImportError:
        return False
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(3, 1, figsize=(9, 7), sharex=True)
    ts = [r["t"] for r in rows]
    ax[0].step(ts, [r["retriever_replicas"] or 0 for r in rows], where="post", label="Retriever replicas")
    ax[0].step(ts, [r["clients"] for r in rows], where="post", label="clients", alpha=0.5)
    ax[0].set_yscale("symlog")
    ax[0].legend(loc="upper right")
    ax[1].plot(ts, [r["qps"] for r in rows], label="QPS (200s)")
    ax[1].bar(ts, [r["failed"] for r in rows], color="red", label="failed")
    ax[1].legend(loc="upper right")
    ax[2].plot(ts, [r["p50_ms"] for r in rows], label="p50 ms")
    ax[2].plot(ts, [r["p99_ms"] for r in rows], label="p99 ms")
    ax[2].set_xlabel("seconds")
    ax[2].legend(loc="upper right")
    fig.suptitle(f"Serve autoscaling, load ramp {a.phases} (clients:seconds)")
    fig.tight_layout()
    fig.savefig(a.png, dpi=90)
    return True


def main(argv: list[str] | None = None) -> int:
    import datetime

    a = parse_args(argv)
    phases = [(int(c), float(s)) for c, _, s in (x.partition(":") for x in a.phases.split(","))]
    from serve.testing import read_queries

    run_dir, tmp = sample_run(a, "serve-autoscale-")
    bodies = make_bodies(read_queries(ROOT / "data" / "sample" / "queries.jsonl"), a.k, False, 1)
    mach = machine(a.precision)
    answers, watch, direct = serve_and_ramp(a, run_dir, phases, bodies)
    rows = per_second(answers, watch, phases)
    events, upscale = scale_events(answers, watch, phases)
    statuses: dict[str, int] = {}
    for _, _, s in answers:
        statuses[s] = statuses.get(s, 0) + 1
    out = {
        "date": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
        "machine": mach, "precision": mach["precision"],
        "command": "python benchmarks/serve_autoscale.py " + " ".join(argv if argv is not None else sys.argv[1:]),
        "http_path": "direct ingress" if direct else "Serve's HTTP proxy", "autoscaling": autoscaling(a),
        "phases": [{"clients": c, "seconds": s} for c, s in phases],
        "requests": len(answers), "statuses": statuses,
        "failed": sum(v for k, v in statuses.items() if k != "200"),
        "upscale": upscale, "events": events, "rows": rows,
    }
    Path(a.json).parent.mkdir(parents=True, exist_ok=True)
    Path(a.json).write_text(json.dumps(out, indent=2) + "\n")
    print(json.dumps({k: out[k] for k in ("requests", "statuses", "failed", "upscale", "events")}, indent=1))
    print(f"wrote {a.json} and {a.png}" if plot(rows, a) else f"wrote {a.json} (no matplotlib: no plot)")
    if tmp:
        import shutil

        shutil.rmtree(tmp, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
