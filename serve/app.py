"""Ray Serve deployments: Retriever and optional Reranker behind a FastAPI ingress.

::

    HTTP -> SearchIngress (FastAPI from serve.api.create_app) --handle--> Retriever (student + FAISS)
                                                               --handle--> Reranker  (teacher; optional)

- ``Retriever`` embeds queries with ``@serve.batch`` (queries from concurrent requests share one forward
  pass) and searches the index inside the same batch; it returns candidates with title and snippet
  (and the teacher's input text when the request reranks), plus the index version it loaded.
- ``Reranker`` scores (query, text) pairs with ``@serve.batch`` over queries. It holds no corpus: the
  texts come from the Retriever, so a request is answered from one index snapshot even while a new
  run is rolling out.
- ``SearchIngress`` owns HTTP (validation, body limit, token) and orchestrates the calls. It coalesces
  retrieval: requests that arrive while its retriever calls are in flight go together in the next
  handle call (a Ray call costs milliseconds of CPU here; paying it per batch is what lets Serve beat
  a single process on 2 cores). A call whose replica died is sent once more to another replica (both are
  idempotent reads), so a killed replica loses no request; a request whose second replica dies too is
  answered 503 and refused for a while after (serve.retries), so a request that kills replicas is not
  passed from one to the next.
- Model compute runs on one dedicated thread per replica (torch limited to the replica's threads), so
  replicas can run Serve's fast path (:data:`FAST_PATH_ENV`: user code on the replica's event loop).

Replicas never read the live run directory: the driver (``build_app``) first makes the run's serving
snapshot (serve.snapshot.create: every file checked against the checksums its stage recorded, student and
index checked to belong together), and each replica re-hashes that snapshot's files before loading them
once, at start. The snapshot's digest is the ``version`` of /readyz and of every response. Deploying
another run directory under the same application name rolls replicas over (new ones start, old ones drain
their requests and stop); a run that fails verification (a truncated or corrupt index) fails the deploy
before any replica changes, so the old snapshot keeps serving.

``build_app(args)`` is the application builder for ``serve run configs/serve.yaml`` (import path
``serve.app:build_app``); ``deploy(run_dir, ...)`` starts Serve on 127.0.0.1 and deploys it from Python.
Where ``deploy`` starts the local Ray itself, the ingress replica serves HTTP itself by default (Serve's direct
ingress, :func:`direct_ingress_env`: no proxy hop); ``direct_ingress=False`` (``python -m serve --proxy``) keeps
Serve's HTTP proxy in front, and joining a cluster (``RAY_ADDRESS``) falls back to it (:func:`choose_ingress`).
"""

from __future__ import annotations

import asyncio
import logging
import os
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator
from ray import serve as rs

from serve.api import LOOPBACK_HOSTS, TOKEN_ENV, BackendUnavailable, Limits, create_app, token_digest
from serve.retries import RetryPolicy, RetryRefused, fingerprint

log = logging.getLogger("ray.serve")
driver_log = logging.getLogger("serve.app")  # the deploying process's messages (not a replica's)

APP_NAME = "distill"
DEFAULT_HOST = "127.0.0.1"
DEFAULT_PORT = 8000
PROJECT_ROOT = Path(__file__).resolve().parent.parent

# Serve's fast path (part of what RAY_SERVE_THROUGHPUT_OPTIMIZED turns on): user code and the handle
# routers run on the replica's own event loop instead of extra threads/loops. On 2 cores the thread
# hand-offs cost more than the work (measured here: 26 -> 70 req/s for a bare two-hop echo app). It
# requires that nothing blocks that loop: Retriever and Reranker compute on a dedicated thread.
FAST_PATH_ENV = {
    "RAY_SERVE_RUN_USER_CODE_IN_SEPARATE_THREAD": "0",
    "RAY_SERVE_RUN_ROUTER_IN_SEPARATE_LOOP": "0",
}


def _compute_pool(name: str, threads: int) -> ThreadPoolExecutor:
    """One worker thread for model compute (so it never blocks the replica's event loop), with torch
    limited to ``threads`` intra-op threads."""
    from serve.core import set_threads

    return ThreadPoolExecutor(1, thread_name_prefix=name, initializer=set_threads, initargs=(threads,))


# ---- deployments --------------------------------------------------------------------------------------
class _HoldsSnapshot:
    """A replica's lease on the snapshot it serves (serve.snapshot.Lease), so snapshot clean-up leaves it:
    taken at load, touched by Serve's periodic health check, released when Serve stops the replica."""

    lease = None

    def _hold(self, run_dir: str) -> None:
        from serve.snapshot import Lease

        self.lease = Lease(run_dir)

    def check_health(self) -> None:
        if self.lease is not None:
            self.lease.refresh()

    def __del__(self):
        if self.lease is not None:
            self.lease.release()


