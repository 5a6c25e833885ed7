"""Overload and autoscaling through real Ray Serve on 127.0.0.1 (a local 2-CPU Ray, tiny random models), on
the default HTTP path of ``python -m serve``: direct ingress (the ingress replica serves HTTP itself).

- Serve's own back-pressure: with a tiny ``max_queued_requests`` at the ingress (held by the ingress replica
  itself under direct ingress, by the proxy on the ``--proxy`` path), a burst is answered 200 or 503 with
  ``Retry-After`` (no request waits for a slot without bound, none fails otherwise).
- ``/readyz`` and ``/metrics`` name the running replicas per deployment (serve.status() read by the ingress).
- Autoscaling as ``python -m serve`` deploys it by default: load takes the Retriever from 1 to 2 replicas,
  and it returns to 1 once the load stops (short delays through the app's arguments, not by patching Ray).
  Counts are asserted, never times.
"""

from __future__ import annotations

import os
import socket
import threading
import time

import pytest

pytestmark = [pytest.mark.ray]


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="module")
def cluster(tmp_path_factory):
    """A fresh local 2-CPU Ray with Serve's fast path and direct ingress on ``port`` in every process (as
    ``python -m serve`` starts it), and a tiny run directory."""
    import ray
    from ray import serve as rs

    from serve.app import FAST_PATH_ENV, choose_ingress, direct_ingress_env
    from builders import start_local_ray
    from serve.testing import make_serve_run

    run = make_serve_run(tmp_path_factory.mktemp("overload") / "run", version="v1", seed=0)
    port = _free_port()
    env = {"HF_HUB_OFFLINE": "1", **FAST_PATH_ENV, **direct_ingress_env(port)}
    saved = {k: os.environ.get(k) for k in [*env, "DISTILL_SERVE_TOKEN"]}
    os.environ.update(env)
    os.environ.pop("DISTILL_SERVE_TOKEN", None)
    start_local_ray(object_store_mb=200, log_to_driver=False)
    assert choose_ingress(None, port) == (True, None)  # deploy() serves HTTP from the ingress replica
    try:
        yield {"run": run, "port": port}
    finally:
        try:
            rs.shutdown()
        finally:
            ray.shutdown()
            for k, v in saved.items():
                if v is None:
                    os.environ.pop(k, None)
                else:
                    os.environ[k] = v


def _deploy(cluster, **args) -> str:
    from serve.app import deploy

    return deploy(cluster["run"]["run_dir"], port=cluster["port"], precision="fp32",
                  logging_config={"log_level": "WARNING", "enable_access_log": False}, **args)


def _wait_ready(url: str, timeout: float = 180.0) -> dict:
    import httpx

    deadline = time.monotonic() + timeout
    last = None
    while time.monotonic() < deadline:
        try:
            r = httpx.get(f"{url}/readyz", timeout=10)
            last = r.text
            if r.status_code == 200:
                return r.json()
        except httpx.HTTPError as err:
            last = repr(err)
        time.sleep(0.5)
    raise AssertionError(f"not ready: {last}")


def _replicas(url: str) -> dict:
    import httpx

    return httpx.get(f"{url}/readyz", timeout=10).json().get("replicas") or {}


