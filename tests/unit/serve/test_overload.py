"""Overload behaviour of the HTTP API (serve/api.py) without Ray: admission (bounded in-flight work and
a bounded wait, then 503 + Retry-After, held first so that re-sending at once cannot become a storm), the server-side deadline that cancels the work, the
per-request rerank cost bound, health and readiness that never wait behind searches, readiness that is
bounded and cached, replica counts in /readyz and /metrics. serve.app's readiness rules from Serve's
status and the Serve options build_app sets (queue bounds, backpressure, autoscaling): test_app.py.

Concurrency is driven on one event loop through httpx's ASGI transport; nothing asserts a duration:
ordering (an answer arrives while the backend is still blocked) shows "at once"."""

from __future__ import annotations

import asyncio

import httpx
import pytest

from serve.api import Limits, create_app


class BlockingBackend:
    """retrieve/rerank/embed wait on ``gate`` (an asyncio.Event) and record whether they were cancelled."""

    def __init__(self, has_reranker: bool = True, ready_info: dict | None = None, ready_hangs: bool = False):
        self.has_reranker = has_reranker
        self.gate: asyncio.Event | None = None
        self.started = 0
        self.cancelled = 0
        self.finished = 0
        self.ready_calls = 0
        self.ready_info = ready_info or {"version": "v1", "reranker": has_reranker}
        self.ready_hangs = ready_hangs

    async def _work(self):
        self.started += 1
        try:
            await self.gate.wait()
        except asyncio.CancelledError:
            self.cancelled += 1
            raise
        self.finished += 1

    async def retrieve(self, queries, depth, with_text):
        await self._work()
        cands = [[{"docid": f"d{i}", "score": 1.0 - i / 1000, "text": f"t{i}"} for i in range(depth)]
                 for _ in queries]
        return {"version": "v1", "candidates": cands, "truncated": [False] * len(queries)}

    async def rerank(self, queries, texts):
        await self._work()
        return [[float(i) for i in range(len(ts))] for ts in texts]

    async def embed(self, texts):
        await self._work()
        return {"model": "run", "version": "v1", "embeddings": [[1.0, 0.0] for _ in texts], "tokens": [1] * len(texts)}

    async def ready(self):
        self.ready_calls += 1
        if self.ready_hangs:
            await asyncio.Event().wait()
        return dict(self.ready_info)


def _run(coro):
    return asyncio.run(asyncio.wait_for(coro, 60))


def _client(app):
    return httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://127.0.0.1")


async def _until(cond, what: str):
    for _ in range(2000):
        if cond():
            return
        await asyncio.sleep(0.005)
    raise AssertionError(f"never happened: {what}")


def test_excess_load_gets_503_with_retry_after_while_admitted_work_waits():
    backend = BlockingBackend()
    app = create_app(backend, limits=Limits(max_inflight=2, max_queued=1, retry_after_s=3, shed_hold_s=0))

    async def go():
        backend.gate = asyncio.Event()
        async with _client(app) as c:
            tasks = [asyncio.create_task(c.post("/search", json={"query": f"q{i}"})) for i in range(6)]
            await _until(lambda: sum(t.done() for t in tasks) >= 3, "3 refusals")
            # The refusals came back while the admitted requests are still blocked in the backend.
            assert backend.finished == 0 and backend.started == 2
            refused = [t.result() for t in tasks if t.done()]
            assert len(refused) == 3
            for r in refused:
                assert r.status_code == 503 and r.headers["retry-after"] == "3"
                assert "overloaded" in r.json()["detail"] and "max_inflight 2" in r.json()["detail"]
            # Health, readiness and metrics are answered while every slot is taken.
            assert (await c.get("/healthz")).status_code == 200
            assert (await c.get("/readyz")).json()["status"] == "ready"
            metrics = (await c.get("/metrics")).text
            assert "distill_requests_inflight 2.0" in metrics and "distill_requests_queued 1.0" in metrics
            assert 'distill_requests_shed_total{reason="overloaded",route="/search"} 3.0' in metrics
            backend.gate.set()
            rest = await asyncio.gather(*[t for t in tasks if not t.done()])
            assert [r.status_code for r in rest] == [200, 200, 200]  # 2 in flight + the queued one
            # The slots were given back: a new request is admitted.
            assert (await c.post("/search", json={"query": "again"})).status_code == 200

    _run(go())