@rs.deployment(
    ray_actor_options={"num_cpus": 0.5},
    max_ongoing_requests=128,
    health_check_period_s=5,
    graceful_shutdown_wait_loop_s=0.5,
    graceful_shutdown_timeout_s=20,
)
class Retriever(_HoldsSnapshot):
    """Student query encoder + FAISS index of one snapshot (``run_dir``: its path, re-hashed at load)."""

    def __init__(
        self,
        run_dir: str,
        threads: int = 1,
        nprobe: int | None = None,
        ef_search: int | None = None,
        max_batch_size: int = 32,
        batch_wait_timeout_s: float = 0.002,
        precision: str = "auto",
    ):
        started = time.perf_counter()
        from serve.core import Retrieval  # torch and transformers: most of a new replica's start (issue 18)

        self.core = Retrieval(run_dir, nprobe=nprobe, ef_search=ef_search, threads=threads, precision=precision)
        self._batched.set_max_batch_size(max_batch_size)
        self._batched.set_batch_wait_timeout_s(batch_wait_timeout_s)
        self.pool = _compute_pool("retriever", threads)
        # The first forward pass allocates; keep it off the first request.
        self.pool.submit(self.core.search, ["warm up"], 1).result()
        self.stats = {"calls": 0, "batches": 0, "queries": 0}
        self._hold(run_dir)
        self.init_s = round(time.perf_counter() - started, 2)
        log.info("Retriever ready in %.1f s: %s (version %s, %d docs, %d threads, %s)", self.init_s, run_dir,
                 self.core.version, len(self.core.index), threads, self.core.precision)

    @rs.batch(max_batch_size=32, batch_wait_timeout_s=0.002)
    async def _batched(self, items: list[tuple[str, int]]) -> list[tuple[list[str], list[float], bool]]:
        depth = max(d for _, d in items)
        self.stats["batches"] += 1
        self.stats["queries"] += len(items)
        ids, scores, truncated = await asyncio.get_running_loop().run_in_executor(
            self.pool, self.core.search, [q for q, _ in items], depth
        )
        return [(i[:d], s[:d], t) for (_, d), i, s, t in zip(items, ids, scores, truncated)]

    async def search(self, queries: list[str], depth: int, with_text: bool = False) -> dict:
        rows = await asyncio.gather(*[self._batched((q, depth)) for q in queries])
        return {
            "version": self.core.version,
            "truncated": [t for _, _, t in rows],
            "candidates": [self.core.hits(i, s, with_text) for i, s, _ in rows],
        }

    async def search_many(self, requests: list[tuple[list[str], int, bool]]) -> list[dict]:
        """:meth:`search` for several requests in one call (the ingress coalesces its requests)."""
        self.stats["calls"] += 1
        return list(await asyncio.gather(*[self.search(q, d, t) for q, d, t in requests]))

    async def embed(self, texts: list[str]) -> dict:
        """The student's query embeddings (``POST /v1/embeddings``; serve.core.Retrieval.embed): one
        encoder call for the request's texts, on the compute thread."""
        return await asyncio.get_running_loop().run_in_executor(self.pool, self.core.embed, list(texts))

    async def info(self) -> dict:
        """Version and size of the loaded index, the seconds the replica's constructor took (imports, model and
        index load, snapshot re-hash, warm-up), and batching counters (handle calls received, encoder
        batches run, queries encoded) since the replica started."""
        return {
            "version": self.core.version,
            "docs": len(self.core.index),
            "has_text": self.core.has_text,
            "max_length": self.core.max_length,
            "precision": self.core.precision,
            "init_s": self.init_s,
            **self.stats,
        }


@rs.deployment(
    ray_actor_options={"num_cpus": 0.5},
    max_ongoing_requests=64,
    health_check_period_s=5,
    graceful_shutdown_wait_loop_s=0.5,
    graceful_shutdown_timeout_s=30,
)
class Reranker(_HoldsSnapshot):
    """The teacher (cross-encoder, or a dual encoder) scoring candidate texts."""

    def __init__(
        self,
        run_dir: str,
        threads: int = 1,
        batch_size: int = 32,
        max_batch_size: int = 4,
        batch_wait_timeout_s: float = 0.005,
        teacher: str | None = None,
        trust_remote_code: bool = False,
        precision: str = "auto",
    ):
        from serve.core import Reranking

        self.core = Reranking.from_run(run_dir, teacher, trust_remote_code, threads=threads, batch_size=batch_size,
                                       precision=precision)
        self._batched.set_max_batch_size(max_batch_size)
        self._batched.set_batch_wait_timeout_s(batch_wait_timeout_s)
        self.pool = _compute_pool("reranker", threads)
        self.pool.submit(self.core.score, ["warm up"], ["warm up"]).result()
        self._hold(run_dir)
        log.info("Reranker ready: %s (%s, %s)", self.core.spec.path, self.core.spec.kind, self.core.precision)

    @rs.batch(max_batch_size=4, batch_wait_timeout_s=0.005)
    async def _batched(self, items: list[tuple[str, list[str]]]) -> list[list[float]]:
        flat_q = [q for q, ts in items for _ in ts]
        flat_d = [t for _, ts in items for t in ts]
        loop = asyncio.get_running_loop()
        scores = (await loop.run_in_executor(self.pool, self.core.score, flat_q, flat_d)).tolist()
        out, i = [], 0
        for _, ts in items:
            out.append(scores[i : i + len(ts)])
            i += len(ts)
        return out

    async def rerank(self, queries: list[str], texts: list[list[str]]) -> list[list[float]]:
        """Scores per query. Each query's texts go to the batcher in chunks of ``batch_size`` pairs, so
        one forward pass never holds more than ``max_batch_size`` chunks, other requests' chunks
        interleave with a large request's, and a cancelled request (its deadline passed, its client
        left) stops at the next chunk: the batcher drops the chunks of a cancelled request."""
        size = max(1, self.core.batch_size)
        chunks = [(qi, q, ts[i : i + size]) for qi, (q, ts) in enumerate(zip(queries, texts))
                  for i in range(0, len(ts), size)]
        scores = await asyncio.gather(*[self._batched((q, c)) for _, q, c in chunks])
        out: list[list[float]] = [[] for _ in queries]
        for (qi, _, _), s in zip(chunks, scores):
            out[qi].extend(s)
        return out


