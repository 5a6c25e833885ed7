"""Ray Serve over real HTTP on 127.0.0.1, on a local 2-CPU Ray cluster, with tiny random models.

One deployment (2 Retriever replicas + Reranker, bearer token on) serves the module; the last test
swaps it to another run directory. Checks: rankings equal the offline index search (and the offline
teacher rerank), bad input is 4xx, the token guards /search, a killed Retriever replica loses no request
(the ingress retries idempotent calls on another replica), and a swap under load fails no request,
moves to the new version, and never mixes snapshots within a response; a swap to a run whose index
was truncated is refused and the old snapshot keeps serving. Served versions are snapshot digests
(serve.snapshot): ``runs["version"]`` maps each run's label to its digest.
"""

from __future__ import annotations

import os
import socket
import threading
import time

import numpy as np
import pytest

pytestmark = [pytest.mark.ray]

TOKEN = "integration-token"
AUTH = {"Authorization": f"Bearer {TOKEN}"}


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class Offline:
    """The offline answer for a run: ``load_index(...).search`` on ``DualEncoder.encode``."""

    def __init__(self, run_dir):
        from distill.index import load_index
        from distill.models import DualEncoder

        self.run_dir = run_dir
        self.index = load_index(run_dir / "index")
        self.encoder = DualEncoder.load(run_dir / "student")
        self.version = self.index.meta["version"]

    def search(self, queries, k):
        return self.index.search(self.encoder.encode(list(queries)), k)


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
    from serve.testing import make_serve_run

    base = tmp_path_factory.mktemp("serve-runs")
    from serve import snapshot

    r1 = make_serve_run(base / "run1", version="v1", seed=0)
    r2 = make_serve_run(base / "run2", version="v2", seed=1)
    version = {"v1": snapshot.create(r1["run_dir"]).name, "v2": snapshot.create(r2["run_dir"]).name}
    return {"v1": r1, "v2": r2, "offline": {"v1": Offline(r1["run_dir"]), "v2": Offline(r2["run_dir"])},
            "version": version, "label": {d: v for v, d in version.items()}}


@pytest.fixture(scope="module")
def served(runs):
    """The app on run1 (2 Retriever replicas + Reranker, token on), on a fresh local 2-CPU Ray whose
    processes take Serve's fast path and whose ingress replica serves HTTP itself (direct ingress), as
    ``python -m serve`` sets it up."""
    import ray
    from ray import serve as rs

    from serve.app import FAST_PATH_ENV, deploy, direct_ingress_env
    from builders import start_local_ray

    port = _free_port()
    env = {"HF_HUB_OFFLINE": "1", "DISTILL_SERVE_TOKEN": TOKEN, **FAST_PATH_ENV,  # token: read by build_app
           **direct_ingress_env(port)}
    saved = {k: os.environ.get(k) for k in env}
    os.environ.update(env)
    started = not ray.is_initialized()
    if started:
        start_local_ray(object_store_mb=200, log_to_driver=False)
    try:
        # fp32: answers are checked against the offline fp32 encoder and teacher (bf16: tests/unit/test_precision.py)
        # A 60 s deadline (default 10 s): the swap test counts every failed request, and on a loaded 2-core
        # machine a request caught in the swap (new replicas loading their models) has taken over 10 s;
        # deadlines are tested in tests/unit/serve/test_overload.py.
        url = deploy(runs["v1"]["run_dir"], rerank=True, port=port, retriever_replicas=2, precision="fp32",
                     request_timeout_s=60, direct_ingress=True)
        yield {"url": url, "port": port}
    finally:
        try:
            rs.shutdown()
        finally:
            if started:
                ray.shutdown()
            for k, v in saved.items():
                if v is None:
                    os.environ.pop(k, None)
                else:
                    os.environ[k] = v


@pytest.fixture
def client(served):
    import httpx

    with httpx.Client(base_url=served["url"], headers=AUTH, timeout=30.0) as c:
        yield c


