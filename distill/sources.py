"""Inputs beside BEIR JSONL: parquet files, Hugging Face ``datasets``, ir_datasets ids; imported teacher scores.

``data.format`` chooses the reader (``beir`` is distill.data.read_beir):

- ``parquet``: in ``data.dir``, ``data.corpus`` (``corpus.parquet`` unless it names a .parquet file; columns
  ``_id``, ``title``, ``text``), ``data.queries`` (``queries.parquet``; ``_id``, ``text``) and
  ``qrels/<split>.parquet`` (``query-id``, ``corpus-id``, ``score``).
- ``hf``: ``data.hf``, a directory written by ``DatasetDict.save_to_disk`` or a hub id for ``load_dataset``
  (the ``datasets`` package is optional, imported only here): splits ``corpus``, ``queries`` and one per
  qrels split (``train``, ``test``...), with the parquet columns.
- ``ir_datasets``: ``data.ir_datasets``, an ir_datasets id (``beir/scifact``): documents and queries from
  it, the qrels of split ``s`` from ``<id>/<s>`` (or the id itself when that does not exist); the
  ``ir_datasets`` package is optional.

Every row goes through the BEIR reader's checks (distill.data.add_record / add_qrel): loaded, or written
to the rejects file with its reason, and a file over ``max_reject_share`` stops the run.

``scoring.import_path`` (:func:`import_scores`) makes the score stage read teacher scores computed elsewhere
instead of running the teacher: FlagEmbedding-style JSONL (``{"query", "pos", "neg", "pos_scores",
"neg_scores"}``, texts matched to the loaded queries and documents) or parquet (``qid``, ``docid``, ``score``).
"""

from __future__ import annotations

import json
import math
from functools import partial
from pathlib import Path

from distill.data import BeirData, DataError, Rejects, _check_share, add_qrel, add_record, json_rows

QREL_COLUMNS = (("query-id", "query_id", "qid"), ("corpus-id", "corpus_id", "docid", "doc_id"), ("score", "relevance"))


def _raw(row) -> str:
    return json.dumps(row, default=str, ensure_ascii=False)


def _pick(row: dict, names: tuple[str, ...]):
    for n in names:
        if n in row:
            return row[n]
    return None


def parquet_paths(c) -> dict[str, Path]:
    """role -> path for ``data.format: parquet`` (``corpus``, ``queries``, ``qrels/<split>``)."""
    d = Path(c.dir)
    out = {"corpus": d / (c.corpus if c.corpus.endswith(".parquet") else "corpus.parquet"),
           "queries": d / (c.queries if c.queries.endswith(".parquet") else "queries.parquet")}
    for split in dict.fromkeys((c.train_split, c.test_split)):
        out[f"qrels/{split}"] = d / "qrels" / f"{split}.parquet"
    return out


def input_files(c) -> dict[str, list[Path]]:
    """The files a non-BEIR source reads, by role (distill.manifest.input_files): parquet files, the files of
    a saved Hugging Face dataset's splits; none for a hub id or an ir_datasets id (the id is in the config)."""
    if c.format == "parquet":
        return {role: [p] for role, p in parquet_paths(c).items()}
    if c.format == "hf" and c.hf and Path(c.hf).is_dir():
        root = Path(c.hf)
        roles = {"corpus": "corpus", "queries": "queries",
                 **{f"qrels/{s}": s for s in dict.fromkeys((c.train_split, c.test_split))}}
        return {role: sorted(p for p in (root / split).rglob("*") if p.is_file()) for role, split in roles.items()}
    return {}


def _parquet_rows(path: Path):
    import pyarrow.parquet as pq

    if not path.exists():
        raise DataError(f"input file not found: {path}")
    n = 0
    for batch in pq.ParquetFile(path).iter_batches(batch_size=65_536):
        for row in batch.to_pylist():
            n += 1
            yield n, row


def _hf_splits(src: str):
    try:
        import datasets
    except ImportError:
        raise DataError("data.format hf needs the `datasets` package (pip install datasets); it is optional, "
                        "not part of ray-distill's install") from None
    dd = datasets.load_from_disk(src) if Path(src).exists() else datasets.load_dataset(src)
    if not isinstance(dd, datasets.DatasetDict):
        raise DataError(f"data.hf {src}: a DatasetDict with splits corpus, queries and the qrels splits is needed, "
                        f"not a {type(dd).__name__}")

    def rows(split: str):
        if split not in dd:
            raise DataError(f"data.hf {src}: no split {split!r} (it has {', '.join(dd)})")
        for n, row in enumerate(dd[split], 1):
            yield n, row
    return rows