def _died_errors() -> tuple:
    """The replica died while it had the call (the call may have been its cause)."""
    from ray.exceptions import ActorDiedError, RayActorError

    return (ActorDiedError, RayActorError)


def _replica_unavailable_errors() -> tuple:
    """The replica could not take the call (starting, draining): the call did not run."""
    from ray.exceptions import ActorUnavailableError
    from ray.serve.exceptions import ReplicaUnavailableError

    return (ActorUnavailableError, ReplicaUnavailableError)


def _unavailable_errors() -> tuple:
    from ray.serve.exceptions import BackPressureError, DeploymentUnavailableError

    return (BackPressureError, DeploymentUnavailableError)


class NotReady(RuntimeError):
    """The application is not healthy (a deployment failed, no running replica); ``replicas`` says what
    runs."""

    def __init__(self, message: str, replicas: dict[str, int] | None = None):
        super().__init__(message)
        self.replicas = replicas


def _value(x) -> str:
    return str(getattr(x, "value", x))


def readiness_from_status(app, required=("Retriever",)) -> dict[str, int]:
    """Running replicas per deployment from Serve's status of one application (an
    ``ApplicationStatusOverview``, as ``serve.status().applications[name]``); raises :class:`NotReady`
    when the application or a deployment is UNHEALTHY or DEPLOY_FAILED, or a ``required`` deployment has
    no running replica. A deployment that is UPDATING, UPSCALING or DOWNSCALING with running replicas
    (a swap, an autoscaling step) is ready."""
    if app is None:
        raise NotReady("application not found in serve.status()")
    replicas = {name: int(sum(n for st, n in (d.replica_states or {}).items() if _value(st) == "RUNNING"))
                for name, d in (app.deployments or {}).items()}
    bad = {name: d for name, d in (app.deployments or {}).items()
           if _value(d.status) in ("UNHEALTHY", "DEPLOY_FAILED")}
    if bad:
        raise NotReady("; ".join(f"{name} is {_value(d.status)}: {(d.message or '').strip()[:200]}"
                                 for name, d in bad.items()), replicas)
    if _value(app.status) in ("UNHEALTHY", "DEPLOY_FAILED", "DELETING"):
        raise NotReady(f"application is {_value(app.status)}: {(app.message or '').strip()[:300]}", replicas)
    missing = [name for name in required if replicas.get(name, 0) < 1]
    if missing:
        raise NotReady(f"no running replica of {', '.join(missing)}", replicas)
    return replicas


def _app_status(app_name: str):
    """Serve's status of ``app_name`` (a blocking controller call: run it on a thread)."""
    return rs.status().applications.get(app_name)


class ServeBackend:
    """:class:`serve.api.Backend` over deployment handles.

    Retrieval calls are coalesced: requests that arrive while earlier retriever calls are in flight
    (at most ``max_inflight`` per ingress replica) go to the Retriever together in one handle call, so
    the cost of a Ray call is paid per batch, not per request; at low load a request goes at once
    (no added wait). Calls whose replica died or was unavailable are sent again as serve.retries says:
    a request whose replica died under it twice in a row is answered 503 and not sent again (a request that
    kills replicas takes down at most two), and the same request is refused for a while after."""

    def __init__(
        self, retriever, reranker=None, attempts: int = 3, max_inflight: int = 4, max_coalesce: int = 8,
        app_name: str | None = None,
    ):
        self.retriever = retriever
        self.reranker = reranker
        self.has_reranker = reranker is not None
        self.app_name = app_name
        self.retry = RetryPolicy(_died_errors(), _replica_unavailable_errors(), attempts=attempts)
        self.unavailable = _unavailable_errors()
        self._coalesced = rs.batch(
            max_batch_size=max_coalesce, batch_wait_timeout_s=0.0, max_concurrent_batches=max_inflight
        )(self._search_many)

    async def _call(self, what: str, make, fp: str | None = None):
        """``make()``'s answer, sent again after a replica death or unavailability as ``self.retry`` allows
        (``fp``: the request's :func:`serve.retries.fingerprint`); 503 (:class:`BackendUnavailable`) when
        it refuses, or when Serve sheds the call."""
        try:
            self.retry.check(fp)
        except RetryRefused as err:
            raise BackendUnavailable(f"{what}: {err}") from None
        deaths = 0
        for attempt in range(self.retry.attempts):
            try:
                return await make()
            except self.retry.retryable as err:
                deaths += self.retry.is_death(err)
                try:
                    wait = self.retry.after_failure(err, attempt, deaths, fp)
                except RetryRefused as refused:
                    log.warning("%s: %s", what, refused)
                    raise BackendUnavailable(f"{what}: {refused}") from err
                log.warning("%s: %s, retrying (%d/%d)", what, type(err).__name__, attempt + 1,
                            self.retry.attempts - 1)
                await asyncio.sleep(wait)
            except self.unavailable as err:
                raise BackendUnavailable(f"{what}: {type(err).__name__}: {err}") from err

    async def _search_many(self, requests: list[tuple[list[str], int, bool]]) -> list[dict]:
        return await self.retriever.search_many.remote(requests)

    async def retrieve(self, queries: list[str], depth: int, with_text: bool) -> dict:
        return await self._call("retriever", lambda: self._coalesced((list(queries), depth, with_text)),
                                fingerprint("search", list(queries), depth, with_text))

    async def rerank(self, queries: list[str], texts: list[list[str]]) -> list[list[float]]:
        return await self._call("reranker", lambda: self.reranker.rerank.remote(queries, texts),
                                fingerprint("rerank", list(queries), texts))

    async def embed(self, texts: list[str]) -> dict:
        return await self._call("retriever", lambda: self.retriever.embed.remote(texts),
                                fingerprint("embed", list(texts)))

    async def ready(self) -> dict:
        """The Retriever answers, and Serve reports the application healthy (serve.status(), read from the
        controller on a thread): running replicas per deployment, or :class:`NotReady`. The API bounds
        the time this takes and caches the answer (serve.api.Limits.ready_timeout_s / ready_cache_s)."""
        replicas = None
        if self.app_name is not None:
            status = await asyncio.to_thread(_app_status, self.app_name)
            required = ("Retriever", "Reranker") if self.has_reranker else ("Retriever",)
            replicas = readiness_from_status(status, required)
        info = await self._call("retriever", lambda: self.retriever.info.remote())
        return {"version": info["version"], "reranker": self.has_reranker, "replicas": replicas}


