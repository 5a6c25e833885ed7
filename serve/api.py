"""The HTTP API, as a plain FastAPI app built from a backend object.

``create_app(backend)`` owns everything HTTP: request and response models (so OpenAPI documents them),
validation (bad input is a 4xx naming the field, never a 500), the 64 KiB body limit, the optional
bearer token, health and readiness, and the search flow (retrieve, optionally rerank, cut to k).
The backend does the model work. Two backends exist: :class:`LocalBackend` (models in this process:
plain uvicorn, tests) and ``serve.app.ServeBackend`` (Ray Serve deployment handles).

Routes:

- ``POST /search`` ``{"query": str | [str], "k": 1..100 = 10, "rerank": bool = false,
  "rerank_depth": 1..200 = 50}`` -> ``{"version", "results": [[{docid, score, title, snippet}]],
  "truncated": [bool], "reranked": bool}``. With ``rerank``, the top ``max(k, rerank_depth)``
  first-stage candidates are rescored by the teacher and the top k of those returned (scores are
  then the teacher's).
- ``POST /v1/embeddings`` (OpenAI's shape) ``{"input": str | [str] (1..256), "model"?: str,
  "encoding_format"?: "float" | "base64", "user"?: str}`` -> ``{"object": "list",
  "data": [{"object": "embedding", "index", "embedding"}], "model", "usage": {"prompt_tokens",
  "total_tokens"}}``: the student's query embeddings (what ``/search`` encodes a query with). ``model``,
  when given, must be ``"student"`` or the run's name (the manifest's ``config.name``, else the run
  directory's name; 404 otherwise); the response names the model as requested (default: the run's
  name). ``base64`` is little-endian float32 (what the ``openai`` package asks for by default);
  ``dimensions`` is not supported (422: the student has one size). ``usage`` counts the tokens the
  encoder read.
- ``POST /rerank`` (TEI's shape) ``{"query": str, "texts": [str] (1..200), "top_n"?: int,
  "return_text"?: bool}`` -> ``[{"index", "score"[, "text"]}]``, best first; or (Cohere's shape)
  ``{"query", "documents": [str], "top_n"?, "return_documents"?: bool}`` -> ``{"results": [{"index",
  "relevance_score"[, "document": {"text"}]}]}``. Scores are the deployed teacher's, raw (as a reranked
  ``/search`` reports them); 400 when no reranker is deployed.
- ``GET /metrics``: Prometheus text (a registry per app: one per ingress replica under Serve):
  ``distill_requests_total{route,method,code}``, ``distill_request_duration_seconds{route}`` (histogram),
  ``distill_request_errors_total{route,code}``, ``distill_request_batch_size{route}`` (histogram of
  queries / inputs / texts per request), ``distill_index_version_info{version}`` (1 for the version that
  answered last). Unknown paths count under route ``other``.
- ``GET /healthz``: 200 while the process is up (answered at once: it never waits for model work).
  ``GET /readyz``: 200 while the retriever answers and the application is healthy (under Serve: no
  deployment UNHEALTHY or DEPLOY_FAILED, at least one running Retriever (and Reranker) replica); the
  answer names the running replicas per deployment; the check is bounded (``ready_timeout_s``) and
  cached for ``ready_cache_s``, so probes under load cost nothing.

Overload (:class:`Limits`, one per app): the work routes (``/search``, ``/v1/embeddings``, ``/rerank``)
are admitted at most ``max_inflight`` at a time; at most ``max_queued`` more wait for a slot, and only while
the wait they can expect from the recent completion rate is within ``queue_wait_s`` (half the deadline);
past that a request is answered 503 with ``Retry-After``, held ``shed_hold_s`` (1 s) first so that clients that re-send
at once cannot turn refusals into a storm that starves the admitted work. Every admitted request has a server-side deadline
(``request_timeout_s``, default 10 s, counted from arrival, queueing included): past it the work is
cancelled (the handle call with it: Serve cancels the replica's request) and the answer is 503 naming the
deadline. A reranking request costs queries x depth (query, document) pairs; more than
``max_rerank_pairs`` is a 422 naming the limit. Health, readiness and metrics bypass admission.

With a token configured, every route but ``/healthz`` and ``/readyz`` (``/metrics`` included: give the
scraper the token, e.g. Prometheus' ``authorization`` setting) needs ``Authorization: Bearer
<token>`` (401 otherwise). Only the token's SHA-256 is held, so it never sits in a deployment config.
Without one, the Serve app (serve.app.build_app) accepts only requests whose ``Host`` header names an
allowed host (``allowed_hosts``: loopback names and the bound address; 421 otherwise), so a web page
cannot reach the tokenless loopback server through DNS rebinding.
"""

from __future__ import annotations

import asyncio
import collections
import hashlib
import hmac
import json
import logging
from typing import Annotated, Any, Protocol, Union

import base64
import time
from dataclasses import dataclass
from typing import Literal

import numpy as np
from fastapi import FastAPI, HTTPException, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse, Response
from pydantic import (BaseModel, ConfigDict, Field, StrictBool, StrictInt, StrictStr, WithJsonSchema,
                      field_validator, model_validator)
from pydantic_core import PydanticCustomError

from serve.core import rerank_order

log = logging.getLogger(__name__)

MAX_BODY_BYTES = 64 * 1024
MAX_QUERIES = 64
MAX_K = 100
MAX_RERANK_DEPTH = 200
MAX_EMBED_INPUTS = 256
MAX_RERANK_TEXTS = 200
WORK_ROUTES = frozenset({"/search", "/v1/embeddings", "/rerank"})
STUDENT_MODEL = "student"  # the model name /v1/embeddings accepts for the served student, besides the run's
TOKEN_ENV = "DISTILL_SERVE_TOKEN"
OPEN_PATHS = frozenset({"/healthz", "/readyz"})
# Host header names a tokenless server always accepts (with any port).
LOOPBACK_HOSTS = ("localhost", "127.0.0.1", "::1")


