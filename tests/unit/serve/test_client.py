"""serve/client.py against a stub HTTP server on 127.0.0.1 (no Ray, no models): the bearer header, the
/readyz poll, the /search body, the printed results and the demo's query round."""

from __future__ import annotations

import json
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import httpx
import pytest

from serve import client
from serve.api import TOKEN_ENV


class Stub:
    """A search API stand-in: /readyz answers 503 ``not_ready`` times, then 200; /search answers one hit per
    query naming the body's rerank flag. Records every request as (method, path, Authorization, body)."""

    def __init__(self, not_ready: int = 0, reranker: bool = True):
        self.not_ready, self.reranker, self.requests = not_ready, reranker, []
        stub = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args):
                pass

            def _answer(self, code: int, payload: dict) -> None:
                data = json.dumps(payload).encode()
                self.send_response(code)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            def do_GET(self):
                stub.requests.append(("GET", self.path, self.headers.get("Authorization"), None))
                if self.path != "/readyz":
                    return self._answer(404, {"detail": "no"})
                if stub.not_ready > 0:
                    stub.not_ready -= 1
                    return self._answer(503, {"reason": "warming up"})
                self._answer(200, {"version": "v9", "reranker": stub.reranker})

            def do_POST(self):
                body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
                stub.requests.append(("POST", self.path, self.headers.get("Authorization"), body))
                queries = body["query"] if isinstance(body["query"], list) else [body["query"]]
                hit = {"docid": "d7" if body["rerank"] else "d1", "score": 0.5, "title": "T", "snippet": "some text"}
                self._answer(200, {"version": "v9", "results": [[hit] for _ in queries],
                                   "truncated": [False] * len(queries), "reranked": body["rerank"]})

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()

    def close(self):
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture
def stub():
    made = []

    def make(**kw):
        made.append(Stub(**kw))
        return made[-1]

    yield make
    for s in made:
        s.close()


def test_headers_take_the_token_argument_then_the_environment(monkeypatch):
    monkeypatch.delenv(TOKEN_ENV, raising=False)
    assert client.headers() == {}
    assert client.headers("abc") == {"Authorization": "Bearer abc"}
    monkeypatch.setenv(TOKEN_ENV, "from-env")
    assert client.headers() == {"Authorization": "Bearer from-env"}
    assert client.headers("") == {}  # an explicit empty token means none, even with the variable set
    assert client.headers("arg") == {"Authorization": "Bearer arg"}


def test_wait_ready_polls_until_200_and_sends_the_token(stub):
    s = stub(not_ready=2)
    assert client.wait_ready(s.url, timeout_s=30, token="t0k") == {"version": "v9", "reranker": True}
    assert [r[:3] for r in s.requests] == [("GET", "/readyz", "Bearer t0k")] * 3


def test_wait_ready_times_out_naming_the_last_answer(stub):
    s = stub(not_ready=10**6)
    with pytest.raises(TimeoutError, match=r"not ready after 3 s \(last: 503 .*warming up"):
        client.wait_ready(s.url, timeout_s=3)
    with pytest.raises(TimeoutError, match=r"last: ConnectError"):  # nothing listening: the error is named
        s.close()
        client.wait_ready(s.url, timeout_s=3)


def test_search_posts_the_body_with_and_without_a_client(stub, monkeypatch):
    monkeypatch.delenv(TOKEN_ENV, raising=False)
    s = stub()
    got = client.search(s.url, "q one", k=4, rerank=True, rerank_depth=20, token="tk")
    assert got["results"] == [[{"docid": "d7", "score": 0.5, "title": "T", "snippet": "some text"}]]
    assert s.requests[-1] == ("POST", "/search", "Bearer tk",
                              {"query": "q one", "k": 4, "rerank": True, "rerank_depth": 20})
    with httpx.Client(headers={"Authorization": "Bearer mine"}) as c:
        got = client.search(s.url, ["a", "b"], client=c)
    assert got["reranked"] is False and len(got["results"]) == 2
    assert s.requests[-1] == ("POST", "/search", "Bearer mine",
                              {"query": ["a", "b"], "k": 10, "rerank": False, "rerank_depth": 50})


def test_search_raises_on_an_error_status():
    def handler(request):
        return httpx.Response(422, json={"detail": "bad k"})

    with httpx.Client(transport=httpx.MockTransport(handler)) as c:
        with pytest.raises(httpx.HTTPStatusError, match="422"):
            client.search("http://x", "q", client=c)


def test_format_results_lines():
    hits = [{"docid": "d1", "score": 1.5, "title": "Title", "snippet": "the text"},
            {"docid": "d22", "score": -0.25, "title": None, "snippet": None}]
    assert client.format_results("q", hits).splitlines() == [
        "query: 'q'",
        "   1. d1           1.5000  Title - the text",
        "   2. d22         -0.2500  ",
    ]
    assert client.format_results("q", [], truncated=True) == "query: 'q'  [truncated to the encoder's max_length]"
    # judged-relevant hits are marked; an empty or missing judgement marks nothing
    assert client.format_results("q", hits, judged={"d22", "d9"}).splitlines()[1:] == [
        "   1. d1           1.5000  Title - the text",
        " * 2. d22         -0.2500  ",
    ]
    assert client.format_results("q", hits, judged=set()) == client.format_results("q", hits)
    # the snippet is cut so the line stays near ``width``
    long = client.format_results("q", [{"docid": "d", "score": 0.0, "title": "t" * 10, "snippet": "x" * 500}],
                                 width=60).splitlines()[1]
    assert long.endswith(" - " + "x" * 20)


@pytest.mark.parametrize("reranker,modes", [(True, [False, True]), (False, [False])])
def test_query_demo_searches_without_then_with_the_reranker(stub, reranker, modes):
    s = stub(reranker=reranker)
    printed = []
    responses = client.query_demo(s.url, ["alpha", "beta"], k=2, token="tk", out=printed.append)
    assert [r["reranked"] for r in responses] == modes
    posts = [r for r in s.requests if r[0] == "POST"]
    assert [(p[2], p[3]["rerank"], p[3]["k"], p[3]["query"]) for p in posts] == \
        [("Bearer tk", m, 2, ["alpha", "beta"]) for m in modes]
    assert printed[0] == f"server ready at {s.url}: index version v9, reranker {'on' if reranker else 'off'}"
    assert sum("student (dense retrieval): 2 queries in" in p for p in printed) == 1
    assert sum("student + teacher rerank: 2 queries in" in p for p in printed) == int(reranker)
    assert sum(p.startswith("query: 'alpha'") for p in printed) == len(modes)
    # judged doc ids are marked in every mode's lines of that query only
    printed.clear()
    client.query_demo(s.url, ["alpha", "beta"], k=2, token="tk", out=printed.append, judged={"beta": {"zzz"}})
    assert not any("*" in p for p in printed)  # the stub's hits are not judged
    # rerank=False overrides a server that has a reranker
    s.requests.clear()
    assert len(client.query_demo(s.url, ["alpha"], rerank=False, out=printed.append)) == 1