@rs.deployment(
    ray_actor_options={"num_cpus": 0.1},
    max_ongoing_requests=2048,
    health_check_period_s=5,
    graceful_shutdown_wait_loop_s=0.5,
    graceful_shutdown_timeout_s=30,
)
@rs.ingress()
class SearchIngress:
    """The HTTP ingress: the FastAPI app of :func:`serve.api.create_app` over a :class:`ServeBackend`."""

    def __init__(
        self,
        retriever,
        reranker=None,
        token_sha256: str | None = None,
        max_inflight: int = 4,
        max_coalesce: int = 8,
        allowed_hosts: list[str] | None = None,
        limits: dict | None = None,
    ):
        try:
            app_name = rs.get_replica_context().app_name
        except Exception:  # noqa: BLE001 - outside a replica (never under Serve)
            app_name = None
        self.backend = ServeBackend(retriever, reranker, max_inflight=max_inflight, max_coalesce=max_coalesce,
                                    app_name=app_name)
        self.token_sha256 = token_sha256
        self.allowed_hosts = allowed_hosts
        self.limits = Limits(**(limits or {}))

    def __serve_build_asgi_app__(self):
        return create_app(self.backend, token_sha256=self.token_sha256, allowed_hosts=self.allowed_hosts,
                          limits=self.limits)