def test_a_refusal_is_held_before_its_503_and_past_max_held_answered_at_once():
    backend = BlockingBackend()
    app = create_app(backend, limits=Limits(max_inflight=1, max_queued=0, shed_hold_s=30, max_held=2))

    async def go():
        backend.gate = asyncio.Event()
        async with _client(app) as c:
            first = asyncio.create_task(c.post("/search", json={"query": "admitted"}))
            await _until(lambda: backend.started == 1, "the first request admitted")
            tasks = [asyncio.create_task(c.post("/search", json={"query": f"q{i}"})) for i in range(5)]
            # 2 refusals are held (max_held), the other 3 are answered at once.
            await _until(lambda: sum(t.done() for t in tasks) == 3, "3 refusals at once")
            metrics = (await c.get("/metrics")).text
            assert "distill_requests_held 2.0" in metrics
            assert 'distill_requests_shed_total{reason="overloaded",route="/search"} 5.0' in metrics
            assert all(t.result().status_code == 503 for t in tasks if t.done())
            held = [t for t in tasks if not t.done()]
            assert len(held) == 2
            # A held client that leaves gives its hold back.
            held[0].cancel()
            await _until(lambda: "distill_requests_held 1.0" in _metrics(app), "the hold given back")
            backend.gate.set()
            assert (await first).status_code == 200
            assert not held[1].done()  # a slot came free, but a refusal stays a refusal
            held[1].cancel()

    _run(go())


def test_a_held_refusal_ends_in_503_with_retry_after_and_never_past_the_deadline():
    backend = BlockingBackend()
    # The hold (30 s) is cut to the request's deadline (0.3 s).
    app = create_app(backend, limits=Limits(max_inflight=1, max_queued=0, shed_hold_s=30, request_timeout_s=0.3,
                                            retry_after_s=2))

    async def go():
        backend.gate = asyncio.Event()
        async with _client(app) as c:
            first = asyncio.create_task(c.post("/search", json={"query": "admitted"}))
            await _until(lambda: backend.started == 1, "the first request admitted")
            r = await c.post("/search", json={"query": "refused"})
            assert r.status_code == 503 and r.headers["retry-after"] == "2" and "overloaded" in r.json()["detail"]
            assert (await first).status_code == 503  # the admitted one met its 0.3 s deadline meanwhile
            assert backend.cancelled == 1

    _run(go())


def test_completion_rate_counts_the_last_window_and_gives_the_expected_wait():
    from serve.api import CompletionRate

    now = [100.0]
    rate = CompletionRate(window_s=2.0, clock=lambda: now[0])
    assert rate.per_s() is None and rate.expected_wait(5) is None  # nothing finished yet: unknown
    for _ in range(4):
        rate.finished()
        now[0] += 0.1
    assert rate.per_s() == 2.0 and rate.expected_wait(6) == 3.0
    now[0] += 1.75  # at 102.15: the finishes at 100.0 and 100.1 are more than 2 s old, 100.2 and 100.3 not
    assert rate.per_s() == 1.0
    now[0] += 1.0
    assert rate.per_s() is None  # none within the window: a backend that has not answered lately