def _ids(results):
    return [[h["docid"] for h in r] for r in results]


@pytest.mark.timeout(300)
def test_search_matches_offline_index(runs, client):
    qs = runs["v1"]["queries"][:5]
    ids, scores = runs["offline"]["v1"].search(qs, 5)
    body = client.post("/search", json={"query": qs, "k": 5}).json()
    assert body["version"] == runs["version"]["v1"] and body["reranked"] is False
    assert _ids(body["results"]) == ids
    np.testing.assert_allclose([[h["score"] for h in r] for r in body["results"]], scores, atol=1e-5)
    single = client.post("/search", json={"query": qs[0], "k": 5}).json()
    assert _ids(single["results"]) == [ids[0]]
    assert all(h["title"] and h["snippet"] for h in single["results"][0])
    long_q = " ".join([qs[0]] * 20)
    assert client.post("/search", json={"query": [qs[0], long_q], "k": 1}).json()["truncated"] == [
        False,
        True,
    ]


@pytest.mark.timeout(300)
def test_rerank_matches_offline_teacher(runs, client):
    import pyarrow.parquet as pq

    from distill.models import CrossEncoder
    from serve.core import doc_text, rerank_order

    run = runs["v1"]["run_dir"]
    qs = runs["v1"]["queries"][5:8]
    body = client.post("/search", json={"query": qs, "k": 4, "rerank": True, "rerank_depth": 12}).json()
    assert body["reranked"] is True and body["version"] == runs["version"]["v1"]
    cands, _ = runs["offline"]["v1"].search(qs, 12)
    docs = pq.read_table(run / "index" / "docs.parquet").to_pandas().set_index("docid")
    ce = CrossEncoder(str(run / "teacher_model"), 64)
    for q, cand, hits in zip(qs, cands, body["results"]):
        s = ce.score([q] * len(cand), [doc_text(docs.loc[d, "title"], docs.loc[d, "text"]) for d in cand])
        assert [h["docid"] for h in hits] == [cand[i] for i in rerank_order(s)][:4]
        np.testing.assert_allclose([h["score"] for h in hits], sorted(s, reverse=True)[:4], atol=1e-4)


@pytest.mark.timeout(300)
def test_embeddings_rerank_and_metrics_through_serve(runs, served, client):
    """/v1/embeddings (the openai package) gives the student's encodings, /rerank the teacher's scores,
    /metrics counts them, all through the Serve deployments (Retriever.embed, Reranker)."""
    import openai
    from prometheus_client.parser import text_string_to_metric_families

    from distill.models import CrossEncoder
    from serve.core import rerank_order

    run = runs["v1"]["run_dir"]
    qs = runs["v1"]["queries"][:4]
    oa = openai.OpenAI(base_url=f"{served['url']}/v1", api_key=TOKEN, max_retries=0, timeout=60)
    resp = oa.embeddings.create(model="student", input=qs)
    got = np.array([d.embedding for d in sorted(resp.data, key=lambda d: d.index)])
    np.testing.assert_allclose(got, runs["offline"]["v1"].encoder.encode(qs), atol=1e-5)
    texts = runs["v1"]["queries"][4:10]
    expected = CrossEncoder(str(run / "teacher_model"), 64).score([qs[0]] * len(texts), texts)
    body = client.post("/rerank", json={"query": qs[0], "texts": texts, "top_n": 3}).json()
    assert [h["index"] for h in body] == rerank_order(expected)[:3]
    np.testing.assert_allclose([h["score"] for h in body], sorted(expected, reverse=True)[:3], atol=1e-4)
    samples = {(s.name, tuple(sorted(s.labels.items()))): s.value
               for f in text_string_to_metric_families(client.get("/metrics").text) for s in f.samples}
    key = ("distill_requests_total", (("code", "200"), ("method", "POST"), ("route", "{}")))
    assert samples[(key[0], tuple((k, v.format("/v1/embeddings")) for k, v in key[1]))] >= 1
    assert samples[(key[0], tuple((k, v.format("/rerank")) for k, v in key[1]))] >= 1
    assert samples[("distill_index_version_info", (("version", runs["version"]["v1"]),))] == 1