# ---- application builder ------------------------------------------------------------------------------
class AppArgs(BaseModel):
    """Arguments of :func:`build_app` (the ``args`` of an application in configs/serve.yaml)."""

    model_config = ConfigDict(extra="forbid")

    run_dir: str = Field(
        description="run directory with student/ and index/ (relative: to cwd, else project root), served "
        "through its verified snapshot; or a snapshot directory (serve.snapshot)"
    )
    snapshots_dir: str | None = Field(
        None, description="where the run's snapshot is made (default: <run_dir>/snapshots); every replica "
        "must be able to read it")
    rerank: bool = Field(False, description="also deploy the teacher as a Reranker")
    teacher: str | None = Field(
        None, description="the reranker's model (local dir, hub id or python:<module>) when the run has no "
        "teacher_model/ of its own; a name recorded in the run's manifest is never loaded")
    teacher_trust_remote_code: bool = Field(
        False, description="let the teacher's own code run (never taken from the run's manifest)")
    precision: Literal["auto", "fp32", "bf16"] = Field(
        "auto", description="query encoding and reranking: bf16 autocast or fp32; auto: bf16 only where the "
        "replica's CPU has native bf16 and it measured faster (distill.precision)")
    token_env: str = Field(TOKEN_ENV, description="env var holding the bearer token (unset: no auth; set but "
                           "blank: an error)")
    allowed_hosts: list[str] = Field(
        default_factory=list, description="without a token: Host header names accepted besides the loopback "
        "names (the bound address; '*': any, which leaves DNS rebinding open)")
    retriever_threads: int = Field(1, ge=1)
    retriever_cpus: float = Field(0.5, gt=0)
    retriever_replicas: int | None = Field(
        None, ge=1, description="fixed replica count (None: autoscaling between retriever_min_replicas and "
        "retriever_max_replicas)"
    )
    max_batch_size: int = Field(32, ge=1)
    batch_wait_timeout_s: float = Field(0.002, ge=0)
    nprobe: int | None = Field(None, ge=1)
    ef_search: int | None = Field(None, ge=1)
    reranker_threads: int = Field(1, ge=1)
    reranker_cpus: float = Field(0.5, gt=0)
    reranker_replicas: int | None = Field(None, ge=1, description="fixed count (None: autoscaling)")
    rerank_batch_size: int = Field(32, ge=1, description="pairs per teacher forward pass")
    rerank_max_batch_size: int = Field(4, ge=1, description="queries per @serve.batch call")
    rerank_batch_wait_timeout_s: float = Field(0.005, ge=0)
    ingress_replicas: int | None = Field(None, ge=1)
    ingress_cpus: float = Field(0.1, ge=0)
    retriever_resources: dict[str, float] = Field(
        default_factory=dict, description="Ray custom resources per Retriever replica (placement on a cluster, "
        "e.g. {\"retriever_node\": 1} with nodes started with --resources)")
    reranker_resources: dict[str, float] = Field(default_factory=dict, description="the same for each Reranker")
    ingress_resources: dict[str, float] = Field(default_factory=dict, description="the same for each ingress")
    ingress_max_inflight: int = Field(
        4,
        ge=1,
        description="retriever calls in flight per ingress replica; "
        "requests arriving meanwhile are coalesced into the next call",
    )
    ingress_max_coalesce: int = Field(
        8,
        ge=1,
        description="requests per coalesced retriever call (small enough "
        "that a burst spreads over the Retriever replicas)",
    )
    fast_path: bool = Field(
        True,
        description="set FAST_PATH_ENV in the replicas (user code and routers on the replica's event loop)",
    )
    env: dict[str, str] = Field(default_factory=dict, description="extra env vars for the replicas")
    # -- overload (serve.api.Limits; per ingress replica) and Serve's own queue bounds --------------------
    request_timeout_s: float = Field(
        10.0, gt=0, description="server-side deadline of every /search, /v1/embeddings and /rerank request "
        "(queueing included): past it the work is cancelled and the answer is 503; the proxy's own "
        "request_timeout_s is this + 2 s (python -m serve)")
    max_inflight_requests: int = Field(32, ge=1, description="work requests computing at once per ingress "
                                       "replica")
    max_queued_requests: int = Field(512, ge=0, description="work requests waiting for a slot per ingress "
                                     "replica at most; past that (or past queue_wait_s): 503 with Retry-After")
    queue_wait_s: float | None = Field(
        None, ge=0, description="queue a request only while its expected wait (the requests ahead over the "
        "recent completion rate) is within this; default half of request_timeout_s")
    max_rerank_pairs: int = Field(1000, ge=1, description="(query, document) pairs one request may ask the "
                                  "teacher for (queries x rerank depth); more is a 422 naming the limit")
    retry_after_s: int = Field(1, ge=0, description="Retry-After of a 503")
    shed_hold_s: float = Field(1.0, ge=0, description="a refusal for a full queue is held this long before "
                               "its 503 (bounded by the deadline), so clients that re-send at once cannot "
                               "make refusals a storm that starves the admitted work; 0: at once")
    max_held_requests: int = Field(1024, ge=0, description="refusals held at once per ingress replica; "
                                   "more are answered at once")
    ingress_max_ongoing_requests: int = Field(
        2048, ge=1, description="Serve: requests at once per ingress replica; above max_inflight + "
        "max_queued + max_held_requests, so the app's own admission (cheap refusals, held) decides, not "
        "Serve's queue")
    ingress_max_queued_requests: int = Field(256, ge=1, description="Serve: requests held waiting for the "
                                             "ingress (by the ingress replica itself under direct ingress, by the "
                                             "proxy otherwise); past that: 503 with Retry-After")
    retriever_max_ongoing_requests: int = Field(128, ge=1)
    retriever_max_queued_requests: int = Field(64, ge=1, description="handle calls queued for the Retriever "
                                               "at each caller; past that: 503")
    reranker_max_ongoing_requests: int = Field(64, ge=1)
    reranker_max_queued_requests: int = Field(32, ge=1)
    # -- autoscaling (when retriever_replicas / reranker_replicas are not fixed) -------------------------------
    retriever_min_replicas: int = Field(1, ge=1)
    retriever_max_replicas: int = Field(2, ge=1)
    retriever_target_ongoing_requests: float = Field(
        1.5, gt=0, description="ongoing handle calls per Retriever replica Serve aims at (the ingress "
        "coalesces up to ingress_max_coalesce requests per call, at most ingress_max_inflight calls per "
        "ingress replica; a replica computes one call at a time, so a second one waits: with 2, 16 clients "
        "made about 2 calls of 8 and sat at the target without scaling; with 1, one client's single call "
        "hovered at the target and could add a replica)")
    reranker_min_replicas: int = Field(1, ge=1)
    reranker_max_replicas: int = Field(2, ge=1)
    reranker_target_ongoing_requests: float = Field(2.0, gt=0)
    upscale_delay_s: float = Field(3.0, ge=0, description="load above target this long before adding a replica")
    downscale_delay_s: float = Field(60.0, ge=0, description="load below target this long before removing one")
    autoscaling_metrics_interval_s: float | None = Field(
        1.0, gt=0, description="how often replicas and handles push their ongoing-request counts to Serve's "
        "controller (Serve's default, used when None: 10 s, which alone can delay a scale-up by 10 s)")
    autoscaling_look_back_period_s: float | None = Field(
        5.0, gt=0, description="the window Serve averages those counts over (Serve's default, used when None: "
        "30 s: the average then takes about 10 s to show a load that doubled)")

    @model_validator(mode="after")
    def _bounds(self) -> "AppArgs":
        for who in ("retriever", "reranker"):
            lo, hi = getattr(self, f"{who}_min_replicas"), getattr(self, f"{who}_max_replicas")
            if lo > hi:
                raise ValueError(f"{who}_min_replicas ({lo}) > {who}_max_replicas ({hi})")
        admitted = self.max_inflight_requests + self.max_queued_requests + self.max_held_requests
        if self.ingress_max_ongoing_requests < admitted:
            raise ValueError(f"ingress_max_ongoing_requests ({self.ingress_max_ongoing_requests}) must be at least "
                             f"max_inflight_requests + max_queued_requests + max_held_requests ({admitted}): "
                             "Serve would queue what the app means to refuse")
        return self

    def limits(self) -> dict:
        """The ingress's serve.api.Limits as a dict."""
        return {"request_timeout_s": self.request_timeout_s, "max_inflight": self.max_inflight_requests,
                "max_queued": self.max_queued_requests, "max_rerank_pairs": self.max_rerank_pairs,
                "retry_after_s": self.retry_after_s, "shed_hold_s": self.shed_hold_s, "queue_wait_s": self.queue_wait_s,
                "max_held": self.max_held_requests}

    def autoscaling(self, who: str) -> dict:
        """Serve's autoscaling_config for ``retriever`` or ``reranker``."""
        cfg = {"min_replicas": getattr(self, f"{who}_min_replicas"),
               "max_replicas": getattr(self, f"{who}_max_replicas"),
               "initial_replicas": getattr(self, f"{who}_min_replicas"),
               "target_ongoing_requests": getattr(self, f"{who}_target_ongoing_requests"),
               "upscale_delay_s": self.upscale_delay_s, "downscale_delay_s": self.downscale_delay_s}
        if self.autoscaling_metrics_interval_s is not None:
            cfg["metrics_interval_s"] = self.autoscaling_metrics_interval_s
        if self.autoscaling_look_back_period_s is not None:
            cfg["look_back_period_s"] = self.autoscaling_look_back_period_s
        return cfg


