"""serve/api.py, the HTTP API without Ray: FastAPI's TestClient over a fake backend (validation, limits, auth,
the search flow) and over the real models in-process (same rankings as the offline index search).
serve/core.py's helpers: test_core.py; serve/app.py (build_app, serve.yaml): test_app.py; overload:
test_overload.py."""

from __future__ import annotations

import json

import numpy as np
import pytest
from fastapi.testclient import TestClient

from serve.api import MAX_BODY_BYTES, BackendUnavailable, LocalBackend, create_app, token_digest
from serve.core import doc_text, rerank_order


class FakeBackend:
    """Candidates d0..d{depth-1} with falling first-stage scores; the 'teacher' reverses them."""

    def __init__(self, has_reranker: bool = True, fail: Exception | None = None):
        self.has_reranker = has_reranker
        self.fail = fail
        self.calls: list[tuple] = []

    async def retrieve(self, queries, depth, with_text):
        self.calls.append(("retrieve", list(queries), depth, with_text))
        if self.fail:
            raise self.fail
        cands = [
            [
                {
                    "docid": f"d{i}",
                    "score": 1.0 - i / 1000,
                    "title": f"title {i}",
                    "snippet": f"snip {i}",
                    **({"text": f"text {i}"} if with_text else {}),
                }
                for i in range(depth)
            ]
            for _ in queries
        ]
        return {"version": "fake-v1", "candidates": cands, "truncated": [len(q) > 40 for q in queries]}

    async def rerank(self, queries, texts):
        self.calls.append(("rerank", list(queries), [len(t) for t in texts]))
        return [[float(i) for i in range(len(ts))] for ts in texts]

    async def embed(self, texts):
        self.calls.append(("embed", list(texts)))
        if self.fail:
            raise self.fail
        return {"model": "fake-run", "version": "fake-v1", "embeddings": [[len(t), 0.5, -1.0] for t in texts],
                "tokens": [len(t.split()) for t in texts]}

    async def ready(self):
        if self.fail:
            raise self.fail
        return {"version": "fake-v1", "reranker": self.has_reranker}


@pytest.fixture
def backend():
    return FakeBackend()


@pytest.fixture
def client(backend):
    with TestClient(create_app(backend)) as c:
        yield c


# ---- search flow ----------------------------------------------------------------------------------
def test_search_single_query_defaults(client, backend):
    r = client.post("/search", json={"query": "volcanoes"})
    assert r.status_code == 200, r.text
    body = r.json()
    assert body["version"] == "fake-v1" and body["reranked"] is False and body["truncated"] == [False]
    assert len(body["results"]) == 1 and len(body["results"][0]) == 10
    assert body["results"][0][0] == {"docid": "d0", "score": 1.0, "title": "title 0", "snippet": "snip 0"}
    assert backend.calls == [("retrieve", ["volcanoes"], 10, False)]


def test_search_batch_and_truncation_flags(client):
    qs = ["short", "x" * 50, "another"]
    body = client.post("/search", json={"query": qs, "k": 3}).json()
    assert [len(r) for r in body["results"]] == [3, 3, 3]
    assert body["truncated"] == [False, True, False]


def test_rerank_reorders_and_cuts_to_k(client, backend):
    body = client.post(
        "/search", json={"query": ["a", "b"], "k": 4, "rerank": True, "rerank_depth": 20}
    ).json()
    assert body["reranked"] is True
    # The fake teacher scores candidate i with i: reranked order is d19, d18, ...
    assert [h["docid"] for h in body["results"][0]] == ["d19", "d18", "d17", "d16"]
    assert [h["score"] for h in body["results"][1]] == [19.0, 18.0, 17.0, 16.0]
    assert "text" not in body["results"][0][0]
    assert backend.calls[0] == ("retrieve", ["a", "b"], 20, True)
    assert backend.calls[1] == ("rerank", ["a", "b"], [20, 20])


def test_rerank_depth_below_k_is_raised_to_k(client, backend):
    body = client.post("/search", json={"query": "a", "k": 8, "rerank": True, "rerank_depth": 3}).json()
    assert len(body["results"][0]) == 8
    assert backend.calls[0][2] == 8


def test_rerank_without_reranker_is_400():
    with TestClient(create_app(FakeBackend(has_reranker=False))) as c:
        r = c.post("/search", json={"query": "a", "rerank": True})
        assert r.status_code == 400
        assert "rerank" in r.json()["message"] and "no reranker" in r.json()["message"]
        assert c.post("/search", json={"query": "a"}).status_code == 200