@dataclass(frozen=True)
class Limits:
    """What one app (one ingress replica under Serve) takes on at once, and for how long.

    ``request_timeout_s``: the server-side deadline of every work request, from arrival (waiting for a
    slot included) to the answer; past it the work is cancelled and the answer is 503. ``max_inflight``:
    work requests computing at once; ``max_queued``: more waiting for a slot (then 503, see shed_hold_s).
    ``queue_wait_s``: a request that must wait is queued only while the expected wait, the requests ahead
    of it over the recent completion rate (:class:`CompletionRate`), is within this (default: half the
    deadline): one that would likely meet its deadline in the queue is refused now instead, and under a
    load the server can serve in time every request is queued and none refused.
    ``max_rerank_pairs``: (query, document) pairs one request may ask the teacher to score (422 past it).
    ``retry_after_s``: the ``Retry-After`` of a 503. ``shed_hold_s`` / ``max_held``: a refusal for a full
    queue is held this long (at most until the request's deadline) before its 503, for at most ``max_held``
    refusals at once (more are answered at once): a client that ignores Retry-After and re-sends at once then
    costs one refusal per hold instead of one per round trip, so refusals cannot eat the CPU the admitted
    work needs (0: answer at once). ``ready_timeout_s`` / ``ready_cache_s``: the bound on a readiness check
    and how long its answer is reused."""

    request_timeout_s: float = 10.0
    max_inflight: int = 32
    max_queued: int = 512
    queue_wait_s: float | None = None
    max_rerank_pairs: int = 1000
    retry_after_s: int = 1
    shed_hold_s: float = 1.0
    max_held: int = 1024
    ready_timeout_s: float = 3.0
    ready_cache_s: float = 1.0

    def __post_init__(self):
        if not self.request_timeout_s > 0:
            raise ValueError("request_timeout_s must be > 0")
        if self.max_inflight < 1 or self.max_queued < 0 or self.max_rerank_pairs < 1:
            raise ValueError("max_inflight >= 1, max_queued >= 0 and max_rerank_pairs >= 1 are required")
        if self.shed_hold_s < 0 or self.max_held < 0:
            raise ValueError("shed_hold_s >= 0 and max_held >= 0 are required")
        if self.queue_wait_s is not None and self.queue_wait_s < 0:
            raise ValueError("queue_wait_s must be >= 0")

    @property
    def queue_wait(self) -> float:
        """``queue_wait_s``, or half the deadline when unset."""
        return self.request_timeout_s / 2 if self.queue_wait_s is None else self.queue_wait_s
# What the query validator enforces, stated in the OpenAPI schema (so clients and fuzzers see it): a
# string holding a character that str.strip() keeps (Python whitespace = regex \s plus \x1c-\x1f).
QUERY_TEXT_SCHEMA = {"type": "string", "minLength": 1, "pattern": r"[^\s\x1c-\x1f]"}


# ---- models -------------------------------------------------------------------------------------------
def _is_text(s: str) -> bool:
    """False for strings JSON can carry but text cannot: lone surrogates (``"\\ud800"``)."""
    try:
        s.encode("utf-8")
    except UnicodeEncodeError:
        return False
    return True


class SearchRequest(BaseModel):
    """One query or a batch of up to 64."""

    model_config = ConfigDict(
        extra="forbid",
        json_schema_extra={
            "examples": [
                {"query": "how do shield volcanoes form", "k": 5},
                {"query": ["first query", "second query"], "k": 10, "rerank": True, "rerank_depth": 50},
            ]
        },
    )

    query: Annotated[
        Union[str, list[str]],
        WithJsonSchema({"anyOf": [QUERY_TEXT_SCHEMA, {"type": "array", "items": QUERY_TEXT_SCHEMA,
                                                      "minItems": 1, "maxItems": MAX_QUERIES}]}),
    ] = Field(..., description=f"a non-empty query, or a list of 1..{MAX_QUERIES} non-empty queries")
    k: StrictInt = Field(10, ge=1, le=MAX_K, description="results per query")
    rerank: StrictBool = Field(False, description="rescore the first-stage candidates with the teacher")
    rerank_depth: StrictInt = Field(
        50,
        ge=1,
        le=MAX_RERANK_DEPTH,
        description="first-stage candidates the teacher rescores (raised to k if smaller)",
    )

    @field_validator("k", "rerank_depth", mode="before")
    @classmethod
    def _integral_number(cls, v: Any) -> Any:
        """JSON has one number type: 5.0 is the integer 5 (as JSON Schema's "integer" says); 2.5, "5"
        and true stay errors."""
        return int(v) if isinstance(v, float) and v.is_integer() else v

    @field_validator("query", mode="before")
    @classmethod
    def _check_query(cls, v: Any) -> Any:
        if isinstance(v, str):
            if not v.strip():
                raise PydanticCustomError("query_invalid", "query must be a non-empty string")
            if not _is_text(v):
                raise PydanticCustomError("query_invalid", "query must be valid Unicode (no lone surrogates)")
            return v
        if isinstance(v, list):
            if not v:
                raise PydanticCustomError("query_invalid", "query list must not be empty")
            if len(v) > MAX_QUERIES:
                raise PydanticCustomError(
                    "query_invalid", f"at most {MAX_QUERIES} queries per request, got {len(v)}"
                )
            for i, q in enumerate(v):
                if not isinstance(q, str) or not q.strip():
                    raise PydanticCustomError("query_invalid", f"query[{i}] must be a non-empty string")
                if not _is_text(q):
                    raise PydanticCustomError(
                        "query_invalid", f"query[{i}] must be valid Unicode (no lone surrogates)"
                    )
            return v
        raise PydanticCustomError("query_invalid", "query must be a string or a list of strings")

    def queries(self) -> list[str]:
        return [self.query] if isinstance(self.query, str) else list(self.query)


