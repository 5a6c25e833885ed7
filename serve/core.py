"""What serving needs from a run directory, and the search itself (no Ray, no HTTP).

A run directory (``runs/<name>/``) gives serving three things:

- ``student/``: the dual encoder that embeds queries (:class:`distill.models.DualEncoder`);
- ``index/``: the FAISS index, its docids and ``meta.json`` (whose ``version`` every response reports),
  plus ``docs.parquet`` (docid, title, text) when corpus text was indexed; without it results carry no
  title or snippet and reranking is unavailable;
- the teacher for reranking: ``teacher_model/`` when the pipeline fine-tuned one, otherwise the model the
  user names (``--teacher``; never a name or ``trust_remote_code`` read from ``manifest.json``); an ensemble
  teacher's members and weights come from ``teacher/ensemble.json``.

An iterative run (``rounds: N``) is served from its final round: ``student/`` and ``index/`` under
``round-<r>/`` when ``manifest.json``'s ``final_round`` is r > 1.

Deployed, serving reads a snapshot (serve.snapshot), not the run directory: the same layout as a
one-round run, every file re-hashed against ``snapshot.json`` before it is loaded (:meth:`RunArtifacts.load`),
and ``version`` is then the snapshot's digest (the index's own config version stays ``index_version``).
A run directory loaded directly (tests, tools) is read unverified and reports the index's version.

Everything is read once, at load time, into memory: a process serves one snapshot even if the run
directory is rewritten underneath it.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from distill.data import doc_text  # the text every model reads (re-exported: serve.core.doc_text)
from serve.snapshot import ServeSetupError, final_round_dir, is_snapshot, require_servable  # noqa: F401
from serve.snapshot import verify as verify_snapshot

os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

SNIPPET_CHARS = 240


def snippet(text: str | None, limit: int = SNIPPET_CHARS) -> str | None:
    """The first ``limit`` characters of ``text``, cut at a word boundary, with an ellipsis if cut."""
    if text is None:
        return None
    text = " ".join(text.split())
    if len(text) <= limit:
        return text
    cut = text[:limit]
    space = cut.rfind(" ")
    if space > limit // 2:
        cut = cut[:space]
    return cut.rstrip(" ,.;:") + "..."


@dataclass
class TeacherSpec:
    path: str
    kind: str = "cross-encoder"
    max_length: int = 256
    trust_remote_code: bool = False
    attention: dict | None = None  # a reader teacher: how its attention becomes scores (distill.reader)
    answer_max_length: int = 32
    ensemble: dict | None = None  # an ensemble teacher: the score stage's ensemble.json (distill.ensemble)


# the snapshot files each replica re-hashes before loading (serve.snapshot.verify)
RETRIEVAL_FILES = ("manifest.json", "student", "index")
RERANKING_FILES = ("manifest.json", "teacher_model", "teacher", "index/docs.parquet")


@dataclass
class RunArtifacts:
    """Paths and metadata of a run directory or a serving snapshot, checked for what serving needs."""

    run_dir: Path
    student: Path
    index: Path
    docs: Path | None
    index_meta: dict
    manifest: dict = field(default_factory=dict)
    snapshot: dict | None = None  # snapshot.json, when loaded from a snapshot

    @classmethod
    def load(cls, run_dir: str | Path, verify: tuple[str, ...] | None = None) -> "RunArtifacts":
        """A run directory (its final round), or a snapshot (serve.snapshot) whose files under the
        top-level names ``verify`` (None: all; (): none, just made) are re-hashed first."""
        run_dir = Path(run_dir).expanduser().resolve()
        if not run_dir.is_dir():
            raise ServeSetupError(f"run directory {run_dir} does not exist")
        record = verify_snapshot(run_dir, verify) if is_snapshot(run_dir) else None
        last = final_round_dir(run_dir)  # an iterative run (rounds: N) serves its final round
        student, index = last / "student", last / "index"
        require_servable(run_dir, student, index)
        try:
            meta = json.loads((index / "meta.json").read_text())
        except json.JSONDecodeError as err:
            raise ServeSetupError(f"{index / 'meta.json'} is not valid JSON: {err}") from None
        manifest = {}
        if (run_dir / "manifest.json").exists():
            try:
                manifest = json.loads((run_dir / "manifest.json").read_text())
            except json.JSONDecodeError as err:
                raise ServeSetupError(f"{run_dir / 'manifest.json'} is not valid JSON: {err}") from None
        docs = index / "docs.parquet"
        return cls(run_dir, student, index, docs if docs.exists() else None, meta, manifest, record)

    @property
    def name(self) -> str:
        """The run's name (the manifest's ``config.name``, else the directory's name): the model name
        ``POST /v1/embeddings`` reports for the student (``"student"`` is accepted too)."""
        name = (self.manifest.get("config") or {}).get("name")
        return str(name) if name else self.run_dir.name

    @property
    def version(self) -> str:
        """The version every response reports: a snapshot's digest (first 16 hex digits), else the
        index's :attr:`index_version`."""
        if self.snapshot is not None:
            return str(self.snapshot["digest"])[:16]
        return self.index_version

    @property
    def index_version(self) -> str:
        """``meta.json``'s ``version`` (a digest of the config that built the index, not of its content)."""
        v = self.index_meta.get("version")
        return str(v) if v is not None else f"unversioned:{self.run_dir.name}"

    def teacher(self, model: str | None = None, trust_remote_code: bool = False) -> TeacherSpec:
        """Where the reranker loads the teacher from, and how. What is loaded is ``model`` (a name the
        user passed: ``python -m serve --teacher``, or ``args.teacher`` of a Serve config) or else this
        run's own ``teacher_model/`` directory; ``trust_remote_code`` is the caller's flag. A model name
        (``python:<module>`` imports a module) and ``trust_remote_code`` recorded in manifest.json are never
        used: whoever can write a run directory cannot make serving run code. The teacher's kind and
        lengths still come from the manifest."""
        cfg = (self.manifest.get("config") or {}).get("teacher") or {}
        kind = cfg.get("kind", "cross-encoder")
        max_length = int(cfg.get("max_length", 256))
        if kind == "ensemble":
            if model:
                raise ServeSetupError("an ensemble teacher's members come from teacher/ensemble.json: "
                                      "--teacher does not apply")
            return self.ensemble_teacher()
        finetuned = self.run_dir / "teacher_model"
        roots = [self.run_dir.resolve()]
        if self.run_dir.parent.name == "sweep":  # a sweep run's teacher_model links to its base run's
            roots.append(self.run_dir.parent.parent.resolve())
        if model:
            path = model
        elif (finetuned / "config.json").exists() and any(finetuned.resolve().is_relative_to(r) for r in roots):
            path = str(finetuned)
        else:
            named = ((self.manifest.get("stages") or {}).get("teacher") or {}).get("model") or cfg.get("model")
            raise ServeSetupError(
                f"{self.run_dir}: no teacher_model/ inside the run directory to rerank with"
                + (f"; manifest.json names {named!r}, but a model name is taken only from the command line: "
                   f"pass --teacher {named} (a Serve config: args.teacher)" if named else
                   "; pass the teacher with --teacher NAME (a Serve config: args.teacher)")
            )
        return TeacherSpec(str(path), kind, max_length, bool(trust_remote_code), cfg.get("attention"),
                           int(cfg.get("answer_max_length", 32)))

    def ensemble_teacher(self) -> TeacherSpec:
        """An ensemble teacher: its members and fitted weights from ``teacher/ensemble.json``; a member
        fine-tuned by the pipeline loads from this run's ``teacher_model/``. Remote code is never trusted."""
        from distill.ensemble import ENSEMBLE_FILE

        path = self.run_dir / "teacher" / ENSEMBLE_FILE
        try:
            record = json.loads(path.read_text())
        except (OSError, json.JSONDecodeError) as err:
            raise ServeSetupError(f"{self.run_dir}: ensemble teacher without a readable {path}: {err}") from None
        members = []
        for m in record.get("members", []):
            m = {**m, "trust_remote_code": False}
            if m.get("model") == "finetuned":
                m["path"] = str(self.run_dir / "teacher_model")
            if m["kind"] != "bm25" and not (m.get("path") and Path(m["path"]).is_dir()):
                raise ServeSetupError(f"{self.run_dir}: ensemble member {m.get('name')!r} has no model "
                                      f"directory ({m.get('path')})")
            members.append(m)
        return TeacherSpec(str(path), "ensemble", ensemble={**record, "members": members})