@pytest.mark.timeout(400)
def test_ingress_queue_bound_answers_503_with_retry_after(cluster):
    """A tiny ``max_queued_requests`` for the ingress (and one request at a time in it), enforced by the
    ingress replica itself (direct ingress): a burst of 48 clients gets 200s and 503s with Retry-After,
    nothing else."""
    import httpx

    url = _deploy(cluster, retriever_replicas=1, ingress_max_ongoing_requests=1, ingress_max_queued_requests=1,
                  max_inflight_requests=1, max_queued_requests=0, max_held_requests=0)
    _wait_ready(url)
    queries = cluster["run"]["queries"]
    body = {"query": [queries[i % len(queries)] for i in range(32)], "k": 10}
    results: list[tuple[int, str | None, str]] = []
    lock = threading.Lock()
    start = threading.Barrier(48)

    def client():
        with httpx.Client(base_url=url, timeout=60) as c:
            start.wait()
            for _ in range(3):
                try:
                    r = c.post("/search", json=body)
                    out = (r.status_code, r.headers.get("retry-after"), r.text[:200])
                except httpx.HTTPError as err:
                    out = (-1, None, repr(err))
                with lock:
                    results.append(out)

    threads = [threading.Thread(target=client) for _ in range(48)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    codes = [c for c, _, _ in results]
    assert len(results) == 144
    assert set(codes) <= {200, 503}, [r for r in results if r[0] not in (200, 503)][:3]
    assert codes.count(200) >= 1 and codes.count(503) >= 1, codes
    assert all(ra is not None and int(ra) >= 1 for c, ra, _ in results if c == 503), results[:3]
    # The server is fine afterwards.
    assert httpx.post(f"{url}/search", json={"query": queries[0]}, timeout=30).status_code == 200


@pytest.mark.timeout(400)
def test_readyz_and_metrics_report_replica_counts(cluster):
    import httpx

    from serve import snapshot

    url = _deploy(cluster, retriever_replicas=2)
    ready = _wait_ready(url)
    assert ready["status"] == "ready" and ready["version"] == snapshot.create(cluster["run"]["run_dir"]).name
    deadline = time.monotonic() + 120
    while ready.get("replicas", {}).get("Retriever") != 2 and time.monotonic() < deadline:
        time.sleep(1)
        ready = httpx.get(f"{url}/readyz", timeout=10).json()
    assert ready["replicas"]["Retriever"] == 2 and ready["replicas"]["SearchIngress"] == 1
    metrics = httpx.get(f"{url}/metrics", timeout=10).text
    assert 'distill_replicas{deployment="Retriever"} 2.0' in metrics and "distill_ready 1.0" in metrics


@pytest.mark.slow
@pytest.mark.timeout(600)
def test_retriever_autoscales_up_under_load_and_back_down(cluster):
    """The default deployment autoscales; short delays through the app's arguments. Load (8 clients,
    16-query requests) until the Retriever has 2 replicas, then none until it is back to 1; no request
    fails across both events."""
    import httpx

    url = _deploy(cluster, retriever_min_replicas=1, retriever_max_replicas=2, retriever_target_ongoing_requests=1,
                  upscale_delay_s=1, downscale_delay_s=5, autoscaling_metrics_interval_s=0.5,
                  autoscaling_look_back_period_s=2)
    _wait_ready(url)
    deadline = time.monotonic() + 120
    while _replicas(url).get("Retriever") != 1 and time.monotonic() < deadline:
        time.sleep(1)  # a previous test's fixed count is rolled back to the autoscaling minimum
    assert _replicas(url)["Retriever"] == 1

    queries = cluster["run"]["queries"]
    body = {"query": [queries[i % len(queries)] for i in range(16)], "k": 10}
    stop = threading.Event()
    codes: list[int] = []

    def client():
        with httpx.Client(base_url=url, timeout=60) as c:
            while not stop.is_set():
                try:
                    codes.append(c.post("/search", json=body).status_code)
                except httpx.HTTPError:
                    codes.append(-1)

    threads = [threading.Thread(target=client, daemon=True) for _ in range(8)]
    for t in threads:
        t.start()
    try:
        seen = []
        deadline = time.monotonic() + 180
        while time.monotonic() < deadline:
            n = _replicas(url).get("Retriever", 0)
            seen.append(n)
            if n >= 2:
                break
            time.sleep(1)
        assert max(seen) == 2, f"the Retriever never scaled up: {seen}, {len(codes)} requests answered"
        assert httpx.get(f"{url}/healthz", timeout=30).status_code == 200  # not queued behind the searches
    finally:
        stop.set()
        for t in threads:
            t.join()
    up_requests = len(codes)
    deadline = time.monotonic() + 180
    seen = []
    while time.monotonic() < deadline:
        seen.append(_replicas(url).get("Retriever", 0))
        if seen[-1] == 1:
            break
        time.sleep(1)
    assert seen[-1] == 1, f"the Retriever never scaled back down: {seen}"
    assert up_requests > 0 and set(codes) == {200}, {c: codes.count(c) for c in set(codes)}