def _check_texts(v: Any, field: str, max_items: int, allow_str: bool) -> Any:
    """A non-empty text (``allow_str``) or a list of 1..max_items non-empty texts; errors name the item."""
    def one(x, where):
        if not isinstance(x, str) or not x.strip():
            raise PydanticCustomError(f"{field}_invalid", f"{where} must be a non-empty string")
        if not _is_text(x):
            raise PydanticCustomError(f"{field}_invalid",
                                      f"{where} must be valid Unicode (no lone surrogates)")

    if allow_str and isinstance(v, str):
        one(v, field)
        return v
    if isinstance(v, list):
        if not v:
            raise PydanticCustomError(f"{field}_invalid", f"{field} list must not be empty")
        if len(v) > max_items:
            raise PydanticCustomError(f"{field}_invalid", f"at most {max_items} {field} items per request, "
                                      f"got {len(v)}")
        if allow_str and all(isinstance(x, int) and not isinstance(x, bool) for x in v):
            raise PydanticCustomError(f"{field}_invalid", f"{field} as token ids is not supported: send text "
                                      "(e.g. LangChain's OpenAIEmbeddings(check_embedding_ctx_length=False))")
        for i, x in enumerate(v):
            one(x, f"{field}[{i}]")
        return v
    raise PydanticCustomError(
        f"{field}_invalid", f"{field} must be a string or a list of strings" if allow_str
        else f"{field} must be a list of strings")


def _integral(v: Any) -> Any:
    return int(v) if isinstance(v, float) and v.is_integer() else v


class EmbeddingsRequest(BaseModel):
    """OpenAI's embeddings request: one text or a batch of up to 256."""

    model_config = ConfigDict(
        extra="forbid",
        json_schema_extra={"examples": [
            {"input": "how do shield volcanoes form", "model": STUDENT_MODEL},
            {"input": ["first text", "second text"], "encoding_format": "float"},
        ]},
    )

    input: Annotated[
        Union[str, list[str]],
        WithJsonSchema({"anyOf": [QUERY_TEXT_SCHEMA, {"type": "array", "items": QUERY_TEXT_SCHEMA,
                                                      "minItems": 1, "maxItems": MAX_EMBED_INPUTS}]}),
    ] = Field(..., description=f"a non-empty text, or a list of 1..{MAX_EMBED_INPUTS} texts (token ids: "
                               "not supported)")
    model: StrictStr | None = Field(
        None, description=f"'{STUDENT_MODEL}' or the run's name (omitted: the served student)")
    encoding_format: Literal["float", "base64"] = Field(
        "float", description="float: lists of numbers; base64: little-endian float32 bytes")
    user: StrictStr | None = Field(None, description="accepted and ignored")

    @field_validator("input", mode="before")
    @classmethod
    def _check_input(cls, v: Any) -> Any:
        return _check_texts(v, "input", MAX_EMBED_INPUTS, allow_str=True)

    def texts(self) -> list[str]:
        return [self.input] if isinstance(self.input, str) else list(self.input)


class Embedding(BaseModel):
    object: Literal["embedding"] = "embedding"
    index: int
    embedding: Union[list[float], str] = Field(description="numbers, or base64 of little-endian float32")


class EmbeddingsUsage(BaseModel):
    prompt_tokens: int
    total_tokens: int


class EmbeddingsResponse(BaseModel):
    object: Literal["list"] = "list"
    data: list[Embedding]
    model: str
    usage: EmbeddingsUsage


class RerankRequest(BaseModel):
    """TEI's rerank request (``texts``), or Cohere's (``documents``): exactly one of the two."""

    model_config = ConfigDict(
        extra="forbid",
        json_schema_extra={"examples": [
            {"query": "what is a shield volcano", "texts": ["text one", "text two"]},
            {"query": "what is a shield volcano", "documents": ["text one", "text two"], "top_n": 1},
        ],
            "oneOf": [{"required": ["query", "texts"]}, {"required": ["query", "documents"]}]},
    )

    query: Annotated[str, WithJsonSchema(QUERY_TEXT_SCHEMA)] = Field(..., description="a non-empty query")
    texts: Annotated[list[str] | None, WithJsonSchema(
        {"type": "array", "items": QUERY_TEXT_SCHEMA, "minItems": 1, "maxItems": MAX_RERANK_TEXTS})] = Field(
        None, description=f"TEI form: 1..{MAX_RERANK_TEXTS} texts to score (answer: a list)")
    documents: Annotated[list[str] | None, WithJsonSchema(
        {"type": "array", "items": QUERY_TEXT_SCHEMA, "minItems": 1, "maxItems": MAX_RERANK_TEXTS})] = Field(
        None, description=f"Cohere form: 1..{MAX_RERANK_TEXTS} texts to score (answer: {{results: [...]}})")
    top_n: StrictInt | None = Field(None, ge=1, description="answer only the best n (default: all)")
    return_text: StrictBool = Field(False, description="TEI form: include each text")
    return_documents: StrictBool = Field(False, description="Cohere form: include each document")
    raw_scores: StrictBool | None = Field(
        None, description="accepted; scores are always the teacher's raw scores")
    truncate: StrictBool | None = Field(
        None, description="accepted; texts are always truncated to the teacher's max_length")
    model: StrictStr | None = Field(None, description="accepted and ignored: the deployed teacher answers")

    @field_validator("query", mode="before")
    @classmethod
    def _check_query(cls, v: Any) -> Any:
        if not isinstance(v, str):
            raise PydanticCustomError("query_invalid", "query must be a non-empty string")
        return _check_texts(v, "query", 1, allow_str=True)

    @field_validator("texts", "documents", mode="before")
    @classmethod
    def _check_list(cls, v: Any, info) -> Any:
        return _check_texts(v, info.field_name, MAX_RERANK_TEXTS, allow_str=False)

    @field_validator("top_n", mode="before")
    @classmethod
    def _integral_number(cls, v: Any) -> Any:
        return _integral(v)

    @model_validator(mode="after")
    def _one_form(self) -> "RerankRequest":
        if (self.texts is None) == (self.documents is None):
            raise PydanticCustomError("texts_invalid",
                                      "texts: send exactly one of texts (TEI) or documents (Cohere)")
        return self

    @property
    def cohere(self) -> bool:
        return self.documents is not None

    def items(self) -> list[str]:
        return list(self.documents if self.cohere else self.texts)


class Hit(BaseModel):
    docid: str
    score: float = Field(description="the student's similarity, or the teacher's score when reranked")
    title: str | None = Field(None, description="null when the index was built without corpus text")
    snippet: str | None = Field(None, description="start of the passage; null without corpus text")


class SearchResponse(BaseModel):
    version: str = Field(description="version of the index that answered")
    results: list[list[Hit]] = Field(description="one ranked list per query, in request order")
    truncated: list[bool] = Field(description="per query: longer than the encoder's max_length tokens")
    reranked: bool


