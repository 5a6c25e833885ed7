"""``python -m serve RUN_DIR [--rerank] [--host 127.0.0.1] [--port 8000]``: serve a run directory.

Starts a local Ray (or joins ``RAY_ADDRESS``), deploys the app, blocks until Ctrl-C (or SIGTERM),
then shuts Serve down: the app would otherwise outlive this process. On the local Ray it starts, the ingress
replica serves HTTP on ``--port`` itself (Serve's direct ingress: no proxy hop, about 3x the QPS of the proxy
path on 2 cores); ``--proxy`` puts Serve's HTTP proxy in front instead, as joining a cluster does (said at
start). Retriever and Reranker autoscale (1 to 2 replicas) unless given a fixed count. A bearer token in
``DISTILL_SERVE_TOKEN`` guards every route but /healthz and /readyz; set but blank, it is an error.
Binding beyond loopback without a token is refused unless ``--insecure`` is given. Without a token, only
requests addressed (``Host``) to a loopback name, the bound address or an ``--allow-host`` name are
answered (DNS-rebinding defence). The reranker loads the run's own ``teacher_model/`` or ``--teacher``,
never a model name or ``trust_remote_code`` from the run's manifest. What is served is the run's verified
snapshot (serve.snapshot, under ``RUN_DIR/snapshots/``; or RUN_DIR itself when it is a snapshot): a run
whose files differ from what its stages recorded, or whose student and index do not belong together, is
refused here (exit 2) with the file named.
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


TOKEN_ENV = "DISTILL_SERVE_TOKEN"  # serve.api.TOKEN_ENV (not imported: --help stays fast)


def check_auth(host: str, insecure: bool, environ=os.environ) -> str | None:
    """Why serving as asked is refused (None: it is not): a token that is set but blank, or a bind beyond
    loopback without a token and without ``insecure``."""
    token = environ.get(TOKEN_ENV)
    if token is not None and not token.strip():
        return (f"{TOKEN_ENV} is set but blank: set a token (e.g. `export {TOKEN_ENV}=$(openssl rand -hex 32)`), "
                "or unset it to serve without one")
    if not token and not is_loopback(host) and not insecure:
        return (f"binding {host} (reachable from other machines) needs a bearer token: set {TOKEN_ENV}, or pass "
                "--insecure to let anyone who can reach the port query the index")
    return None


EPILOG = ("HTTP is served on --port by the ingress replica itself (Serve's direct ingress: no proxy hop) where this "
          "command starts Ray; --proxy, or joining a cluster through RAY_ADDRESS, serves it through Serve's HTTP "
          "proxy (said at start). Overload bounds (--max-inflight, --max-queued: 503 + Retry-After; "
          "--request-timeout-s) hold on both paths.")


def parse_args(argv: list[str] | None = None, prog: str = "python -m serve") -> argparse.Namespace:
    p = argparse.ArgumentParser(prog=prog, description=__doc__.split("\n\n")[0], epilog=EPILOG)
    p.add_argument("run_dir", help="run directory with student/ and index/ (e.g. runs/demo)")
    p.add_argument("--rerank", action="store_true", help="also deploy the teacher as a reranker")
    p.add_argument("--teacher", default=None, metavar="MODEL",
                   help="the reranker's model (local dir, hub id or python:<module>) for a run without a "
                   "teacher_model/ of its own; a name in the run's manifest.json is never loaded")
    p.add_argument("--teacher-trust-remote-code", action="store_true",
                   help="let the teacher's own code run (never taken from the run's manifest.json)")
    p.add_argument("--host", default="127.0.0.1", help="address to bind (default 127.0.0.1: loopback only)")
    p.add_argument("--port", type=int, default=8000)
    p.add_argument("--insecure", action="store_true",
                   help=f"allow binding beyond loopback without {TOKEN_ENV} (anyone who can reach the port "
                   "can query the index)")
    p.add_argument("--allow-host", action="append", default=[], metavar="NAME",
                   help="without a token: also answer requests whose Host header is NAME (repeatable; the "
                   "loopback names and the bound address always are)")
    p.add_argument("--precision", choices=["auto", "fp32", "bf16"], default="auto",
                   help="query encoding and reranking: bf16 autocast or fp32 (default auto: bf16 only where the "
                   "CPU has native bf16, e.g. AVX512-BF16 or AMX, and it measured faster)")
    p.add_argument("--name", default="distill", help="Serve application name")
    p.add_argument("--retriever-replicas", type=int, default=None,
                   help="a fixed Retriever replica count (default: autoscaling between --retriever-min-replicas "
                   "and --retriever-max-replicas)")
    p.add_argument("--retriever-min-replicas", type=int, default=1)
    p.add_argument("--retriever-max-replicas", type=int, default=2)
    p.add_argument("--retriever-target-ongoing", type=float, default=1.5, metavar="N",
                   help="ongoing (coalesced) calls per Retriever replica autoscaling aims at (default 1.5: a "
                   "replica computes one call at a time; a second in flight waits)")
    p.add_argument("--reranker-replicas", type=int, default=None,
                   help="a fixed Reranker replica count (default: autoscaling, 1 to --reranker-max-replicas)")
    p.add_argument("--reranker-min-replicas", type=int, default=1)
    p.add_argument("--reranker-max-replicas", type=int, default=2)
    p.add_argument("--upscale-delay-s", type=float, default=3.0,
                   help="autoscaling: seconds of load above target before a replica is added (default 3)")
    p.add_argument("--downscale-delay-s", type=float, default=60.0,
                   help="autoscaling: seconds of load below target before a replica is removed (default 60)")
    p.add_argument("--look-back-period-s", type=float, default=5.0,
                   help="autoscaling: seconds the ongoing-request counts are averaged over (default 5; "
                   "Serve's own default, 30, makes a load step take about 10 s to count)")
    p.add_argument("--metrics-interval-s", type=float, default=1.0,
                   help="autoscaling: how often replicas and handles report those counts (default 1; Serve's "
                   "own: 10)")
    p.add_argument("--request-timeout-s", type=float, default=10.0,
                   help="server-side deadline per request: past it the work is cancelled and the answer is "
                   "503 (default 10; the proxy's own timeout is this + 2 s)")
    p.add_argument("--max-inflight", type=int, default=32,
                   help="requests computing at once per ingress replica (default 32)")
    p.add_argument("--max-queued", type=int, default=512,
                   help="requests waiting for a slot per ingress replica at most; more get 503 + Retry-After "
                   "(default 512)")
    p.add_argument("--queue-wait-s", type=float, default=None,
                   help="queue a request only while its expected wait (requests ahead / recent completions per "
                   "second) is within this; else 503 + Retry-After (default: half of --request-timeout-s)")
    p.add_argument("--shed-hold-s", type=float, default=1.0,
                   help="hold a refusal this long before its 503, so clients that re-send at once cannot "
                   "starve the admitted work (default 1; 0: at once)")
    p.add_argument("--max-rerank-pairs", type=int, default=1000,
                   help="(query, document) pairs one request may have reranked (queries x depth; default 1000)")
    p.add_argument("--retriever-threads", type=int, default=1, help="torch threads per retriever replica")
    ingress = p.add_mutually_exclusive_group()
    ingress.add_argument(
        "--proxy", dest="direct_ingress", action="store_const", const=False, default=None,
        help="serve HTTP through Serve's proxy actor (the classic path; used anyway when joining a cluster "
        "through RAY_ADDRESS) instead of from the ingress replica itself (the default: Serve's direct ingress)",
    )
    ingress.add_argument(
        "--direct-ingress", dest="direct_ingress", action="store_const", const=True,
        help="require direct ingress (the default where this command starts Ray): an error where it cannot "
        "work instead of falling back to the proxy",
    )
    return p.parse_args(argv)


def main(argv: list[str] | None = None, prog: str = "python -m serve") -> int:
    """``python -m serve`` (and ``ray-distill serve``, which passes its own ``prog`` for messages)."""
    args = parse_args(argv, prog)
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    from serve.app import choose_ingress, deploy, serving_snapshot, shutdown
    from serve.core import RunArtifacts, ServeSetupError

    refused = check_auth(args.host, args.insecure)
    if refused:
        print(f"error: {refused}", file=sys.stderr)
        return 2
    try:
        snapshot = serving_snapshot(args.run_dir)
        art = RunArtifacts.load(snapshot, verify=())  # just verified
        if args.rerank:
            art.teacher(args.teacher, args.teacher_trust_remote_code)
    except ServeSetupError as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    if not is_loopback(args.host) and not os.environ.get(TOKEN_ENV):
        print(f"WARNING: --insecure: binding {args.host} (reachable from other machines) with no {TOKEN_ENV} "
              "set: anyone who can reach the port can query the index", file=sys.stderr, flush=True)
    try:
        direct, why = choose_ingress(args.direct_ingress, args.port)
    except ValueError as err:
        print(f"error: {err} (leave out --direct-ingress to fall back to Serve's proxy)", file=sys.stderr)
        return 2
    if why:
        print(f"note: serving through Serve's HTTP proxy, not direct ingress: {why}", file=sys.stderr,
              flush=True)
    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    extra = {"retriever_threads": args.retriever_threads, "allowed_hosts": args.allow_host,
             "teacher": args.teacher, "teacher_trust_remote_code": args.teacher_trust_remote_code,
             "precision": args.precision}
    extra.update(
        retriever_min_replicas=args.retriever_min_replicas, retriever_max_replicas=args.retriever_max_replicas,
        retriever_target_ongoing_requests=args.retriever_target_ongoing,
        reranker_min_replicas=args.reranker_min_replicas, reranker_max_replicas=args.reranker_max_replicas,
        upscale_delay_s=args.upscale_delay_s, downscale_delay_s=args.downscale_delay_s,
        autoscaling_look_back_period_s=args.look_back_period_s,
        autoscaling_metrics_interval_s=args.metrics_interval_s,
        request_timeout_s=args.request_timeout_s, max_inflight_requests=args.max_inflight,
        max_queued_requests=args.max_queued, max_rerank_pairs=args.max_rerank_pairs,
        shed_hold_s=args.shed_hold_s, queue_wait_s=args.queue_wait_s,
    )
    if args.retriever_replicas:
        extra["retriever_replicas"] = args.retriever_replicas
    if args.reranker_replicas:
        extra["reranker_replicas"] = args.reranker_replicas
    try:
        url = deploy(
            str(snapshot),
            rerank=args.rerank,
            name=args.name,
            host=args.host,
            port=args.port,
            direct_ingress=direct,
            **extra,
        )
        auth = " (bearer token required)" if os.environ.get(TOKEN_ENV, "").strip() else ""
        path = "direct ingress" if direct else "through Serve's proxy"
        print(
            f"serving {args.run_dir} (snapshot {art.version}) at {url} ({path}){auth}: POST /search, "
            "GET /healthz, GET /readyz, docs at /docs; Ctrl-C to stop",
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