def resolve_run_dir(run_dir: str | Path) -> Path:
    p = Path(run_dir).expanduser()
    if not p.is_absolute() and not p.exists() and (PROJECT_ROOT / p).exists():
        p = PROJECT_ROOT / p
    return p.resolve()


def serving_snapshot(run_dir: str | Path, snapshots_dir: str | Path | None = None) -> Path:
    """The verified snapshot to serve: ``run_dir``'s (serve.snapshot.create: made or reused), or
    ``run_dir`` itself when it is a snapshot that verifies. Raises serve.core.ServeSetupError."""
    from serve import snapshot

    run_dir = resolve_run_dir(run_dir)
    if snapshot.is_snapshot(run_dir):
        snapshot.verify(run_dir)
        return run_dir
    return snapshot.create(run_dir, snapshots_dir)


def build_app(args: dict | AppArgs):
    """Application builder (``serve.app:build_app``): makes and verifies the run's snapshot here, before
    any replica starts, so a bad path or a corrupt run fails the deploy with a clear message (and a running
    app keeps its replicas); the replicas get the snapshot's path, never the run directory."""
    from serve.core import RunArtifacts, ServeSetupError

    a = args if isinstance(args, AppArgs) else AppArgs.model_validate(dict(args or {}))
    run_dir = serving_snapshot(a.run_dir, a.snapshots_dir)
    art = RunArtifacts.load(run_dir, verify=())  # just verified
    token = os.environ.get(a.token_env, "").strip()
    if a.token_env in os.environ and not token:
        raise ServeSetupError(f"{a.token_env} is set but blank: set a token, or unset it to serve without one")
    env = {**(FAST_PATH_ENV if a.fast_path else {}), **a.env}

    backpressure = {"status_code": 503, "retry_after_s": a.retry_after_s}

    def opts(replicas, cpus, ongoing, queued, autoscaling=None, resources=None):
        o = {"ray_actor_options": {"num_cpus": cpus, **({"runtime_env": {"env_vars": env}} if env else {}),
                                   **({"resources": dict(resources)} if resources else {})},
             "max_ongoing_requests": ongoing, "max_queued_requests": queued,
             "backpressure_config": backpressure}
        if replicas is not None:
            o["num_replicas"] = replicas
        elif autoscaling is not None:
            o["autoscaling_config"] = autoscaling
        return o

    retriever = Retriever.options(**opts(
        a.retriever_replicas, a.retriever_cpus, a.retriever_max_ongoing_requests, a.retriever_max_queued_requests,
        a.autoscaling("retriever"), a.retriever_resources)).bind(
        str(run_dir), a.retriever_threads, a.nprobe, a.ef_search, a.max_batch_size, a.batch_wait_timeout_s,
        a.precision,
    )
    reranker = None
    if a.rerank:
        if art.docs is None:
            raise ServeSetupError(
                f"rerank needs the corpus text: {art.index / 'docs.parquet'} is missing "
                "(re-run the index stage with the corpus)"
            )
        art.teacher(a.teacher, a.teacher_trust_remote_code)  # fails here when there is no teacher to load
        reranker = Reranker.options(**opts(
            a.reranker_replicas, a.reranker_cpus, a.reranker_max_ongoing_requests, a.reranker_max_queued_requests,
            a.autoscaling("reranker"), a.reranker_resources)).bind(
            str(run_dir),
            a.reranker_threads,
            a.rerank_batch_size,
            a.rerank_max_batch_size,
            a.rerank_batch_wait_timeout_s,
            a.teacher,
            a.teacher_trust_remote_code,
            a.precision,
        )
    return SearchIngress.options(**opts(
        a.ingress_replicas, a.ingress_cpus, a.ingress_max_ongoing_requests, a.ingress_max_queued_requests,
        resources=a.ingress_resources)).bind(
        retriever,
        reranker,
        token_digest(token) if token else None,
        a.ingress_max_inflight,
        a.ingress_max_coalesce,
        None if token else [*LOOPBACK_HOSTS, *a.allowed_hosts],  # DNS-rebinding defence without a token
        a.limits(),
    )