def test_a_request_is_queued_only_while_its_expected_wait_fits(monkeypatch):
    import serve.api as api

    class TwoPerSecond(api.CompletionRate):
        def expected_wait(self, ahead):
            return ahead / 2.0

    monkeypatch.setattr(api, "CompletionRate", TwoPerSecond)
    backend = BlockingBackend()
    app = create_app(backend, limits=Limits(max_inflight=1, max_queued=100, queue_wait_s=1.0, shed_hold_s=0))

    async def go():
        backend.gate = asyncio.Event()
        async with _client(app) as c:
            first = asyncio.create_task(c.post("/search", json={"query": "admitted"}))
            await _until(lambda: backend.started == 1, "the first request admitted")
            queued = [asyncio.create_task(c.post("/search", json={"query": f"q{i}"})) for i in range(2)]
            await _until(lambda: "distill_requests_queued 2.0" in _metrics(app), "2 queued")
            # The third would wait 1.5 s at 2 a second (> queue_wait_s 1): refused at once, not queued.
            r = await c.post("/search", json={"query": "too late"})
            assert r.status_code == 503 and "expected wait 1.5 s > queue_wait_s 1" in r.json()["detail"]
            assert not any(t.done() for t in queued)
            backend.gate.set()
            assert [x.status_code for x in await asyncio.gather(first, *queued)] == [200, 200, 200]

    _run(go())


def _metrics(app) -> str:
    from prometheus_client import generate_latest

    return generate_latest(app.state.metrics.registry).decode()


def test_deadline_cancels_the_work_and_answers_503_naming_it():
    backend = BlockingBackend()
    app = create_app(backend, limits=Limits(request_timeout_s=0.2))

    async def go():
        backend.gate = asyncio.Event()  # never set: the work would run forever
        async with _client(app) as c:
            for path, body in [("/search", {"query": "q", "rerank": True}), ("/rerank", {"query": "q", "texts": ["a"]}),
                               ("/v1/embeddings", {"input": "a"})]:
                r = await c.post(path, json=body)
                assert r.status_code == 503, (path, r.text)
                assert "deadline" in r.json()["detail"] and "0.2 s" in r.json()["detail"]
                assert r.headers["retry-after"] == "1"
            assert backend.cancelled == backend.started == 3 and backend.finished == 0
            m = (await c.get("/metrics")).text
            assert 'distill_requests_shed_total{reason="deadline",route="/rerank"} 1.0' in m
            assert "distill_requests_inflight 0.0" in m

    _run(go())


def test_deadline_counts_the_wait_for_a_slot():
    backend = BlockingBackend()
    app = create_app(backend, limits=Limits(max_inflight=1, max_queued=5, request_timeout_s=0.3))

    async def go():
        backend.gate = asyncio.Event()
        async with _client(app) as c:
            first = asyncio.create_task(c.post("/search", json={"query": "a"}))
            await _until(lambda: backend.started == 1, "first admitted")
            second = await c.post("/search", json={"query": "b"})
            # Its deadline ran while it waited: 503 naming it (it may have got the first one's slot in the
            # last moment, after the first one's own deadline; then the rest of its deadline ran out there).
            assert second.status_code == 503 and "0.3 s deadline" in second.json()["detail"]
            assert (await first).status_code == 503  # its own deadline passed too
            assert backend.finished == 0
            backend.gate.set()
            assert (await c.post("/search", json={"query": "c"})).status_code == 200

    _run(go())


def test_client_that_leaves_while_queued_gives_its_place_back():
    backend = BlockingBackend()
    app = create_app(backend, limits=Limits(max_inflight=1, max_queued=1, request_timeout_s=30))

    async def go():
        backend.gate = asyncio.Event()
        async with _client(app) as c:
            first = asyncio.create_task(c.post("/search", json={"query": "a"}))
            await _until(lambda: backend.started == 1, "first admitted")
            queued = asyncio.create_task(c.post("/search", json={"query": "b"}))
            await asyncio.sleep(0.05)
            queued.cancel()
            await asyncio.gather(queued, return_exceptions=True)
            third = asyncio.create_task(c.post("/search", json={"query": "c"}))  # the queue has room again
            await asyncio.sleep(0.05)
            assert not third.done()
            backend.gate.set()
            assert (await first).status_code == 200 and (await third).status_code == 200

    _run(go())