def load_docs(path: Path | None) -> dict[str, tuple[str, str]] | None:
    if path is None:
        return None
    import pyarrow.parquet as pq

    table = pq.read_table(path)
    cols = set(table.column_names)
    if "docid" not in cols:
        raise ServeSetupError(f"{path} lacks a docid column")
    n = table.num_rows
    ids = table.column("docid").to_pylist()
    titles = table.column("title").to_pylist() if "title" in cols else [""] * n
    texts = table.column("text").to_pylist() if "text" in cols else [""] * n
    return {str(d): (t or "", x or "") for d, t, x in zip(ids, titles, texts)}


def set_threads(threads: int | None) -> None:
    if threads:
        import torch

        torch.set_num_threads(int(threads))
        try:
            torch.set_num_interop_threads(1)
        except RuntimeError:  # only settable before the first parallel op
            pass


class Retrieval:
    """Student query encoder + FAISS index (+ doc titles/texts): top-k candidates for queries."""

    def __init__(
        self,
        run_dir: str | Path,
        nprobe: int | None = None,
        ef_search: int | None = None,
        threads: int | None = None,
        encode_batch_size: int = 64,
        precision: str = "auto",
    ):
        """``precision`` (distill.precision): the query encoder's, auto: bf16 autocast where this machine
        has native bf16 and it measured faster, else fp32 (the resolved choice is ``self.precision``)."""
        from distill.index import load_index
        from distill.models import DualEncoder
        from distill.precision import resolve

        set_threads(threads)
        self.artifacts = art = RunArtifacts.load(run_dir, RETRIEVAL_FILES)
        self.encoder = DualEncoder.load(art.student)
        self.encoder.eval()
        self.encode_batch_size = encode_batch_size
        self.precision = resolve(precision, self.encoder.device)
        self.index = load_index(
            art.index,
            nprobe=nprobe or art.index_meta.get("nprobe"),
            ef_search=ef_search or art.index_meta.get("ef_search"),
        )
        self.version = art.version
        self.docs = load_docs(art.docs)

    @property
    def max_length(self) -> int:
        return int(self.encoder.max_length)

    @property
    def has_text(self) -> bool:
        return self.docs is not None

    def token_counts(self, queries: list[str]) -> list[int]:
        ids = self.encoder.tokenizer(list(queries), add_special_tokens=True, truncation=False, verbose=False)[
            "input_ids"
        ]
        return [len(x) for x in ids]

    def encode(self, queries: list[str]) -> tuple[np.ndarray, list[bool]]:
        """Query embeddings (as :meth:`DualEncoder.encode` gives them) and, per query, whether it was
        longer than the encoder's ``max_length`` tokens (and so truncated)."""
        emb = self.encoder.encode(list(queries), self.encode_batch_size, self.precision)
        truncated = [n > self.max_length for n in self.token_counts(queries)]
        return emb, truncated

    def embed(self, texts: list[str]) -> dict:
        """The student's query embeddings of ``texts`` (as :meth:`encode`) for ``POST /v1/embeddings``:
        ``{"model": run name, "version", "embeddings": [[float]], "tokens": [tokens read per text (capped
        at max_length)]}``."""
        emb, _ = self.encode(texts)
        tokens = [min(n, self.max_length) for n in self.token_counts(texts)]
        return {"model": self.artifacts.name, "version": self.version, "embeddings": emb.tolist(),
                "tokens": tokens}

    def search(self, queries: list[str], depth: int) -> tuple[list[list[str]], list[list[float]], list[bool]]:
        """Top-``depth`` docids and scores per query, and the truncation flags."""
        emb, truncated = self.encode(queries)
        ids, scores = self.index.search(emb, depth)
        return ids, [[float(s) for s in row[: len(r)]] for row, r in zip(scores, ids)], truncated

    def hits(self, docids: list[str], scores: list[float], with_text: bool = False) -> list[dict]:
        """Result dicts (docid, score, title, snippet; plus the teacher's input text with ``with_text``)."""
        out = []
        for d, s in zip(docids, scores):
            doc = self.docs.get(d) if self.docs is not None else None
            hit = {
                "docid": d,
                "score": float(s),
                "title": doc[0] if doc else None,
                "snippet": snippet(doc[1]) if doc else None,
            }
            if with_text:
                hit["text"] = doc_text(*doc) if doc else ""
            out.append(hit)
        return out