class RerankHit(BaseModel):
    index: int = Field(description="position in the request's texts")
    score: float = Field(description="the teacher's raw score")
    text: str | None = None


class CohereDocument(BaseModel):
    text: str


class CohereRerankHit(BaseModel):
    index: int
    relevance_score: float
    document: CohereDocument | None = None


class CohereRerankResponse(BaseModel):
    results: list[CohereRerankHit]


class ErrorResponse(BaseModel):
    detail: Any
    message: str | None = None


class Health(BaseModel):
    status: str


class Readiness(BaseModel):
    status: str
    version: str | None = None
    reranker: bool | None = None
    replicas: dict[str, int] | None = Field(
        None, description="running replicas per deployment (under Serve)")
    reason: str | None = None


# ---- backends -----------------------------------------------------------------------------------------
class BackendUnavailable(RuntimeError):
    """The model side cannot answer right now (-> 503)."""


class Backend(Protocol):
    has_reranker: bool

    async def retrieve(self, queries: list[str], depth: int, with_text: bool) -> dict:
        """``{"version": str, "truncated": [bool],
        "candidates": [[{docid, score, title, snippet[, text]}]]}``"""

    async def rerank(self, queries: list[str], texts: list[list[str]]) -> list[list[float]]:
        """Teacher scores per query for its candidate texts."""

    async def embed(self, texts: list[str]) -> dict:
        """The student's query embeddings: ``{"model": run name, "version": str, "embeddings": [[float]],
        "tokens": [int]}`` (serve.core.Retrieval.embed)."""

    async def ready(self) -> dict:
        """``{"version": str, "reranker": bool[, "replicas": {deployment: running}]}``; raises when not
        ready."""


class LocalBackend:
    """Models in this process (plain uvicorn, tests). Calls run inline on the event loop, one at a
    time, so torch owns the cores it was given instead of competing threads oversubscribing them."""

    def __init__(self, retrieval, reranking=None):
        self.retrieval = retrieval
        self.reranking = reranking
        self.has_reranker = reranking is not None

    async def retrieve(self, queries: list[str], depth: int, with_text: bool) -> dict:
        ids, scores, truncated = self.retrieval.search(queries, depth)
        return {
            "version": self.retrieval.version,
            "truncated": truncated,
            "candidates": [self.retrieval.hits(i, s, with_text) for i, s in zip(ids, scores)],
        }

    async def rerank(self, queries: list[str], texts: list[list[str]]) -> list[list[float]]:
        flat_q = [q for q, ts in zip(queries, texts) for _ in ts]
        flat_d = [t for ts in texts for t in ts]
        scores = self.reranking.score(flat_q, flat_d).tolist()
        out, i = [], 0
        for ts in texts:
            out.append(scores[i : i + len(ts)])
            i += len(ts)
        return out

    async def embed(self, texts: list[str]) -> dict:
        return self.retrieval.embed(texts)

    async def ready(self) -> dict:
        return {"version": self.retrieval.version, "reranker": self.has_reranker}


def check_rerank_cost(queries: int, depth: int, max_pairs: int | None, field: str) -> None:
    """422 naming the limit when a request asks the teacher for more than ``max_pairs`` pairs."""
    if max_pairs is not None and queries * depth > max_pairs:
        raise HTTPException(
            422,
            f"{field}: {queries} quer{'y' if queries == 1 else 'ies'} x depth {depth} = {queries * depth} "
            f"(query, document) pairs to rerank is over this server's limit of {max_pairs} "
            "(max_rerank_pairs): send fewer queries or a smaller depth, or split the request",
        )


async def run_search(backend: Backend, req: SearchRequest, max_rerank_pairs: int | None = None) -> dict:
    """Retrieve, optionally rerank, cut to k: the whole search flow, whatever the backend."""
    if req.rerank and not backend.has_reranker:
        raise HTTPException(
            400,
            "rerank: this server has no reranker deployed (start it with --rerank, "
            "or build_app args rerank: true); send rerank=false",
        )
    queries = req.queries()
    depth = max(req.k, req.rerank_depth) if req.rerank else req.k
    if req.rerank:
        check_rerank_cost(len(queries), depth, max_rerank_pairs, "rerank_depth")
    out = await backend.retrieve(queries, depth, req.rerank)
    candidates = out["candidates"]
    if req.rerank:
        scores = await backend.rerank(queries, [[c.get("text", "") for c in cs] for cs in candidates])
        candidates = [
            [{**cs[i], "score": float(s[i])} for i in rerank_order(s)] for cs, s in zip(candidates, scores)
        ]
    results = [
        [
            {"docid": c["docid"], "score": c["score"], "title": c.get("title"), "snippet": c.get("snippet")}
            for c in cs[: req.k]
        ]
        for cs in candidates
    ]
    return {
        "version": out["version"],
        "results": results,
        "truncated": out["truncated"],
        "reranked": req.rerank,
    }


async def run_embeddings(backend: Backend, req: EmbeddingsRequest) -> dict:
    """OpenAI's embeddings answer from the backend's student encodings."""
    texts = req.texts()
    out = await backend.embed(texts)
    served = out["model"]
    if req.model is not None and req.model not in (STUDENT_MODEL, served):
        raise HTTPException(404, f"model: {req.model!r} is not served here; this server embeds with "
                                 f"{STUDENT_MODEL!r} (the run {served!r}): send model={STUDENT_MODEL!r}, "
                                 f"{served!r}, or omit it")
    emb = np.asarray(out["embeddings"], dtype=np.float32).reshape(len(texts), -1)
    if req.encoding_format == "base64":
        vectors = [base64.b64encode(row.astype("<f4").tobytes()).decode("ascii") for row in emb]
    else:
        vectors = emb.tolist()
    tokens = int(sum(out["tokens"]))
    return {
        "object": "list",
        "data": [{"object": "embedding", "index": i, "embedding": v} for i, v in enumerate(vectors)],
        "model": req.model or served,
        "usage": {"prompt_tokens": tokens, "total_tokens": tokens},
        "_version": out.get("version"),
    }