def bound_host_names(host: str) -> list[str]:
    """Host header names that address a server bound to ``host``: the address itself, or this machine's
    name for a wildcard bind (its other names and addresses: ``allowed_hosts``)."""
    import socket

    return [socket.gethostname()] if host in ("0.0.0.0", "::", "") else [host]


def _free_port(host: str) -> int:
    import socket

    with socket.socket() as s:
        s.bind((host, 0))
        return s.getsockname()[1]


def direct_ingress_env(port: int) -> dict[str, str]:
    """Env for Serve's direct ingress with the (single) ingress replica serving HTTP on ``port``.

    The replica runs the HTTP server itself, so a request skips the proxy actor and its round trips
    (measured here on a bare two-hop app: about 23 -> 7.5 ms CPU per request). The controller hands
    ingress replicas ports from [port, port+100); one replica gets ``port``. Serve still starts its
    proxy, on another port. An ingress replaced by a redeploy may come up on port+1 while the old
    one drains: :func:`deploy` keeps the ingress replica across a run-dir swap (its arguments do not
    change: same code version), and deletes the application first when they do. A port freed by a stopped
    ingress replica is free again at once (``RAY_SERVE_PORT_QUARANTINE_S`` 0: the quarantine is for
    HAProxy, not used here), so an ingress replica that Serve restarts after a crash comes back on ``port``. The replica enforces the ingress's
    ``max_ongoing_requests`` / ``max_queued_requests`` (503 + Retry-After past them) and the HTTP request
    timeout itself, as the proxy does otherwise."""
    return {
        "RAY_SERVE_ENABLE_DIRECT_INGRESS": "1",
        "RAY_SERVE_DIRECT_INGRESS_MIN_HTTP_PORT": str(port),
        "RAY_SERVE_DIRECT_INGRESS_MAX_HTTP_PORT": str(port + 100),
        "RAY_SERVE_DIRECT_INGRESS_MIN_DRAINING_PERIOD_S": "1",
        "RAY_SERVE_PORT_QUARANTINE_S": "0",
    }


def choose_ingress(direct_ingress: bool | None, port: int, ingress_replicas: int | None = None,
                   ray_started: bool | None = None, environ=os.environ) -> tuple[bool, str | None]:
    """Whether HTTP is served by the ingress replica itself (direct ingress) or through Serve's proxy, and
    why the proxy when direct ingress was wanted (None: no fallback).

    ``direct_ingress`` None (the default): direct unless it cannot work here: this process joins a cluster
    (``RAY_ADDRESS``: the cluster's processes were started with their own environment), Ray is already
    running without :func:`direct_ingress_env` for ``port``, or more than one ingress replica (each would
    serve its own port). ``True``: direct, a ValueError naming the reason where it cannot work; ``False``:
    the proxy (``python -m serve --proxy``). ``ray_started``: whether Ray is up in this process (default:
    ``ray.is_initialized()``)."""
    if direct_ingress is False:
        return False, None
    if ray_started is None:
        import ray

        ray_started = ray.is_initialized()
    why = None
    if ingress_replicas is not None and ingress_replicas > 1:
        why = f"{ingress_replicas} ingress replicas (direct ingress would give each its own port)"
    elif ray_started:
        want = direct_ingress_env(port)
        if any(environ.get(k) != want[k] for k in ("RAY_SERVE_ENABLE_DIRECT_INGRESS",
                                                   "RAY_SERVE_DIRECT_INGRESS_MIN_HTTP_PORT")):
            why = f"Ray was started in this process without serve.app.direct_ingress_env({port})"
    elif environ.get("RAY_ADDRESS", "") not in ("", "local"):
        why = (f"joining the Ray cluster at RAY_ADDRESS={environ['RAY_ADDRESS']} (direct ingress is set where "
               "the cluster starts)")
    if why and direct_ingress:
        raise ValueError(f"direct ingress cannot work here: {why}")
    return why is None, why


_ENV_SAVED: dict[str, str | None] = {}  # what start_serve changed in os.environ (shutdown puts it back)


def _set_env(values: dict[str, str]) -> None:
    for k, v in values.items():
        _ENV_SAVED.setdefault(k, os.environ.get(k))
        os.environ[k] = v


PROXY_TIMEOUT_MARGIN_S = 2.0  # the proxy's request_timeout_s: the app's deadline plus this