class Reranking:
    """The teacher as a reranker: one score per (query, document text) pair."""

    def __init__(self, spec: TeacherSpec, threads: int | None = None, batch_size: int = 32,
                 docs_path: Path | None = None, precision: str = "auto"):
        """``docs_path``: the indexed corpus text (``index/docs.parquet``), an ensemble's BM25 statistics;
        ``precision`` (distill.precision): the teacher's forward, resolved on this machine (``self.precision``;
        a reader scores by attention, in fp32)."""
        from distill.models import CrossEncoder, DualEncoder
        from distill.precision import resolve

        set_threads(threads)
        self.spec = spec
        self.batch_size = batch_size
        self.precision = "fp32" if spec.kind == "reader" else resolve(precision, "cpu")
        if spec.kind == "ensemble":
            self.model = EnsembleScorer(spec.ensemble, docs_path, batch_size, self.precision)
            return
        if spec.kind == "cross-encoder":
            self.model = CrossEncoder(spec.path, spec.max_length, spec.trust_remote_code)
        elif spec.kind == "reader":
            from distill.reader import FiDReader

            self.model = FiDReader(spec.path, spec.max_length, spec.answer_max_length, spec.trust_remote_code)
        else:
            self.model = DualEncoder(
                spec.path, max_length=spec.max_length, trust_remote_code=spec.trust_remote_code
            )
        self.model.eval()

    @classmethod
    def from_run(cls, run_dir: str | Path, teacher: str | None = None, trust_remote_code: bool = False,
                 **kwargs) -> "Reranking":
        """The run's teacher (:meth:`RunArtifacts.teacher`: ``teacher`` and ``trust_remote_code`` are the
        caller's, never the manifest's)."""
        art = RunArtifacts.load(run_dir, RERANKING_FILES)
        return cls(art.teacher(teacher, trust_remote_code), docs_path=art.docs, **kwargs)

    def score(self, queries: list[str], docs: list[str]) -> np.ndarray:
        if not queries:
            return np.zeros(0, dtype=np.float32)
        if self.spec.kind == "ensemble":
            return self.model.score(list(queries), list(docs))
        if self.spec.kind == "cross-encoder":
            return self.model.score(list(queries), list(docs), batch_size=self.batch_size, precision=self.precision)
        if self.spec.kind == "reader":  # each query's documents are read together
            from distill.reader import score_grouped

            return score_grouped(self.model, list(queries), list(docs), self.spec.attention, self.batch_size)
        uq = list(dict.fromkeys(queries))
        qe = dict(zip(uq, self.model.encode(uq, self.batch_size, self.precision)))
        de = self.model.encode(list(docs), self.batch_size, self.precision)
        return np.array([float(qe[q] @ d) for q, d in zip(queries, de)], dtype=np.float32)