async def run_rerank(backend: Backend, req: RerankRequest, max_rerank_pairs: int | None = None):
    """The teacher's scores for the request's texts, best first (ties: request order), cut to top_n."""
    if not backend.has_reranker:
        raise HTTPException(400, "rerank: this server has no reranker deployed (start it with --rerank, "
                                 "or build_app args rerank: true)")
    items = req.items()
    check_rerank_cost(1, len(items), max_rerank_pairs, "documents" if req.cohere else "texts")
    scores = (await backend.rerank([req.query], [items]))[0]
    order = rerank_order(scores)[: req.top_n]
    if req.cohere:
        return {"results": [
            {"index": i, "relevance_score": float(scores[i]),
             **({"document": {"text": items[i]}} if req.return_documents else {})} for i in order]}
    return [{"index": i, "score": float(scores[i]), **({"text": items[i]} if req.return_text else {})}
            for i in order]


# ---- metrics ------------------------------------------------------------------------------------------
ROUTES = ("/search", "/v1/embeddings", "/rerank", "/metrics", "/healthz", "/readyz", "/docs", "/openapi.json")
LATENCY_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0)
BATCH_BUCKETS = (1, 2, 4, 8, 16, 32, 64, 128, 256)


class Metrics:
    """The app's Prometheus metrics, in a registry of their own (so apps in one process do not clash)."""

    def __init__(self):
        from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram

        self.registry = CollectorRegistry(auto_describe=True)
        self.requests = Counter("distill_requests", "HTTP requests answered, by route, method and status "
                                "code", ["route", "method", "code"], registry=self.registry)
        self.errors = Counter("distill_request_errors", "HTTP answers with a 4xx/5xx status, by route and "
                              "code", ["route", "code"], registry=self.registry)
        self.latency = Histogram("distill_request_duration_seconds", "time from request to the end of the "
                                 "answer, by route", ["route"], buckets=LATENCY_BUCKETS,
                                 registry=self.registry)
        self.batch = Histogram("distill_request_batch_size", "queries (/search), inputs (/v1/embeddings) or "
                               "texts (/rerank) per request", ["route"], buckets=BATCH_BUCKETS,
                               registry=self.registry)
        self.index_version = Gauge("distill_index_version_info", "1 for the index version that answered last",
                                   ["version"], registry=self.registry)
        self.inflight = Gauge("distill_requests_inflight", "work requests computing now (admitted)",
                              registry=self.registry)
        self.queued = Gauge("distill_requests_queued", "work requests waiting for a slot", registry=self.registry)
        self.held = Gauge("distill_requests_held", "refused work requests held before their 503 (Limits."
                          "shed_hold_s)", registry=self.registry)
        self.shed = Counter("distill_requests_shed", "work requests answered 503 without their work done, by "
                            "reason (overloaded: the queue was full; deadline: request_timeout_s passed)",
                            ["route", "reason"], registry=self.registry)
        self.replicas = Gauge("distill_replicas", "running replicas per deployment (from the last readiness "
                              "check; under Serve)", ["deployment"], registry=self.registry)
        self.ready = Gauge("distill_ready", "1 when the last readiness check passed", registry=self.registry)
        self._version = None

    def observe(self, route: str, method: str, code: int, seconds: float) -> None:
        self.requests.labels(route, method, str(code)).inc()
        self.latency.labels(route).observe(seconds)
        if code >= 400:
            self.errors.labels(route, str(code)).inc()

    def version(self, version: str | None) -> None:
        if version is None or version == self._version:
            return
        self.index_version.clear()
        self.index_version.labels(str(version)).set(1)
        self._version = version

    def readiness(self, ready: bool, replicas: dict | None) -> None:
        self.ready.set(1 if ready else 0)
        if replicas is not None:
            self.replicas.clear()
            for name, n in replicas.items():
                self.replicas.labels(str(name)).set(n)

    def render(self) -> bytes:
        from prometheus_client import generate_latest

        return generate_latest(self.registry)


class MetricsMiddleware:
    """Counts every HTTP answer (auth, host and body-limit refusals included: it runs outermost)."""

    def __init__(self, app, metrics: Metrics):
        self.app = app
        self.metrics = metrics

    async def __call__(self, scope, receive, send):
        if scope["type"] != "http":
            return await self.app(scope, receive, send)
        start = time.perf_counter()
        status = {"code": 500}

        async def recording_send(message):
            if message["type"] == "http.response.start":
                status["code"] = int(message["status"])
            await send(message)

        try:
            await self.app(scope, receive, recording_send)
        finally:
            path = scope.get("path", "")
            self.metrics.observe(path if path in ROUTES else "other", scope.get("method", ""), status["code"],
                                 time.perf_counter() - start)