@pytest.mark.timeout(120)
def test_bad_input_is_4xx_and_token_is_required(runs, served, client):
    import httpx

    cases = [
        ({}, "query"),
        ({"query": ""}, "query"),
        ({"query": 7}, "query"),
        ({"query": ["a"] * 65}, "query"),
        ({"query": "a", "k": 0}, "k"),
        ({"query": "a", "k": "ten"}, "k"),
        ({"query": "a", "rerank": "x"}, "rerank"),
        ({"query": "a", "rerank_depth": 500}, "rerank_depth"),
    ]
    for body, field in cases:
        r = client.post("/search", json=body)
        assert r.status_code == 422, (body, r.status_code, r.text)
        assert field in r.json()["message"]
    r = client.post("/search", content=b"{nope", headers={"content-type": "application/json"})
    assert 400 <= r.status_code < 500
    r = client.post("/search", json={"query": "x" * (70 * 1024)})
    assert r.status_code == 413
    with httpx.Client(base_url=served["url"], timeout=30.0) as anon:
        assert anon.post("/search", json={"query": "a"}).status_code == 401
        assert anon.get("/openapi.json").status_code == 401
        assert anon.get("/healthz").status_code == 200
        ready = anon.get("/readyz")
        assert (
            ready.status_code == 200 and ready.json()["version"] == runs["version"]["v1"]
            and ready.json()["reranker"] is True
        )
    assert client.get("/openapi.json").status_code == 200


class Load:
    """Client threads posting searches until stopped; counts failures, records (start time, version,
    query, rerank, ids)."""

    def __init__(self, url, queries, threads=3, rerank_every=0):
        self.url, self.queries, self.rerank_every = url, queries, rerank_every
        self.stop = threading.Event()
        self.lock = threading.Lock()
        self.ok, self.failures, self.seen = 0, [], []
        self.threads = [threading.Thread(target=self._run, args=(i,), daemon=True) for i in range(threads)]

    def _run(self, i):
        import httpx

        n = 0
        with httpx.Client(base_url=self.url, headers=AUTH, timeout=60.0) as c:
            while not self.stop.is_set():
                q = self.queries[(i * 7 + n) % len(self.queries)]
                rerank = bool(self.rerank_every) and n % self.rerank_every == 0
                n += 1
                started = time.monotonic()
                try:
                    r = c.post("/search", json={"query": q, "k": 3, "rerank": rerank})
                    if r.status_code != 200:
                        raise RuntimeError(f"HTTP {r.status_code}: {r.text[:300]}")
                    body = r.json()
                    with self.lock:
                        self.ok += 1
                        self.seen.append((started, body["version"], q, rerank, _ids(body["results"])[0]))
                except Exception as err:  # noqa: BLE001 - every failure is counted
                    with self.lock:
                        self.failures.append(repr(err)[:300])

    def __enter__(self):
        for t in self.threads:
            t.start()
        return self

    def __exit__(self, *exc):
        self.stop.set()
        for t in self.threads:
            t.join(timeout=90)


def _retriever_replicas():
    import ray

    return sorted(
        a["name"]
        for a in ray.util.list_named_actors(all_namespaces=True)
        if a["namespace"] == "serve" and a["name"].startswith("SERVE_REPLICA::distill#Retriever#")
    )