def _ir_datasets_splits(dataset_id: str):
    try:
        import ir_datasets
    except ImportError:
        raise DataError("data.format ir_datasets needs the `ir_datasets` package (pip install ir_datasets); it "
                        "is optional, not part of ray-distill's install") from None
    base = ir_datasets.load(dataset_id)

    def for_split(split: str):
        try:
            return ir_datasets.load(f"{dataset_id}/{split}")
        except KeyError:
            return base

    def rows(role: str):
        if role == "corpus":
            for n, d in enumerate(base.docs_iter(), 1):
                yield n, {"_id": d.doc_id, "title": getattr(d, "title", "") or "", "text": getattr(d, "text", None)}
        elif role == "queries":
            seen = set()
            sources = [base] if base.has_queries() else []
            n = 0
            for ds in sources + [for_split(s) for s in rows.splits if for_split(s) is not base]:
                if not ds.has_queries():
                    continue
                for q in ds.queries_iter():
                    if q.query_id in seen:  # a query listed by the base and by its split is one query
                        continue
                    seen.add(q.query_id)
                    n += 1
                    yield n, {"_id": q.query_id, "text": getattr(q, "text", None)}
        else:
            for n, r in enumerate(for_split(role).qrels_iter(), 1):
                yield n, {"query-id": r.query_id, "corpus-id": r.doc_id, "score": r.relevance}
    rows.splits = ()
    return rows


def read_source(c, splits: tuple[str, ...], rejects_path: str | Path | None = None) -> BeirData:
    """Read ``data`` as ``c.format`` says (parquet | hf | ir_datasets) into the BEIR reader's BeirData, with
    the same row checks, counted rejects and ``max_reject_share``; rejects go to ``rejects_path``."""
    if c.format == "parquet":
        paths = parquet_paths(c)
        rows, names = (lambda role: _parquet_rows(paths[role])), {r: p.name for r, p in paths.items()}
        names = {r: (f"qrels/{paths[r].name}" if r.startswith("qrels/") else n) for r, n in names.items()}
    elif c.format == "hf":
        if not c.hf:
            raise DataError("data.format hf needs data.hf: a saved DatasetDict directory or a hub id")
        split_rows = _hf_splits(c.hf)
        rows = lambda role: split_rows(role.removeprefix("qrels/"))  # noqa: E731
        names = {r: f"hf:{r}" for r in ("corpus", "queries", *(f"qrels/{s}" for s in splits))}
    elif c.format == "ir_datasets":
        if not c.ir_datasets:
            raise DataError("data.format ir_datasets needs data.ir_datasets: an ir_datasets id")
        ird = _ir_datasets_splits(c.ir_datasets)
        ird.splits = splits
        rows = lambda role: ird(role.removeprefix("qrels/") if role.startswith("qrels/") else role)  # noqa: E731
        names = {r: f"ir_datasets:{r}" for r in ("corpus", "queries", *(f"qrels/{s}" for s in splits))}
    else:
        raise DataError(f"read_source: data.format {c.format!r} is not a source this reader handles")
    rejects = Rejects()
    counts: dict[str, int] = {}
    try:
        docs: dict = {}
        for n, row in rows("corpus"):
            add_record(docs, row, rejects, names["corpus"], n, _raw(row), need_title=True)
        counts["corpus"] = len(docs)
        _check_share(names["corpus"], len(docs), rejects.count_for(names["corpus"]), c.max_reject_share)
        qs: dict = {}
        for n, row in rows("queries"):
            add_record(qs, row, rejects, names["queries"], n, _raw(row), need_title=False)
        counts["queries"] = len(qs)
        _check_share(names["queries"], len(qs), rejects.count_for(names["queries"]), c.max_reject_share)
        qrels = {}
        for split in splits:
            role, out = f"qrels/{split}", {}
            for n, row in rows(role):
                if not isinstance(row, dict):
                    rejects.add(names[role], n, "not_an_object", _raw(row))
                    continue
                qid, docid = _pick(row, QREL_COLUMNS[0]), _pick(row, QREL_COLUMNS[1])
                if qid is None or docid is None:
                    rejects.add(names[role], n, "bad_columns", _raw(row))
                    continue
                add_qrel(out, str(qid).strip(), str(docid).strip(), _pick(row, QREL_COLUMNS[2]), docs, qs, rejects,
                         names[role], n, _raw(row))
            qrels[split] = out
            pairs = sum(len(v) for v in out.values())
            counts[role] = pairs
            _check_share(names[role], pairs, rejects.count_for(names[role]), c.max_reject_share)
    finally:
        if rejects_path is not None:
            rejects.write(rejects_path)
    return BeirData(corpus=docs, queries=qs, qrels=qrels, rejects=rejects, row_counts=counts)