# ---- middleware ---------------------------------------------------------------------------------------
def token_digest(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


async def _send_json(send, status: int, payload: dict, headers: list | None = None) -> None:
    body = json.dumps(payload).encode()
    await send(
        {
            "type": "http.response.start",
            "status": status,
            "headers": [
                (b"content-type", b"application/json"),
                (b"content-length", str(len(body)).encode()),
                *(headers or []),
            ],
        }
    )
    await send({"type": "http.response.body", "body": body})


class BearerTokenMiddleware:
    """401 for every route but the open ones unless ``Authorization: Bearer <token>`` matches."""

    def __init__(self, app, token_sha256: str, open_paths=OPEN_PATHS):
        self.app = app
        self.digest = token_sha256.encode()
        self.open_paths = open_paths

    async def __call__(self, scope, receive, send):
        if scope["type"] != "http" or scope.get("path") in self.open_paths:
            return await self.app(scope, receive, send)
        auth = dict(scope.get("headers") or []).get(b"authorization", b"").decode("latin-1")
        scheme, _, token = auth.partition(" ")
        if scheme.lower() != "bearer" or not hmac.compare_digest(
            token_digest(token.strip()).encode(), self.digest
        ):
            return await _send_json(
                send,
                401,
                {"detail": "missing or invalid bearer token (Authorization header)"},
                [(b"www-authenticate", b"Bearer")],
            )
        return await self.app(scope, receive, send)


def host_name(value: str) -> str:
    """The host of a Host header value, without the port, lower-cased (``[::1]:8000`` -> ``::1``)."""
    value = value.strip().lower()
    if value.startswith("["):  # an IPv6 literal
        return value[1:].partition("]")[0]
    if value.count(":") == 1:
        value = value.partition(":")[0]
    return value.rstrip(".")


class HostAllowlistMiddleware:
    """421 for a request whose ``Host`` header is not an allowed name (DNS-rebinding defence for a server
    without a token: a web page on another origin that makes its own name resolve to 127.0.0.1 still
    sends its own name as Host). The open routes (health checks) are not checked."""

    def __init__(self, app, allowed_hosts, open_paths=OPEN_PATHS):
        self.app = app
        self.allowed = frozenset(host_name(h) for h in allowed_hosts)
        self.open_paths = open_paths

    async def __call__(self, scope, receive, send):
        if scope["type"] != "http" or scope.get("path") in self.open_paths:
            return await self.app(scope, receive, send)
        host = dict(scope.get("headers") or []).get(b"host", b"").decode("latin-1")
        if host_name(host) not in self.allowed:
            return await _send_json(send, 421, {
                "detail": f"Host {host!r} is not served here: without a bearer token this server answers "
                          f"only requests addressed to {', '.join(sorted(self.allowed))} (set "
                          f"{TOKEN_ENV}, or allow the name with --allow-host)",
                "message": "host: not allowed"})
        return await self.app(scope, receive, send)


async def _within(coro, seconds: float):
    """``await coro`` cancelled after ``seconds`` (TimeoutError). Python 3.11+: in this task
    (asyncio.timeout), so a request that needs no waiting takes no extra trip through the event loop
    (an extra task would let the server see a half-closed client as gone first); 3.10: wait_for."""
    if hasattr(asyncio, "timeout"):
        async with asyncio.timeout(seconds):
            return await coro
    return await asyncio.wait_for(coro, seconds)


class CompletionRate:
    """Admitted requests finished per second over the last ``window_s`` (from their end times), and the
    expected wait of a request with ``ahead`` requests queued before it: ``ahead / rate``. None while no
    request finished within the window (at start, or a backend that has not answered lately: the queue's
    count bound alone applies then)."""

    def __init__(self, window_s: float = 2.0, clock=time.monotonic):
        self.window_s = window_s
        self.clock = clock
        self._ends: collections.deque[float] = collections.deque()

    def finished(self) -> None:
        self._ends.append(self.clock())
        self._trim()

    def _trim(self) -> None:
        cut = self.clock() - self.window_s
        while self._ends and self._ends[0] < cut:
            self._ends.popleft()

    def per_s(self) -> float | None:
        self._trim()
        return len(self._ends) / self.window_s if self._ends else None

    def expected_wait(self, ahead: int) -> float | None:
        rate = self.per_s()
        return None if rate is None else ahead / rate


class AdmissionMiddleware:
    """Bounded concurrency, a bounded wait and a deadline for the work routes (:data:`WORK_ROUTES`).

    A request finds a slot (at most ``limits.max_inflight`` computing), or waits for one if fewer than
    ``limits.max_queued`` already wait and its expected wait (:class:`CompletionRate`) is within
    ``limits.queue_wait_s``, else it is refused: 503 with ``Retry-After``, after a hold of
    ``limits.shed_hold_s`` (bounded by its deadline; at once when ``limits.max_held`` are held already). The whole
    request (wait, body, work) runs under ``limits.request_timeout_s``: when that passes, the work is
    cancelled (a Serve handle call with it) and, unless the answer had started, it is 503 naming the
    deadline. Other routes (health, readiness, metrics, docs) pass straight through."""

    def __init__(self, app, limits: Limits, metrics: "Metrics | None" = None, routes=WORK_ROUTES):
        self.app = app
        self.limits = limits
        self.metrics = metrics
        self.routes = routes
        self.inflight = 0
        self.waiting = 0
        self.held = 0
        self.rate = CompletionRate()
        self._slots: asyncio.Semaphore | None = None

    def _gauges(self):
        if self.metrics is not None:
            self.metrics.inflight.set(self.inflight)
            self.metrics.queued.set(self.waiting)
            self.metrics.held.set(self.held)

    async def _hold(self, deadline: float):
        """Keep a refusal ``limits.shed_hold_s`` (not past ``deadline``) unless ``limits.max_held`` are held."""
        hold = min(self.limits.shed_hold_s, max(0.0, deadline - time.monotonic()))
        if hold <= 0 or self.held >= self.limits.max_held:
            return
        self.held += 1
        self._gauges()
        try:
            await asyncio.sleep(hold)
        finally:  # the client may leave while held: the hold ends with it
            self.held -= 1
            self._gauges()

    def _shed(self, path: str, reason: str):
        if self.metrics is not None:
            self.metrics.shed.labels(path, reason).inc()

    async def _unavailable(self, send, detail: str, message: str):
        await _send_json(send, 503, {"detail": detail, "message": message},
                         [(b"retry-after", str(self.limits.retry_after_s).encode())])

    async def _acquire(self, deadline: float) -> bool:
        """A slot before ``deadline`` (True), else False; never loses a slot to a timeout race."""
        if not self._slots.locked():
            await self._slots.acquire()  # free: returns at once
            return True
        self.waiting += 1
        self._gauges()
        acquire = asyncio.ensure_future(self._slots.acquire())
        cancelled = False
        try:
            await asyncio.wait({acquire}, timeout=max(0.0, deadline - time.monotonic()))
        except asyncio.CancelledError:  # the client went away
            cancelled = True
        self.waiting -= 1
        self._gauges()
        if not acquire.done():
            acquire.cancel()
            try:
                await acquire
            except asyncio.CancelledError:
                pass
        got = acquire.done() and not acquire.cancelled() and acquire.exception() is None
        if got and (cancelled or time.monotonic() > deadline):
            self._slots.release()
            got = False
        if cancelled:
            raise asyncio.CancelledError
        return got

    async def __call__(self, scope, receive, send):
        path = scope.get("path", "")
        if scope["type"] != "http" or path not in self.routes:
            return await self.app(scope, receive, send)
        lim = self.limits
        if self._slots is None:
            self._slots = asyncio.Semaphore(lim.max_inflight)
        deadline = time.monotonic() + lim.request_timeout_s
        if self._slots.locked():
            wait = self.rate.expected_wait(self.waiting + 1)
            if self.waiting >= lim.max_queued or (wait is not None and wait > lim.queue_wait):
                self._shed(path, "overloaded")
                await self._hold(deadline)
                why = (f"max_queued {lim.max_queued}" if self.waiting >= lim.max_queued else
                       f"expected wait {wait:.1f} s > queue_wait_s {lim.queue_wait:g}")
                return await self._unavailable(
                    send, f"overloaded: {self.inflight} requests in flight and {self.waiting} waiting (max_inflight "
                    f"{lim.max_inflight}, {why}); retry after {lim.retry_after_s} s", "service overloaded")
        started = {"response": False}

        async def tracking_send(message):
            if message["type"] == "http.response.start":
                started["response"] = True
            await send(message)

        if not await self._acquire(deadline):
            self._shed(path, "deadline")
            return await self._unavailable(
                send, f"deadline: no slot within the server's {lim.request_timeout_s:g} s deadline "
                "(request_timeout_s) while the server is busy", "deadline exceeded")
        self.inflight += 1
        self._gauges()
        try:
            await _within(self.app(scope, receive, tracking_send), max(0.0, deadline - time.monotonic()))
        except (TimeoutError, asyncio.TimeoutError):
            self._shed(path, "deadline")
            log.warning("%s: cancelled at the %g s deadline", path, lim.request_timeout_s)
            if not started["response"]:
                await self._unavailable(
                    send, f"deadline: the request did not finish within the server's {lim.request_timeout_s:g} s "
                    "deadline (request_timeout_s); its work was cancelled", "deadline exceeded")
        finally:
            self.inflight -= 1
            self.rate.finished()
            self._slots.release()
            self._gauges()


class BodyLimitMiddleware:
    """413 for a request body over ``max_bytes`` (by Content-Length, or counted while it streams in)."""

    def __init__(self, app, max_bytes: int = MAX_BODY_BYTES):
        self.app = app
        self.max_bytes = max_bytes

    async def __call__(self, scope, receive, send):
        if scope["type"] != "http" or scope.get("method") in ("GET", "HEAD", "OPTIONS"):
            return await self.app(scope, receive, send)
        too_big = {"detail": f"request body exceeds {self.max_bytes} bytes", "message": "body: too large"}
        length = dict(scope.get("headers") or []).get(b"content-length")
        if length is not None:
            try:
                if int(length) > self.max_bytes:
                    return await _send_json(send, 413, too_big)
            except ValueError:
                return await _send_json(send, 400, {"detail": "invalid Content-Length header"})
        # Read the body up front (bounded), then replay it to the app.
        chunks, size = [], 0
        while True:
            message = await receive()
            if message["type"] != "http.request":
                return  # client went away
            chunk = message.get("body", b"")
            size += len(chunk)
            if size > self.max_bytes:
                return await _send_json(send, 413, too_big)
            chunks.append(chunk)
            if not message.get("more_body", False):
                break
        replay = [{"type": "http.request", "body": b"".join(chunks), "more_body": False}]

        async def replay_receive():
            return replay.pop() if replay else await receive()

        return await self.app(scope, replay_receive, send)


def _field_of(loc) -> str:
    parts = [str(p) for p in loc if p != "body"]
    return ".".join(parts) if parts else "body"


# ---- the app ------------------------------------------------------------------------------------------
def create_app(
    backend: Backend,
    token_sha256: str | None = None,
    title: str = "ray-distill search",
    allowed_hosts=None,
    limits: Limits | None = None,
) -> FastAPI:
    """The FastAPI app over ``backend``; with ``token_sha256``, routes but health/readiness need the token.
    With ``allowed_hosts`` (a list of names; ``*`` in it: any), routes but health/readiness answer only
    requests whose Host header names one of them (421 otherwise).

    The parts, in the order a request meets them: :func:`_add_middleware` (metrics, Host, token,
    admission, body limit), the routes (:func:`_add_work_routes`: search, embeddings, rerank;
    :func:`_add_probe_routes`: metrics, health, readiness), :func:`_add_error_handlers` (every error as
    ``{"detail", "message"}``)."""
    app = FastAPI(title=title, version="1", description=_description(token_sha256))
    limits = limits or Limits()
    app.state.backend = backend
    app.state.limits = limits
    app.state.metrics = metrics = Metrics()
    check_hosts = allowed_hosts is not None and "*" not in allowed_hosts
    errors = _error_responses(token=bool(token_sha256), hosts=check_hosts)
    _add_error_handlers(app, limits)
    _add_work_routes(app, limits, metrics, errors)
    _add_probe_routes(app, metrics, ReadinessCheck(app, limits, metrics))
    _add_middleware(app, limits, metrics, token_sha256, list(allowed_hosts) if check_hosts else None)
    return app


def _description(token_sha256: str | None) -> str:
    """The OpenAPI description: what the API does, its body limit, and the token when one is needed."""
    return (
        "Dense retrieval with the distilled student (FAISS), optional reranking by the teacher. "
        f"Request bodies are limited to {MAX_BODY_BYTES} bytes."
        + (" Every route but /healthz and /readyz needs `Authorization: Bearer <token>`."
           if token_sha256 else "")
    )


def _error_responses(token: bool, hosts: bool) -> dict:
    """The error answers the work routes document (401 with a token, 421 with a Host allowlist)."""
    errors = {code: {"model": ErrorResponse} for code in (400, 413, 422, 503)}
    if token:
        errors[401] = {"model": ErrorResponse}
    if hosts:
        errors[421] = {"model": ErrorResponse}
    return errors


class ReadinessCheck:
    """The backend's readiness, bounded by ``ready_timeout_s`` and reused for ``ready_cache_s`` (one check
    at a time: concurrent probes share it). Calling it returns ``(status code, body)`` and updates the
    readiness, replica and version metrics."""

    def __init__(self, app: FastAPI, limits: Limits, metrics: Metrics):
        self.app = app  # the backend is read from app.state at each check
        self.limits = limits
        self.metrics = metrics
        self.at = float("-inf")
        self.answer: tuple[int, dict] | None = None
        self._lock: asyncio.Lock | None = None

    def _fresh(self) -> bool:
        return time.monotonic() - self.at < self.limits.ready_cache_s

    async def __call__(self) -> tuple[int, dict]:
        if self._fresh():
            return self.answer
        if self._lock is None:
            self._lock = asyncio.Lock()
        async with self._lock:
            if self._fresh():
                return self.answer
            answer = await self._ask()
            self.metrics.readiness(answer[0] == 200, answer[1].get("replicas"))
            self.at, self.answer = time.monotonic(), answer
            return answer

    async def _ask(self) -> tuple[int, dict]:
        limits = self.limits
        try:
            info = await asyncio.wait_for(self.app.state.backend.ready(), limits.ready_timeout_s)
            answer = (200, {"status": "ready", "version": info.get("version"),
                            "reranker": info.get("reranker"), "replicas": info.get("replicas")})
            self.metrics.version(info.get("version"))
            return answer
        except asyncio.TimeoutError:
            return (503, {"status": "not ready", "reason": f"readiness check: no answer within "
                          f"{limits.ready_timeout_s:g} s", "replicas": None})
        except Exception as err:  # noqa: BLE001 - any failure means not ready
            return (503, {"status": "not ready", "reason": f"{type(err).__name__}: {err}"[:500],
                          "replicas": getattr(err, "replicas", None)})


def _add_error_handlers(app: FastAPI, limits: Limits) -> None:
    """Every error answer as ``{"detail", "message"}``: validation (422 naming the fields), HTTPException
    (its code and headers), an unavailable backend (503 with ``Retry-After``)."""

    @app.exception_handler(RequestValidationError)
    async def _invalid(request: Request, exc: RequestValidationError):
        errors = [
            {"field": _field_of(e.get("loc", ())), "msg": e.get("msg", ""), "type": e.get("type", "")}
            for e in exc.errors()
        ]
        message = "; ".join(f"{e['field']}: {e['msg']}" for e in errors) or "invalid request"
        return JSONResponse({"detail": errors, "message": message}, status_code=422)

    @app.exception_handler(HTTPException)
    async def _http(request: Request, exc: HTTPException):
        return JSONResponse(
            {"detail": exc.detail, "message": str(exc.detail)},
            status_code=exc.status_code,
            headers=getattr(exc, "headers", None),
        )

    @app.exception_handler(BackendUnavailable)
    async def _unavailable(request: Request, exc: BackendUnavailable):
        return JSONResponse(
            {"detail": str(exc), "message": "service unavailable"},
            status_code=503,
            headers={"Retry-After": str(limits.retry_after_s)},
        )


def _add_work_routes(app: FastAPI, limits: Limits, metrics: Metrics, errors: dict) -> None:
    """``/search``, ``/v1/embeddings`` and ``/rerank``: the routes that do model work (and are admitted)."""

    @app.post("/search", response_model=SearchResponse, responses=errors, summary="Search the index")
    async def search(req: SearchRequest) -> dict:
        metrics.batch.labels("/search").observe(len(req.queries()))
        out = await run_search(app.state.backend, req, limits.max_rerank_pairs)
        metrics.version(out["version"])
        return out

    @app.post("/v1/embeddings", response_model=EmbeddingsResponse,
              responses={**errors, 404: {"model": ErrorResponse}},
              summary="The student's embeddings (OpenAI's embeddings API)")
    async def embeddings(req: EmbeddingsRequest) -> dict:
        metrics.batch.labels("/v1/embeddings").observe(len(req.texts()))
        out = await run_embeddings(app.state.backend, req)
        metrics.version(out.pop("_version", None))
        return out

    @app.post("/rerank", response_model=Union[list[RerankHit], CohereRerankResponse], responses=errors,
              response_model_exclude_none=True,
              summary="The teacher's scores for texts (TEI's rerank API; Cohere's with documents)")
    async def rerank(req: RerankRequest):
        metrics.batch.labels("/rerank").observe(len(req.items()))
        return await run_rerank(app.state.backend, req, limits.max_rerank_pairs)


def _add_probe_routes(app: FastAPI, metrics: Metrics, check_ready: ReadinessCheck) -> None:
    """``/metrics``, ``/healthz`` and ``/readyz``: answered without admission."""

    @app.get("/metrics", response_class=Response, summary="Prometheus metrics (text format)",
             responses={200: {"content": {"text/plain": {}}}})
    async def prometheus_metrics() -> Response:
        from prometheus_client import CONTENT_TYPE_LATEST

        await check_ready()  # replica counts and readiness (cached)
        return Response(metrics.render(), media_type=CONTENT_TYPE_LATEST)

    @app.get("/healthz", response_model=Health,
             summary="Liveness: 200 while the process is up (never waits for model work)")
    async def healthz() -> dict:
        return {"status": "ok"}

    @app.get(
        "/readyz",
        response_model=Readiness,
        response_model_exclude_none=True,
        responses={503: {"model": Readiness}},
        summary="Readiness: 200 while the retriever answers and the application is healthy",
    )
    async def readyz():
        code, body = await check_ready()
        body = {k: v for k, v in body.items() if v is not None}
        return body if code == 200 else JSONResponse(body, status_code=code)


def _add_middleware(app: FastAPI, limits: Limits, metrics: Metrics, token_sha256: str | None,
                    allowed_hosts: list[str] | None) -> None:
    """The middleware stack; a request meets it outermost first: metrics, Host allowlist (when
    ``allowed_hosts``), bearer token (when ``token_sha256``), admission, body limit."""
    # Starlette runs the last-added middleware outermost: the token check comes before the body is read.
    app.add_middleware(BodyLimitMiddleware, max_bytes=MAX_BODY_BYTES)
    # Inside the token and Host checks (a refused request takes no slot), outside the body read (a slow body
    # counts against the deadline).
    app.add_middleware(AdmissionMiddleware, limits=limits, metrics=metrics)
    if token_sha256:
        app.add_middleware(BearerTokenMiddleware, token_sha256=token_sha256)
    if allowed_hosts is not None:
        app.add_middleware(HostAllowlistMiddleware, allowed_hosts=allowed_hosts)
    app.add_middleware(MetricsMiddleware, metrics=metrics)  # outermost: refusals are counted too
