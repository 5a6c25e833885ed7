"""``python -m serve RUN_DIR [--rerank] [--host 127.0.0.1] [--port 8000]``: serve a run directory.

Starts a local Ray (or joins ``RAY_ADDRESS``), deploys the app, blocks until Ctrl-C (or SIGTERM),
then shuts Serve down: the app would otherwise outlive this process. A bearer token in
``DISTILL_SERVE_TOKEN`` guards every route but /healthz and /readyz.
"""

from __future__ import annotations

import argparse
import os
import signal
import sys
import threading


def is_loopback(host: str) -> bool:
    """True for 127.0.0.0/8, ::1 and ``localhost``; a name or 0.0.0.0 counts as reachable from outside."""
    import ipaddress

    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(prog="python -m serve", description=__doc__.split("\n\n")[0])
    p.add_argument("run_dir", help="run directory with student/ and index/ (e.g. runs/demo)")
    p.add_argument("--rerank", action="store_true", help="also deploy the teacher as a reranker")
    p.add_argument("--host", default="127.0.0.1", help="address to bind (default 127.0.0.1: loopback only)")
    p.add_argument("--port", type=int, default=8000)
    p.add_argument("--name", default="distill", help="Serve application name")
    p.add_argument("--retriever-replicas", type=int, default=None)
    p.add_argument("--retriever-threads", type=int, default=1, help="torch threads per retriever replica")
    p.add_argument(
        "--direct-ingress",
        action="store_true",
        help="serve HTTP from the ingress replica itself on --port (Serve's direct ingress: no proxy hop; "
        "faster on small machines)",
    )
    return p.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    from serve.app import deploy, resolve_run_dir, shutdown
    from serve.core import RunArtifacts, ServeSetupError

    try:
        RunArtifacts.load(resolve_run_dir(args.run_dir))
    except ServeSetupError as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    if not is_loopback(args.host) and not os.environ.get("DISTILL_SERVE_TOKEN"):
        print(f"WARNING: binding {args.host} (reachable from other machines) with no DISTILL_SERVE_TOKEN set: "
              "anyone who can reach the port can query the index", file=sys.stderr, flush=True)
    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    extra = {"retriever_threads": args.retriever_threads}
    if args.retriever_replicas:
        extra["retriever_replicas"] = args.retriever_replicas
    try:
        url = deploy(
            args.run_dir,
            rerank=args.rerank,
            name=args.name,
            host=args.host,
            port=args.port,
            direct_ingress=args.direct_ingress,
            **extra,
        )
        auth = " (bearer token required)" if os.environ.get("DISTILL_SERVE_TOKEN") else ""
        print(
            f"serving {args.run_dir} at {url}{auth}: POST /search, GET /healthz, GET /readyz, docs at /docs; "
            "Ctrl-C to stop",
            flush=True,
        )
        while not stop.wait(0.5):
            pass
    except KeyboardInterrupt:
        pass
    finally:
        print("shutting down Serve", flush=True)
        shutdown()
    return 0


if __name__ == "__main__":
    sys.exit(main())