def start_serve(
    host: str = DEFAULT_HOST, port: int = DEFAULT_PORT, fast_path: bool = True, direct_ingress: bool | None = None,
    request_timeout_s: float | None = 10.0 + PROXY_TIMEOUT_MARGIN_S, ingress_replicas: int | None = None,
) -> bool:
    """Start Serve (and a local Ray if none is connected) with HTTP on ``host:port``; returns whether the
    ingress replica serves it directly (:func:`choose_ingress` decides; ``direct_ingress`` as there).

    A local Ray started here inherits :data:`FAST_PATH_ENV` (unless already set), so the HTTP proxy
    takes the fast path too; on a cluster started elsewhere only the replicas get it (build_app).
    Direct ingress (:func:`direct_ingress_env`) moves the proxy to a free port; the proxy path turns
    direct ingress off in the Ray started here."""
    import ray

    direct, why = choose_ingress(direct_ingress, port, ingress_replicas)
    if why:
        driver_log.warning("serving through Serve's HTTP proxy, not direct ingress: %s", why)
    started = ray.is_initialized()
    if not started:
        _set_env(direct_ingress_env(port) if direct else {"RAY_SERVE_ENABLE_DIRECT_INGRESS": "0"})
        if fast_path:
            for k, v in FAST_PATH_ENV.items():
                os.environ.setdefault(k, v)
        env = {k: os.environ[k] for k in ("HF_HUB_OFFLINE", "TOKENIZERS_PARALLELISM") if k in os.environ}
        # A fresh local Ray unless RAY_ADDRESS names a cluster (never an unrelated `ray start` one).
        ray.init(
            address=os.environ.get("RAY_ADDRESS") or "local",
            include_dashboard=False,
            runtime_env={"env_vars": env} if env else None,
            log_to_driver=False,
        )
    rs.start(http_options=http_options(host, _free_port(host) if direct else port, request_timeout_s))
    return direct


def http_options(host: str, port: int, request_timeout_s: float | None) -> dict:
    """Serve's HTTP options: the bind, and the proxy's end-to-end request timeout (a backstop behind
    the app's own deadline, which answers first with a 503 naming it)."""
    return {"host": host, "port": port,
            **({"request_timeout_s": request_timeout_s} if request_timeout_s is not None else {})}


def deploy(
    run_dir: str | Path,
    rerank: bool = False,
    name: str = APP_NAME,
    host: str = DEFAULT_HOST,
    port: int = DEFAULT_PORT,
    logging_config: dict | None = None,
    direct_ingress: bool | None = None,
    **args,
) -> str:
    """Deploy (or re-deploy) the app for ``run_dir`` (a run directory, served through its verified
    snapshot, or a snapshot directory) under ``name``; returns its base URL (``host:port``, served by the
    ingress replica itself unless :func:`choose_ingress` picks the proxy; ``direct_ingress`` as there).

    Calling it again with another run directory and the same name swaps the index: Serve starts replicas
    on the new snapshot, moves traffic to them and drains the old ones; requests in flight finish. A run
    that fails verification raises serve.core.ServeSetupError before Serve is touched: the app already
    deployed keeps serving its snapshot."""
    snapshot = serving_snapshot(run_dir, args.pop("snapshots_dir", None))  # before Serve is touched
    proxy_timeout = float(args.get("request_timeout_s", 10.0)) + PROXY_TIMEOUT_MARGIN_S
    direct = start_serve(host, port, fast_path=args.get("fast_path", True), direct_ingress=direct_ingress,
                         request_timeout_s=proxy_timeout, ingress_replicas=args.get("ingress_replicas"))
    args["allowed_hosts"] = [*args.get("allowed_hosts", []), *bound_host_names(host)]
    app = build_app({"run_dir": str(snapshot), "rerank": rerank, **args})
    key = _ingress_key(app)
    app = _versioned_ingress(app, key)
    if direct and _DEPLOYED_INGRESS.get(name, key) != key:
        driver_log.warning("the ingress's arguments changed: deleting application %r before deploying it again "
                           "(a new ingress replica would take the next port while the old one drains)", name)
        rs.delete(name)
    rs.run(app, name=name, route_prefix="/", blocking=False, logging_config=logging_config)
    _DEPLOYED_INGRESS[name] = key
    return f"http://{host}:{port}"


_DEPLOYED_INGRESS: dict[str, str] = {}  # application name -> _ingress_key of what deploy() last deployed


def _ingress_key(app) -> str:
    """What replaces the ingress replica when it changes: its init arguments (the Retriever/Reranker by
    presence) and actor options."""
    d = app._bound_deployment
    return repr(([a is None for a in d.init_args[:2]], d.init_args[2:], d.init_kwargs, d.ray_actor_options))


def _versioned_ingress(app, key: str):
    """``app`` with its ingress's code version derived from ``key``: ``serve.run`` otherwise gives every
    deployment a random version, so each redeploy (a run-dir swap too) replaced the ingress replica, which
    under direct ingress drops the connections it holds and may move it to the next port. Retriever and
    Reranker keep random versions: a swap replaces them (new replicas on the new snapshot, the old drain)."""
    import hashlib

    d = app._bound_deployment
    version = hashlib.sha256(key.encode()).hexdigest()[:16]
    return d.options(version=version, _internal=True).bind(*d.init_args, **d.init_kwargs)


def shutdown() -> None:
    """Stop Serve and, if this process started it, the local Ray; the env start_serve set is put back."""
    import ray

    try:
        if ray.is_initialized():
            rs.shutdown()
    finally:
        if ray.is_initialized():
            ray.shutdown()
        _DEPLOYED_INGRESS.clear()
        while _ENV_SAVED:
            k, v = _ENV_SAVED.popitem()
            if v is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = v