@pytest.mark.timeout(240)
def test_killing_a_replica_loses_no_request(runs, served):
    """ray.kill one of the two Retriever replicas mid-load. Requests in flight on it fail inside the
    ingress with ActorDiedError; the ingress retries those idempotent calls on the surviving replica,
    and the router stops choosing the dead one. So no client request may fail: expected failures 0."""
    import ray

    replicas = _retriever_replicas()
    assert len(replicas) == 2, replicas
    with Load(served["url"], runs["v1"]["queries"], threads=4) as load:
        time.sleep(2.0)
        before = load.ok
        ray.kill(ray.get_actor(replicas[0], namespace="serve"), no_restart=True)
        time.sleep(6.0)
    assert before > 0, "no request finished before the kill"
    assert load.ok > before, "no request finished after the kill"
    assert load.failures == [], load.failures[:5]
    deadline = time.monotonic() + 90  # the controller replaces the dead replica
    while time.monotonic() < deadline and (
        len(_retriever_replicas()) != 2 or replicas[0] in _retriever_replicas()
    ):
        time.sleep(1.0)
    assert replicas[0] not in _retriever_replicas()


@pytest.mark.timeout(300)
def test_a_swap_to_a_corrupt_run_is_refused_and_the_old_snapshot_keeps_serving(runs, served, client, tmp_path):
    """A copy of run2 whose checksums are recorded (as the pipeline records them), then its index truncated:
    deploy refuses it naming the file, before Serve is touched, and run1's snapshot still answers."""
    import shutil

    from distill.config import build_config
    from distill.manifest import RunDir
    from serve.app import deploy
    from serve.core import ServeSetupError

    bad = tmp_path / "bad"
    shutil.copytree(runs["v2"]["run_dir"], bad, ignore=shutil.ignore_patterns("snapshots"))
    rd = RunDir(build_config({"teacher": {"model": "t", "finetune": True}, "student": {"model": "s"}},
                             [f"runs_dir={tmp_path}", "name=bad"]))
    for stage in ("teacher", "train", "index"):
        rd.mark_done(stage)
    faiss = bad / "index" / "index.faiss"
    faiss.write_bytes(faiss.read_bytes()[: faiss.stat().st_size // 2])
    with pytest.raises(ServeSetupError, match="index/index.faiss has changed since its stage wrote it"):
        deploy(bad, rerank=True, port=served["port"], retriever_replicas=2, precision="fp32", request_timeout_s=60)
    assert not (bad / "snapshots").exists() or list((bad / "snapshots").iterdir()) == []
    body = client.post("/search", json={"query": runs["v1"]["queries"][0], "k": 3}).json()
    assert body["version"] == runs["version"]["v1"]
    deadline = time.monotonic() + 60  # the test before this one killed a replica: wait until Serve is healthy
    while (ready := client.get("/readyz")).status_code != 200 and time.monotonic() < deadline:
        time.sleep(1.0)
    assert ready.status_code == 200, ready.json()
    assert ready.json()["version"] == runs["version"]["v1"]


@pytest.mark.timeout(300)
def test_swap_to_another_run_under_load(runs, served):
    """Deploy run2 under the same app name while clients search: no request fails, the version moves
    from v1 to v2, and every response's ranking is the offline ranking of the version it reports
    (no response mixes snapshots)."""
    from serve.app import deploy

    queries = runs["v1"]["queries"][:10]
    expected = {v: dict(zip(queries, runs["offline"][v].search(queries, 3)[0])) for v in ("v1", "v2")}
    with Load(served["url"], queries, threads=3, rerank_every=4) as load:
        time.sleep(1.0)
        t0 = time.monotonic()
        deploy(runs["v2"]["run_dir"], rerank=True, port=served["port"], retriever_replicas=2, precision="fp32",
               request_timeout_s=60)
        deployed_at = time.monotonic()
        time.sleep(2.0)
    print(f"swap took {deployed_at - t0:.1f} s; {load.ok} requests ok, {len(load.failures)} failed")
    assert load.failures == [], load.failures[:5]
    versions = [runs["label"][v] for _, v, *_ in load.seen]
    assert set(versions) == {"v1", "v2"}, set(versions)
    assert versions[0] == "v1"
    after = [runs["label"][v] for t, v, *_ in load.seen if t > deployed_at + 0.5]
    assert after and set(after) == {"v2"}
    for _, v, q, rerank, ids in load.seen:
        if not rerank:
            assert ids == expected[runs["label"][v]][q], (v, q)
