"""The search API fuzzed from its own OpenAPI schema (schemathesis), over HTTP on 127.0.0.1, no Ray.

The app (serve.api.create_app over a LocalBackend: a tiny random student + Flat index, and a tiny
cross-encoder as reranker) runs under uvicorn in a thread. schemathesis reads /openapi.json from the
live server and sends every operation schema-valid and schema-invalid requests (its examples,
coverage and fuzzing phases, derandomized); every response must be non-5xx and pass schemathesis'
default checks: status code, content type, headers and body conform to the schema, schema-valid data
is accepted, invalid data rejected, unsupported methods get 405. Once without and once with a bearer
token (supplied on every request). Then hand-picked inputs the generator does not make (lone
surrogates, JSON nesting bombs, non-finite numbers, bodies over the limit with and without
Content-Length) over HTTP.

schemathesis is driven through its engine (what ``st run`` uses), not its pytest plugin: the plugin of
schemathesis 4.32 sets ``request.node._nodeid``, which pytest 9 no longer has.
"""

from __future__ import annotations

import json
import socket
import threading
import time
from collections import Counter
from contextlib import contextmanager

import httpx
import pytest
import schemathesis
from schemathesis import GenerationMode

from serve.api import MAX_BODY_BYTES, LocalBackend, create_app, token_digest

pytestmark = [pytest.mark.http, pytest.mark.timeout(300)]

TOKEN = "fuzz-token-7f3a"


@contextmanager
def live_server(app):
    """uvicorn serving ``app`` on 127.0.0.1 (a free port) in a daemon thread; yields the base URL."""
    import uvicorn

    config = uvicorn.Config(app, host="127.0.0.1", port=0, log_level="warning", lifespan="off")
    server = uvicorn.Server(config)
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    deadline = time.monotonic() + 30
    while not server.started:
        if not thread.is_alive() or time.monotonic() > deadline:
            raise RuntimeError("uvicorn did not start")
        time.sleep(0.02)
    host, port = server.servers[0].sockets[0].getsockname()[:2]
    try:
        yield f"http://{host}:{port}"
    finally:
        server.should_exit = True
        thread.join(10)


@pytest.fixture(scope="module")
def backend(tmp_path_factory):
    from serve.core import Reranking, Retrieval
    from serve.testing import make_serve_run

    run = make_serve_run(tmp_path_factory.mktemp("fuzz") / "run", version="fuzz-v1")["run_dir"]
    return LocalBackend(Retrieval(run), Reranking.from_run(run))


@pytest.fixture(scope="module", params=[None, TOKEN], ids=["open", "token"])
def server(request, backend):
    token = request.param
    with live_server(create_app(backend, token_sha256=token_digest(token) if token else None)) as url:
        yield url, ({"Authorization": f"Bearer {token}"} if token else {})


def fuzz(url: str, headers: dict, max_examples: int) -> dict:
    """Run schemathesis' engine (the examples, coverage and fuzzing phases, every default check) against
    the live server; returns the status codes seen, the failed checks and the engine's errors."""
    from schemathesis.engine import Status, events, from_schema

    schema = schemathesis.openapi.from_url(f"{url}/openapi.json", headers=dict(headers), timeout=30)
    schema.config.update(base_url=url, headers=dict(headers) or None, request_timeout=60)
    schema.config.generation.update(modes=[GenerationMode.POSITIVE, GenerationMode.NEGATIVE],
                                    max_examples=max_examples, deterministic=True, database="none")
    out: dict = {"statuses": Counter(), "scenarios": Counter(), "failures": [], "errors": []}
    for ev in from_schema(schema).execute():
        if isinstance(ev, (events.NonFatalError, events.FatalError)):
            out["errors"].append(repr(ev))
        if not isinstance(ev, events.ScenarioFinished):
            continue
        out["scenarios"][(ev.phase.value, ev.label, ev.status.name)] += 1
        rec = ev.recorder
        for inter in rec.interactions.values():
            if inter.response is not None:
                out["statuses"][(ev.label, inter.response.status_code)] += 1
        for case_id, checks in rec.checks.items():
            for check in checks:
                if check.status == Status.FAILURE:
                    inter = rec.interactions.get(case_id)
                    resp = inter.response if inter is not None else None
                    out["failures"].append(
                        f"{ev.label} {check.name}: body={rec.cases[case_id].value.body!r:.300} -> "
                        f"{resp.status_code if resp else None} {(resp.content if resp else b'')[:300]!r}")
    return out


def test_every_operation_survives_its_schema_fuzzed(server):
    url, headers = server
    result = fuzz(url, headers, max_examples=120)
    assert result["errors"] == [] and result["failures"] == []
    assert [k for k in result["statuses"] if k[1] >= 500] == []
    labels = {"POST /search", "GET /healthz", "GET /readyz", "POST /v1/embeddings", "POST /rerank",
              "GET /metrics"}
    for phase in ("coverage", "fuzzing"):
        assert {lab for (ph, lab, st) in result["scenarios"] if ph == phase and st == "SUCCESS"} == labels
    search = {code: n for (lab, code), n in result["statuses"].items() if lab == "POST /search"}
    assert search.get(200, 0) >= 50 and search.get(422, 0) >= 50, search  # valid and invalid bodies both sent