# ---- validation -------------------------------------------------------------------------------------
BAD = [
    ({}, "query"),
    ({"k": 3}, "query"),
    ({"query": ""}, "query"),
    ({"query": "   "}, "query"),
    ({"query": None}, "query"),
    ({"query": 5}, "query"),
    ({"query": {"text": "a"}}, "query"),
    ({"query": []}, "query"),
    ({"query": ["ok", ""]}, "query"),
    ({"query": ["ok", 3]}, "query"),
    ({"query": ["q"] * 65}, "query"),
    ({"query": "a", "k": 0}, "k"),
    ({"query": "a", "k": 101}, "k"),
    ({"query": "a", "k": "3"}, "k"),
    ({"query": "a", "k": 2.5}, "k"),
    ({"query": "a", "k": True}, "k"),
    ({"query": "a", "rerank": "yes"}, "rerank"),
    ({"query": "a", "rerank": 1}, "rerank"),
    ({"query": "a", "rerank_depth": 0}, "rerank_depth"),
    ({"query": "a", "rerank_depth": 201}, "rerank_depth"),
    ({"query": "a", "top_k": 3}, "top_k"),
]


@pytest.mark.parametrize("body,field", BAD, ids=[json.dumps(b)[:40] for b, _ in BAD])
def test_bad_input_is_422_naming_the_field(client, backend, body, field):
    r = client.post("/search", json=body)
    assert r.status_code == 422, r.text
    payload = r.json()
    assert field in payload["message"]
    assert any(e["field"].split(".")[0] == field for e in payload["detail"])
    assert backend.calls == []


@pytest.mark.parametrize(
    "content,ctype",
    [
        (b"{not json", "application/json"),
        (b"[1, 2]", "application/json"),
        (b"query=a", "application/x-www-form-urlencoded"),
        (b"", "application/json"),
    ],
)
def test_malformed_bodies_are_4xx(client, content, ctype):
    r = client.post("/search", content=content, headers={"content-type": ctype})
    assert 400 <= r.status_code < 500, r.text


def test_64_queries_is_the_limit(client):
    assert client.post("/search", json={"query": ["q"] * 64, "k": 1}).status_code == 200