# ---- imported teacher scores -----------------------------------------------------------------------------
def _imported_pairs(path: Path, data, rejects: Rejects):
    """Yield (qid, docid, score) from the import file; rows that cannot be placed go to ``rejects``."""
    name = path.name
    if path.name.endswith(".parquet"):
        for n, row in _parquet_rows(path):
            qid, docid = _pick(row, ("qid",) + QREL_COLUMNS[0]), _pick(row, ("docid",) + QREL_COLUMNS[1])
            score = _pick(row, ("score", "teacher_score"))
            if qid is None or docid is None:
                rejects.add(name, n, "bad_columns", _raw(row))
                continue
            yield name, n, _raw(row), str(qid).strip(), str(docid).strip(), score
        return
    # FlagEmbedding-style JSONL: texts, matched to the loaded queries and documents (with or without title)
    by_query: dict[str, list[str]] = {}
    for qid, text in data.queries.items():
        by_query.setdefault(text.strip(), []).append(qid)
    by_doc: dict[str, list[str]] = {}
    for docid, (title, text) in data.corpus.items():
        for key in dict.fromkeys((data.doc_text(docid).strip(), text.strip())):
            by_doc.setdefault(key, []).append(docid)
    for n, line, row in json_rows(path, partial(rejects.add, name)):
        if not isinstance(row, dict):
            rejects.add(name, n, "not_an_object", line)
            continue
        docs = list(row.get("pos") or []) + list(row.get("neg") or [])
        scores = list(row.get("pos_scores") or []) + list(row.get("neg_scores") or [])
        if not isinstance(row.get("query"), str) or len(docs) != len(scores) or not docs:
            rejects.add(name, n, "bad_columns", line)
            continue
        qids = by_query.get(row["query"].strip())
        if not qids:
            rejects.add(name, n, "unknown_query", line)
            continue
        for doc, score in zip(docs, scores):
            docids = by_doc.get(doc.strip()) if isinstance(doc, str) else None
            if not docids:
                rejects.add(name, n, "unknown_doc", json.dumps({"query": row["query"], "doc": doc})[:200])
                continue
            for qid in qids:  # equal texts under several ids: each takes the score
                for docid in docids:
                    yield name, n, line, qid, docid, score


def import_scores(path: str | Path, cands, data, max_reject_share: float, missing: str = "error",
                  rejects_path: str | Path | None = None):
    """The mined candidates with ``teacher_score`` read from ``path`` instead of a teacher's forward passes.
    Row checks: a score must be a finite number, its query and document known (else rejected:
    ``unknown_query``, ``unknown_doc``), each pair scored once (``duplicate_pair``); a file over
    ``max_reject_share`` rejected stops the stage. Every candidate must be scored exactly once: a candidate
    without a score is an error (``missing: error``) or dropped and counted (``missing: drop``). Pairs that are
    not candidates are counted (``not_candidates``), not used. Returns (scored candidates, counts)."""
    import numpy as np

    path = Path(path)
    if not path.exists():
        raise DataError(f"scoring.import_path: {path} not found")
    rejects = Rejects()
    got: dict[tuple[str, str], float] = {}
    good = 0
    name = path.name
    try:
        for name, n, raw, qid, docid, score in _imported_pairs(path, data, rejects):
            try:
                s = float(score)
            except (TypeError, ValueError):
                s = math.nan
            if not math.isfinite(s):
                rejects.add(name, n, "bad_score", raw)
            elif qid not in data.queries:
                rejects.add(name, n, "unknown_query", raw)
            elif docid not in data.corpus:
                rejects.add(name, n, "unknown_doc", raw)
            elif (qid, docid) in got:
                rejects.add(name, n, "duplicate_pair", raw)
            else:
                got[(qid, docid)] = s
                good += 1
        _check_share(name, good, len(rejects.rows), max_reject_share)
    finally:
        if rejects_path is not None:
            rejects.write(rejects_path)
    keys = list(zip(cands["qid"].astype(str), cands["docid"].astype(str)))
    have = np.array([k in got for k in keys], bool)
    if not have.all() and missing == "error":
        first = [k for k, h in zip(keys, have) if not h][:3]
        raise DataError(f"scoring.import_path {path}: {int((~have).sum())} of {len(keys)} candidates have no "
                        f"imported score (first: {first}); import scores for the mined candidates, or set "
                        "scoring.import_missing: drop")
    out = cands[have].copy()
    out["teacher_score"] = np.array([got[k] for k, h in zip(keys, have) if h], np.float32)
    counts = {"imported_pairs": good, "import_rejects": len(rejects.rows), "dropped_unscored": int((~have).sum()),
              "not_candidates": good - int(have.sum())}
    return out.reset_index(drop=True), counts, rejects.counts()