# ---- inputs the generator does not make -------------------------------------------------------------------
NASTY_JSON = [  # (body, expected status): never a 5xx
    (b'{"query": "\\ud800"}', 422),  # lone surrogates: valid JSON, not encodable text
    (b'{"query": ["ok", "a\\udfff b"], "rerank": true}', 422),
    (b"[" * 30_000 + b"]" * 30_000, 400),  # nesting bomb under the size limit
    (b'{"query": ' + b"[" * 20_000 + b"]" * 20_000 + b"}", 400),
    (b'{"query": "a", "k": 1e400}', 422),
    (b'{"query": "a", "k": NaN}', 422),
    (b'{"query": "a", "k": 100000000000000000000000000000000}', 422),
    (b'{"query": "a", "k": 5.5}', 422),
    (b'{"query": "a", "query": 5}', 422),  # duplicate key: the last wins
    (b'{"query": "\\u001c\\u2028\\u00a0"}', 422),  # only whitespace (as str.strip() sees it)
    (b"\xff\xfe{}", 422),
    (b"", 422),
    (b"null", 422),
    (b'{"query": "\\u0000"}', 200),  # odd but real text: answered
    (b'{"query": "' + "\u202e\u200b\ufeff".encode() + b'"}', 200),
    (b'{"query": "a", "k": 5.0}', 200),  # JSON's integer 5
    (b'{"query": ["' + b'", "'.join([b"x" * 900] * 64)  # 64 x 200 pairs: over max_rerank_pairs (1000)
     + b'"], "k": 100, "rerank": true, "rerank_depth": 200}', 422),
    (b'{"query": ["' + b'", "'.join([b"x" * 900] * 5)  # the largest rerank allowed: 5 x 200 = 1000 pairs
     + b'"], "k": 100, "rerank": true, "rerank_depth": 200}', 200),
]


@pytest.mark.parametrize("body,status", NASTY_JSON, ids=[repr(b[:24]) for b, _ in NASTY_JSON])
def test_nasty_bodies_get_a_clear_answer(server, body, status):
    url, headers = server
    r = httpx.post(f"{url}/search", content=body, headers={**headers, "content-type": "application/json"},
                   timeout=120)
    assert r.status_code == status, r.text[:300]
    if status != 200:
        assert r.json()["detail"]


def _raw_http(url: str, request: bytes) -> bytes:
    host, port = url.removeprefix("http://").split(":")
    with socket.create_connection((host, int(port)), timeout=30) as s:
        s.sendall(request)
        s.shutdown(socket.SHUT_WR)
        chunks = []
        while data := s.recv(65536):
            chunks.append(data)
    return b"".join(chunks)


def _chunked(body: bytes, size: int = 8192) -> bytes:
    """``body`` in HTTP/1.1 chunked transfer encoding (no Content-Length)."""
    parts = [body[i:i + size] for i in range(0, len(body), size)]
    return b"".join(b"%x\r\n%s\r\n" % (len(p), p) for p in parts) + b"0\r\n\r\n"


def test_body_limit_over_http(server):
    url, headers = server
    auth = "".join(f"{k}: {v}\r\n" for k, v in headers.items()).encode()
    big = json.dumps({"query": "word " * (MAX_BODY_BYTES // 5 + 10)}).encode()
    # Content-Length over the limit: refused before the body is read (none is sent here at all).
    head = (b"POST /search HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n" + auth
            + b"Content-Length: 1000000000000\r\nConnection: close\r\n\r\n")
    assert _raw_http(url, head).startswith(b"HTTP/1.1 413")
    # Chunked, no Content-Length: counted while it streams in.
    req = (b"POST /search HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n" + auth
           + b"Transfer-Encoding: chunked\r\nConnection: close\r\n\r\n" + _chunked(big))
    assert _raw_http(url, req).startswith(b"HTTP/1.1 413")
    # Just under the limit, chunked: answered.
    ok = json.dumps({"query": "w " * ((MAX_BODY_BYTES - 100) // 2), "k": 1}).encode()
    req = (b"POST /search HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n" + auth
           + b"Transfer-Encoding: chunked\r\nConnection: close\r\n\r\n" + _chunked(ok))
    assert _raw_http(url, req).startswith(b"HTTP/1.1 200")


def test_token_required_over_http(server):
    url, headers = server
    if not headers:  # no token configured: nothing asks for one
        assert httpx.get(f"{url}/openapi.json").status_code == 200
        assert httpx.post(f"{url}/search", json={"query": "a"}).status_code == 200
        return
    assert httpx.get(f"{url}/healthz").status_code == 200
    assert httpx.get(f"{url}/readyz").status_code == 200
    for path in ("/openapi.json", "/docs", "/redoc", "/nope"):
        assert httpx.get(f"{url}{path}").status_code == 401, path
    assert httpx.post(f"{url}/search", json={"query": "a"}).status_code == 401
    wrong = {"Authorization": "Bearer nope"}
    assert httpx.post(f"{url}/search", json={"query": "a"}, headers=wrong).status_code == 401
    assert httpx.post(f"{url}/search", json={"query": "a"}, headers=headers).status_code == 200
