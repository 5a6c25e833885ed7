"""A small httpx client for the search API, and the query round the demo prints."""

from __future__ import annotations

import os
import time

import httpx

from serve.api import TOKEN_ENV


def headers(token: str | None = None) -> dict:
    token = token if token is not None else os.environ.get(TOKEN_ENV, "")
    return {"Authorization": f"Bearer {token}"} if token else {}


def wait_ready(url: str, timeout_s: float = 120.0, token: str | None = None) -> dict:
    """Poll ``GET /readyz`` until it answers 200; returns its JSON."""
    deadline = time.monotonic() + timeout_s
    last = None
    with httpx.Client(timeout=5.0, headers=headers(token)) as c:
        while time.monotonic() < deadline:
            try:
                r = c.get(f"{url}/readyz")
                if r.status_code == 200:
                    return r.json()
                last = f"{r.status_code} {r.text[:200]}"
            except httpx.HTTPError as err:
                last = repr(err)
            time.sleep(0.5)
    raise TimeoutError(f"{url} not ready after {timeout_s:.0f} s (last: {last})")


def search(
    url: str,
    query: str | list[str],
    k: int = 10,
    rerank: bool = False,
    rerank_depth: int = 50,
    token: str | None = None,
    client: httpx.Client | None = None,
) -> dict:
    body = {"query": query, "k": k, "rerank": rerank, "rerank_depth": rerank_depth}
    if client is not None:
        r = client.post(f"{url}/search", json=body)
    else:
        r = httpx.post(f"{url}/search", json=body, headers=headers(token), timeout=60.0)
    r.raise_for_status()
    return r.json()


def format_results(query: str, hits: list[dict], truncated: bool = False, width: int = 100,
                   judged: set[str] | None = None) -> str:
    """One line for the query, one per hit (rank, doc id, score, title - snippet); with ``judged`` (the
    query's judged-relevant doc ids) a hit among them is marked ``*``."""
    lines = [f"query: {query!r}" + ("  [truncated to the encoder's max_length]" if truncated else "")]
    for rank, h in enumerate(hits, 1):
        title = h.get("title") or ""
        snip = (h.get("snippet") or "")[: max(0, width - len(title) - 30)]
        mark = "*" if judged and h["docid"] in judged else " "
        lines.append(
            f" {mark}{rank:2d}. {h['docid']:<10} {h['score']:8.4f}  {title}" + (f" - {snip}" if snip else "")
        )
    return "\n".join(lines)


def query_demo(
    url: str, queries: list[str], k: int = 3, rerank: bool | None = None, token: str | None = None, out=print,
    judged: dict[str, set[str]] | None = None,
) -> list[dict]:
    """Send ``queries`` over HTTP without and (when the server has a reranker) with reranking; print
    the results (``judged``: query -> judged-relevant doc ids, marked ``*``) and the latency of each call.
    Returns the responses."""
    info = wait_ready(url, token=token)
    if rerank is None:
        rerank = bool(info.get("reranker"))
    out(
        f"server ready at {url}: index version {info.get('version')}, "
        f"reranker {'on' if info.get('reranker') else 'off'}"
    )
    responses = []
    with httpx.Client(timeout=60.0, headers=headers(token)) as c:
        for mode in [False, True] if rerank else [False]:
            t0 = time.perf_counter()
            resp = search(url, queries, k=k, rerank=mode, client=c)
            ms = (time.perf_counter() - t0) * 1000
            out(
                f"\n== {'student + teacher rerank' if mode else 'student (dense retrieval)'}: "
                f"{len(queries)} queries in {ms:.0f} ms, version {resp['version']}"
            )
            for q, hits, trunc in zip(queries, resp["results"], resp["truncated"]):
                out(format_results(q, hits, trunc, judged=(judged or {}).get(q)))
            responses.append(resp)
    return responses