def test_oversize_body_is_413(client, backend):
    big = {"query": "word " * (MAX_BODY_BYTES // 5 + 10)}
    r = client.post("/search", json=big)
    assert r.status_code == 413 and "body" in r.json()["message"]
    # Without Content-Length (chunked), counted while streaming.
    payload = json.dumps(big).encode()
    r = client.post(
        "/search",
        content=iter([payload[i : i + 4096] for i in range(0, len(payload), 4096)]),
        headers={"content-type": "application/json"},
    )
    assert r.status_code == 413
    assert backend.calls == []
    # Just under the limit is fine.
    ok = {"query": "w " * ((MAX_BODY_BYTES - 100) // 2)}
    assert client.post("/search", json=ok).status_code == 200


def test_wrong_method_and_path(client):
    assert client.get("/search").status_code == 405
    assert client.post("/nope", json={}).status_code == 404


# ---- health, readiness, errors ---------------------------------------------------------------------
def test_health_and_ready(client):
    assert client.get("/healthz").json() == {"status": "ok"}
    assert client.get("/readyz").json() == {"status": "ready", "version": "fake-v1", "reranker": True}


def test_not_ready_and_unavailable():
    with TestClient(create_app(FakeBackend(fail=BackendUnavailable("retriever: replicas unavailable")))) as c:
        assert c.get("/healthz").status_code == 200
        r = c.get("/readyz")
        assert r.status_code == 503 and r.json()["status"] == "not ready"
        r = c.post("/search", json={"query": "a"})
        assert r.status_code == 503 and "unavailable" in r.json()["detail"]


# ---- auth ---------------------------------------------------------------------------------------------
def test_bearer_token_guards_all_but_health():
    with TestClient(create_app(FakeBackend(), token_sha256=token_digest("s3cret"))) as c:
        assert c.get("/healthz").status_code == 200
        assert c.get("/readyz").status_code == 200
        for method, path in [
            ("post", "/search"),
            ("get", "/docs"),
            ("get", "/openapi.json"),
            ("get", "/nope"),
        ]:
            r = getattr(c, method)(path, **({"json": {"query": "a"}} if method == "post" else {}))
            assert r.status_code == 401, path
            assert r.headers["www-authenticate"] == "Bearer"
        bad = {"Authorization": "Bearer wrong"}
        assert c.post("/search", json={"query": "a"}, headers=bad).status_code == 401
        assert c.post("/search", json={"query": "a"}, headers={"Authorization": "s3cret"}).status_code == 401
        good = {"Authorization": "Bearer s3cret"}
        assert c.post("/search", json={"query": "a"}, headers=good).status_code == 200
        assert c.get("/openapi.json", headers=good).status_code == 200
        # Unauthenticated oversize bodies are refused by the token check before they are read.
        assert c.post("/search", content=b"x" * (MAX_BODY_BYTES + 1)).status_code == 401


def test_openapi_documents_the_api(client):
    spec = client.get("/openapi.json").json()
    assert {"/search", "/healthz", "/readyz"} <= set(spec["paths"])
    req = spec["components"]["schemas"]["SearchRequest"]
    assert set(req["properties"]) == {"query", "k", "rerank", "rerank_depth"}
    assert req["properties"]["k"]["maximum"] == 100 and req["properties"]["rerank_depth"]["maximum"] == 200
    resp = spec["components"]["schemas"]["SearchResponse"]
    assert set(resp["properties"]) == {"version", "results", "truncated", "reranked"}
    assert set(spec["components"]["schemas"]["Hit"]["properties"]) == {"docid", "score", "title", "snippet"}


# ---- the real models, in-process -----------------------------------------------------------------------
@pytest.fixture(scope="module")
def local_client(tiny_run):
    from serve.core import Reranking, Retrieval

    # fp32: answers are checked against the offline fp32 encoder and teacher (bf16: tests/unit/test_precision.py)
    backend = LocalBackend(Retrieval(tiny_run["run_dir"], precision="fp32"),
                           Reranking.from_run(tiny_run["run_dir"], precision="fp32"))
    with TestClient(create_app(backend)) as c:
        yield c


def test_local_backend_matches_offline_search(tiny_run, local_client):
    from distill.index import load_index
    from distill.models import DualEncoder

    run = tiny_run["run_dir"]
    qs = tiny_run["queries"][:6]
    body = local_client.post("/search", json={"query": qs, "k": 5}).json()
    ids, scores = load_index(run / "index").search(DualEncoder.load(run / "student").encode(qs), 5)
    assert body["version"] == "unit-v1"
    assert [[h["docid"] for h in r] for r in body["results"]] == ids
    np.testing.assert_allclose([[h["score"] for h in r] for r in body["results"]], scores, atol=1e-5)
    assert all(h["title"] and h["snippet"] for r in body["results"] for h in r)


def test_local_backend_rerank_matches_offline_teacher(tiny_run, local_client):
    import pyarrow.parquet as pq

    from distill.index import load_index
    from distill.models import CrossEncoder, DualEncoder

    run = tiny_run["run_dir"]
    qs = tiny_run["queries"][:3]
    body = local_client.post("/search", json={"query": qs, "k": 4, "rerank": True, "rerank_depth": 15}).json()
    assert body["reranked"] is True
    ids, _ = load_index(run / "index").search(DualEncoder.load(run / "student").encode(qs), 15)
    docs = pq.read_table(run / "index" / "docs.parquet").to_pandas().set_index("docid")
    ce = CrossEncoder(str(run / "teacher_model"), 64)
    for q, cand, hits in zip(qs, ids, body["results"]):
        s = ce.score([q] * len(cand), [doc_text(docs.loc[d, "title"], docs.loc[d, "text"]) for d in cand])
        expected = [cand[i] for i in rerank_order(s)][:4]
        assert [h["docid"] for h in hits] == expected


def test_long_query_is_flagged_truncated(tiny_run, local_client):
    long_q = " ".join([tiny_run["queries"][0]] * 20)
    body = local_client.post("/search", json={"query": [tiny_run["queries"][0], long_q], "k": 2}).json()
    assert body["truncated"] == [False, True]


def test_index_without_docs_serves_ids_only(tiny_run, tmp_path):
    import shutil

    from serve.core import Retrieval

    run = tmp_path / "nodocs"
    shutil.copytree(tiny_run["run_dir"], run)
    (run / "index" / "docs.parquet").unlink()
    with TestClient(create_app(LocalBackend(Retrieval(run)))) as c:
        body = c.post("/search", json={"query": tiny_run["queries"][0], "k": 2}).json()
        assert body["results"][0][0]["title"] is None and body["results"][0][0]["snippet"] is None
        assert c.post("/search", json={"query": "a", "rerank": True}).status_code == 400


# ---- /v1/embeddings, /rerank, /metrics over the fake backend --------------------------------------------
def test_embeddings_openai_shape(client, backend):
    r = client.post("/v1/embeddings", json={"input": ["one two", "three"], "model": "student"})
    assert r.status_code == 200, r.text
    assert r.json() == {
        "object": "list",
        "data": [{"object": "embedding", "index": 0, "embedding": [7.0, 0.5, -1.0]},
                 {"object": "embedding", "index": 1, "embedding": [5.0, 0.5, -1.0]}],
        "model": "student",
        "usage": {"prompt_tokens": 3, "total_tokens": 3},
    }
    body = client.post("/v1/embeddings", json={"input": "abc"}).json()  # model omitted: the run's name
    assert body["model"] == "fake-run" and len(body["data"]) == 1
    assert client.post("/v1/embeddings", json={"input": "abc", "model": "fake-run"}).status_code == 200
    assert backend.calls[0] == ("embed", ["one two", "three"])


def test_embeddings_base64_is_little_endian_float32(client):
    import base64

    body = client.post("/v1/embeddings", json={"input": ["ab"], "encoding_format": "base64"}).json()
    vec = np.frombuffer(base64.b64decode(body["data"][0]["embedding"]), dtype="<f4")
    np.testing.assert_array_equal(vec, np.array([2.0, 0.5, -1.0], np.float32))


BAD_EMBED = [
    ({}, "input"),
    ({"input": ""}, "input"),
    ({"input": "  "}, "input"),
    ({"input": []}, "input"),
    ({"input": ["ok", ""]}, "input"),
    ({"input": ["ok", 3]}, "input"),
    ({"input": [1, 2, 3]}, "input"),
    ({"input": None}, "input"),
    ({"input": ["q"] * 257}, "input"),
    ({"input": "a", "encoding_format": "int8"}, "encoding_format"),
    ({"input": "a", "model": 3}, "model"),
    ({"input": "a", "dimensions": 3}, "dimensions"),
    ({"input": "a", "query": "b"}, "query"),
]


@pytest.mark.parametrize("body,field", BAD_EMBED, ids=[json.dumps(b)[:40] for b, _ in BAD_EMBED])
def test_embeddings_bad_input_is_422_naming_the_field(client, backend, body, field):
    r = client.post("/v1/embeddings", json=body)
    assert r.status_code == 422, r.text
    assert field in r.json()["message"]
    assert any(e["field"].split(".")[0] == field for e in r.json()["detail"])
    assert backend.calls == []


def test_embeddings_unknown_model_is_404(client):
    r = client.post("/v1/embeddings", json={"input": "a", "model": "text-embedding-3-small"})
    assert r.status_code == 404
    assert r.json()["message"].startswith("model:") and "student" in r.json()["message"]


def test_rerank_tei_and_cohere_shapes(client, backend):
    texts = ["t0", "t1", "t2"]  # the fake teacher scores text i with i
    r = client.post("/rerank", json={"query": "q", "texts": texts})
    assert r.status_code == 200, r.text
    assert r.json() == [{"index": 2, "score": 2.0}, {"index": 1, "score": 1.0}, {"index": 0, "score": 0.0}]
    assert backend.calls[-1] == ("rerank", ["q"], [3])
    body = client.post("/rerank", json={"query": "q", "texts": texts, "top_n": 2, "return_text": True}).json()
    assert body == [{"index": 2, "score": 2.0, "text": "t2"}, {"index": 1, "score": 1.0, "text": "t1"}]
    body = client.post("/rerank", json={"query": "q", "documents": texts, "top_n": 1}).json()
    assert body == {"results": [{"index": 2, "relevance_score": 2.0}]}
    body = client.post("/rerank", json={"query": "q", "documents": texts, "return_documents": True}).json()
    assert body["results"][0] == {"index": 2, "relevance_score": 2.0, "document": {"text": "t2"}}
    assert len(client.post("/rerank", json={"query": "q", "texts": texts, "top_n": 10}).json()) == 3


BAD_RERANK = [
    ({"texts": ["a"]}, "query"),
    ({"query": "", "texts": ["a"]}, "query"),
    ({"query": ["a"], "texts": ["a"]}, "query"),
    ({"query": "q"}, "texts"),
    ({"query": "q", "texts": ["a"], "documents": ["a"]}, "texts"),
    ({"query": "q", "texts": ["a"], "documents": None}, "documents"),
    ({"query": "q", "texts": None}, "texts"),
    ({"query": "q", "texts": []}, "texts"),
    ({"query": "q", "texts": "a"}, "texts"),
    ({"query": "q", "texts": ["a", " "]}, "texts"),
    ({"query": "q", "texts": ["a"] * 201}, "texts"),
    ({"query": "q", "documents": [1]}, "documents"),
    ({"query": "q", "texts": ["a"], "top_n": 0}, "top_n"),
    ({"query": "q", "texts": ["a"], "top_n": "1"}, "top_n"),
    ({"query": "q", "texts": ["a"], "k": 1}, "k"),
]


@pytest.mark.parametrize("body,field", BAD_RERANK, ids=[json.dumps(b)[:40] for b, _ in BAD_RERANK])
def test_rerank_bad_input_is_422_naming_the_field(client, backend, body, field):
    r = client.post("/rerank", json=body)
    assert r.status_code == 422, r.text
    assert field in r.json()["message"]
    assert backend.calls == []


def test_rerank_route_without_reranker_is_400():
    with TestClient(create_app(FakeBackend(has_reranker=False))) as c:
        r = c.post("/rerank", json={"query": "q", "texts": ["a"]})
        assert r.status_code == 400 and "no reranker" in r.json()["message"]


def test_new_routes_need_the_token_and_fit_the_body_limit():
    with TestClient(create_app(FakeBackend(), token_sha256=token_digest("s3cret"))) as c:
        good = {"Authorization": "Bearer s3cret"}
        for path, body in [("/v1/embeddings", {"input": "a"}), ("/rerank", {"query": "q", "texts": ["a"]})]:
            assert c.post(path, json=body).status_code == 401
            assert c.post(path, json=body, headers={"Authorization": "Bearer no"}).status_code == 401
            assert c.post(path, json=body, headers=good).status_code == 200
            big = {"query": "q", "texts": ["word " * (MAX_BODY_BYTES // 5 + 10)]} if path == "/rerank" else \
                {"input": "word " * (MAX_BODY_BYTES // 5 + 10)}
            assert c.post(path, json=big, headers=good).status_code == 413
        assert c.get("/metrics").status_code == 401
        assert c.get("/metrics", headers=good).status_code == 200


def _samples(text: str) -> dict:
    from prometheus_client.parser import text_string_to_metric_families

    out = {}
    for family in text_string_to_metric_families(text):
        for s in family.samples:
            out[(s.name, tuple(sorted(s.labels.items())))] = s.value
    return out


def test_metrics_count_the_requests_just_made():
    with TestClient(create_app(FakeBackend(), token_sha256=token_digest("s3cret"))) as c:
        good = {"Authorization": "Bearer s3cret"}
        for _ in range(3):
            assert c.post("/search", json={"query": ["a", "b"]}, headers=good).status_code == 200
        assert c.post("/v1/embeddings", json={"input": ["a", "b", "c", "d"]}, headers=good).status_code == 200
        assert c.post("/v1/embeddings", json={"input": ""}, headers=good).status_code == 422
        assert c.post("/rerank", json={"query": "q", "texts": ["a"]}, headers=good).status_code == 200
        assert c.post("/rerank", json={"query": "q", "texts": ["a"]}).status_code == 401
        assert c.get("/nope", headers=good).status_code == 404
        m = _samples(c.get("/metrics", headers=good).text)

    def req(route, code, method="POST"):
        return m.get(("distill_requests_total", (("code", code), ("method", method), ("route", route))), 0)

    assert req("/search", "200") == 3
    assert req("/v1/embeddings", "200") == 1 and req("/v1/embeddings", "422") == 1
    assert req("/rerank", "200") == 1 and req("/rerank", "401") == 1
    assert req("other", "404", "GET") == 1
    assert m[("distill_request_errors_total", (("code", "401"), ("route", "/rerank")))] == 1
    assert m[("distill_request_errors_total", (("code", "422"), ("route", "/v1/embeddings")))] == 1
    assert m[("distill_request_duration_seconds_count", (("route", "/search"),))] == 3
    assert m[("distill_request_batch_size_sum", (("route", "/search"),))] == 6
    assert m[("distill_request_batch_size_sum", (("route", "/v1/embeddings"),))] == 4
    assert m[("distill_index_version_info", (("version", "fake-v1"),))] == 1


def test_openapi_documents_the_new_routes(client):
    spec = client.get("/openapi.json").json()
    assert {"/v1/embeddings", "/rerank", "/metrics"} <= set(spec["paths"])
    schemas = spec["components"]["schemas"]
    assert {"input", "model", "encoding_format"} <= set(schemas["EmbeddingsRequest"]["properties"])
    assert {"query", "texts", "documents", "top_n"} <= set(schemas["RerankRequest"]["properties"])


# ---- /v1/embeddings and /rerank over the real models -----------------------------------------------------
def test_local_embeddings_equal_the_student(tiny_run, local_client):
    from sentence_transformers import SentenceTransformer

    qs = tiny_run["queries"][:5]
    body = local_client.post("/v1/embeddings", json={"input": qs, "model": "student"}).json()
    got = np.array([d["embedding"] for d in sorted(body["data"], key=lambda d: d["index"])])
    expected = SentenceTransformer(str(tiny_run["run_dir"] / "student"), device="cpu").encode(qs)
    assert got.shape == expected.shape
    np.testing.assert_allclose(got, expected, atol=1e-5)
    assert body["model"] == "student" and body["usage"]["prompt_tokens"] > 0
    assert local_client.post("/v1/embeddings", json={"input": "a", "model": "run"}).status_code == 200


def test_local_rerank_equals_the_teacher(tiny_run, local_client):
    from distill.models import CrossEncoder

    q = tiny_run["queries"][0]
    texts = tiny_run["queries"][1:9]
    expected = CrossEncoder(str(tiny_run["run_dir"] / "teacher_model"), 64).score([q] * len(texts), texts)
    body = local_client.post("/rerank", json={"query": q, "texts": texts}).json()
    assert [h["index"] for h in body] == rerank_order(expected)
    scores = [h["score"] for h in sorted(body, key=lambda h: h["index"])]
    np.testing.assert_allclose(scores, expected, atol=1e-5)
    top = local_client.post("/rerank", json={"query": q, "documents": texts, "top_n": 3}).json()["results"]
    assert [h["index"] for h in top] == rerank_order(expected)[:3]


def test_openai_client_gets_the_students_vectors(tiny_run, local_client):
    """The real ``openai`` package against the app served by uvicorn on a loopback port (no Ray)."""
    import base64
    import socket
    import threading
    import time

    import openai
    import uvicorn
    from sentence_transformers import SentenceTransformer

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    config = uvicorn.Config(local_client.app, host="127.0.0.1", port=port, log_level="warning")
    server = uvicorn.Server(config)
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    try:
        deadline = time.monotonic() + 30
        while not server.started:
            assert time.monotonic() < deadline and thread.is_alive(), "uvicorn did not start"
            time.sleep(0.05)
        client = openai.OpenAI(base_url=f"http://127.0.0.1:{port}/v1", api_key="x", max_retries=0, timeout=60)
        qs = tiny_run["queries"][:4]
        expected = SentenceTransformer(str(tiny_run["run_dir"] / "student"), device="cpu").encode(qs)
        for fmt in ("float", "base64", None):  # by default the package asks for base64 and decodes it
            kwargs = {"encoding_format": fmt} if fmt else {}
            resp = client.embeddings.create(model="student", input=qs, **kwargs)
            rows = [d.embedding for d in sorted(resp.data, key=lambda d: d.index)]
            if fmt == "base64":  # asked for explicitly: handed back as sent
                rows = [np.frombuffer(base64.b64decode(r), dtype="<f4") for r in rows]
            got = np.array(rows)
            np.testing.assert_allclose(got, expected, atol=1e-5)
        assert resp.model == "student" and resp.usage.prompt_tokens > 0
        single = client.embeddings.create(model="run", input=qs[0], encoding_format="float")
        np.testing.assert_allclose(single.data[0].embedding, expected[0], atol=1e-5)
        with pytest.raises(openai.NotFoundError):
            client.embeddings.create(model="text-embedding-3-small", input="a")
    finally:
        server.should_exit = True
        thread.join(timeout=10)