def test_rerank_cost_bound_is_422_naming_the_limit():
    backend = BlockingBackend()
    app = create_app(backend, limits=Limits(max_rerank_pairs=100))

    async def go():
        backend.gate = asyncio.Event()
        backend.gate.set()
        async with _client(app) as c:
            r = await c.post("/search", json={"query": ["a", "b", "c"], "rerank": True, "rerank_depth": 50})
            assert r.status_code == 422
            msg = r.json()["detail"]
            assert "max_rerank_pairs" in msg and "150" in msg and "100" in msg and "rerank_depth" in msg
            assert backend.started == 0  # refused before any work
            ok = await c.post("/search", json={"query": ["a", "b"], "rerank": True, "rerank_depth": 50})
            assert ok.status_code == 200
            # Without rerank, the same request costs no teacher work.
            assert (await c.post("/search", json={"query": ["a", "b", "c"], "k": 50})).status_code == 200
            r = await c.post("/rerank", json={"query": "q", "documents": [f"t{i}" for i in range(101)]})
            assert r.status_code == 422 and "max_rerank_pairs" in r.json()["detail"]
            assert "documents" in r.json()["detail"]

    _run(go())


def test_readiness_is_bounded_cached_and_reports_replicas():
    hanging = BlockingBackend(ready_hangs=True)
    app = create_app(hanging, limits=Limits(ready_timeout_s=0.1, ready_cache_s=60))

    async def go_hanging():
        async with _client(app) as c:
            r = await c.get("/readyz")
            assert r.status_code == 503 and "no answer within 0.1 s" in r.json()["reason"]
            assert (await c.get("/readyz")).status_code == 503
            assert hanging.ready_calls == 1  # the second probe reused the first answer
            assert "distill_ready 0.0" in (await c.get("/metrics")).text

    _run(go_hanging())

    up = BlockingBackend(ready_info={"version": "v1", "reranker": False, "replicas": {"Retriever": 2,
                                                                                    "SearchIngress": 1}})
    app = create_app(up, limits=Limits(ready_cache_s=60))

    async def go_up():
        async with _client(app) as c:
            body = (await c.get("/readyz")).json()
            assert body == {"status": "ready", "version": "v1", "reranker": False,
                            "replicas": {"Retriever": 2, "SearchIngress": 1}}
            m = (await c.get("/metrics")).text
            assert 'distill_replicas{deployment="Retriever"} 2.0' in m and "distill_ready 1.0" in m
            assert up.ready_calls == 1

    _run(go_up())


def test_limits_are_checked():
    with pytest.raises(ValueError):
        Limits(request_timeout_s=0)
    with pytest.raises(ValueError):
        Limits(max_inflight=0)
    with pytest.raises(ValueError, match="shed_hold_s"):
        Limits(shed_hold_s=-1)
    with pytest.raises(ValueError, match="queue_wait_s"):
        Limits(queue_wait_s=-1)
    assert Limits(request_timeout_s=8).queue_wait == 4 and Limits(queue_wait_s=0.5).queue_wait == 0.5


# ---- serve.app's NotReady through /readyz, and python -m serve's defaults ----------------------------------


def test_not_ready_answer_names_the_replicas():
    from serve.app import NotReady

    class Failing(BlockingBackend):
        async def ready(self):
            raise NotReady("Retriever is UNHEALTHY: boom", {"Retriever": 0})

    async def go():
        async with _client(create_app(Failing())) as c:
            r = await c.get("/readyz")
            assert r.status_code == 503
            assert r.json()["replicas"] == {"Retriever": 0} and "UNHEALTHY" in r.json()["reason"]

    _run(go())


def test_python_m_serve_defaults_to_autoscaling_and_a_10s_deadline():
    from serve.__main__ import parse_args

    a = parse_args(["runs/demo"])
    assert a.retriever_replicas is None and (a.retriever_min_replicas, a.retriever_max_replicas) == (1, 2)
    assert a.request_timeout_s <= 10 and a.max_queued >= 0 and a.max_rerank_pairs >= 200
    assert parse_args(["runs/demo", "--retriever-replicas", "2"]).retriever_replicas == 2