class EnsembleScorer:
    """An ensemble teacher in one process: each neural member scores the (query, text) pairs, BM25 members
    score them from the indexed corpus's statistics (0 for a text not in the corpus), and the members'
    scores are normalised over each query's pairs (pairs with the same query text form one group) and
    weighted as the score stage fitted them (distill.ensemble)."""

    def __init__(self, record: dict, docs_path: Path | None, batch_size: int = 32, precision: str = "fp32"):
        import torch

        from distill.ensemble import BM25PairScorer
        from distill.stages.score import TeacherActor

        self.record = record
        neural = [m for m in record["members"] if m["kind"] != "bm25"]
        self.actor = TeacherActor("", "ensemble", 256, torch.get_num_threads(), batch_size,
                                  members=neural, precision=precision) if neural else None
        self.bm25 = None
        if any(m["kind"] == "bm25" for m in record["members"]):
            docs = load_docs(docs_path)
            if not docs:
                raise ServeSetupError("an ensemble reranker with a BM25 member needs index/docs.parquet")
            texts = [doc_text(t, x) for t, x in docs.values()]
            self.bm25 = BM25PairScorer(texts, texts)

    def eval(self) -> "EnsembleScorer":
        return self

    def score(self, queries: list[str], docs: list[str]) -> np.ndarray:
        import pandas as pd

        from distill.ensemble import fused_scores, member_column

        frame = pd.DataFrame({"qid": queries, "docid": np.arange(len(docs)).astype(str)})
        if self.actor is not None:
            res = self.actor({"qid": np.asarray(queries, dtype=object), "docid": frame["docid"].to_numpy(),
                              "query": queries, "doc": docs})
            for k, v in res.items():
                if k.startswith("teacher_member_"):
                    frame[k] = np.asarray(v, np.float32)
        if self.bm25 is not None:
            known = [d in self.bm25.pos for d in docs]
            bm = self.bm25.score([q for q, k in zip(queries, known) if k], [d for d, k in zip(docs, known) if k])
            full = np.zeros(len(docs), np.float32)
            full[np.flatnonzero(known)] = bm
            for m in self.record["members"]:
                if m["kind"] == "bm25":
                    frame[member_column(m["name"])] = full
        return fused_scores(frame, self.record)


def rerank_order(scores) -> list[int]:
    """Positions sorted by descending score; ties keep first-stage order."""
    return [int(i) for i in np.argsort(-np.asarray(scores, dtype=np.float64), kind="stable")]
