"""BEIR-layout reader with counted rejects.

Layout: ``corpus.jsonl`` (``_id``, ``title``, ``text``), ``queries.jsonl`` (``_id``, ``text``),
``qrels/<split>.tsv`` (``query-id``, ``corpus-id``, ``score``, header line optional); ``.jsonl.gz`` too.

Contract: every input row is either loaded or written to the rejects file with its reason; nothing is
dropped silently. A file whose rejected share passes ``max_reject_share`` (or that has no good row)
stops the run with a :class:`DataError` naming the file and the counts.
"""

from __future__ import annotations

import codecs
import gzip
import json
import zlib
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass, field
from functools import partial
from pathlib import Path


def doc_text(title: str | None, text: str | None) -> str:
    """The text of a document as every model reads it (teacher, student, BM25; serving too): the title, a
    full stop and the text, or the text alone when there is no title."""
    title, text = title or "", text or ""
    return f"{title}. {text}" if title else text


class DataError(ValueError):
    """Input data that cannot be used as configured."""


@dataclass
class Rejects:
    """Rejected rows: (file, line number, reason, raw text prefix)."""

    rows: list[tuple[str, int, str, str]] = field(default_factory=list)

    def add(self, file: str, line: int, reason: str, raw: str) -> None:
        self.rows.append((file, line, reason, raw[:200]))

    def counts(self) -> dict[str, int]:
        return dict(Counter(r[2] for r in self.rows))

    def count_for(self, file: str) -> int:
        return sum(1 for r in self.rows if r[0] == file)

    def write(self, path: str | Path) -> None:
        path = Path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_suffix(path.suffix + ".tmp")
        with open(tmp, "w", encoding="utf-8") as f:
            for file, line, reason, raw in self.rows:
                f.write(json.dumps({"file": file, "line": line, "reason": reason, "raw": raw}) + "\n")
        tmp.replace(path)


@dataclass
class BeirData:
    corpus: dict[str, tuple[str, str]]  # docid -> (title, text)
    queries: dict[str, str]
    qrels: dict[str, dict[str, dict[str, int]]]  # split -> qid -> docid -> score
    rejects: Rejects
    row_counts: dict[str, int]

    def doc_text(self, docid: str) -> str:
        return doc_text(*self.corpus[docid])

    def split_queries(self, split: str) -> dict[str, str]:
        return {q: self.queries[q] for q in self.qrels[split]}


def _resolve(path: Path) -> Path:
    if path.exists():
        return path
    gz = path.with_name(path.name + ".gz")
    if gz.exists():
        return gz
    raise DataError(f"input file not found: {path} (nor {gz.name})")


def _lines(path: Path):
    """Yield (line number, decoded line or None when the bytes are not UTF-8, raw bytes). A UTF-8 byte
    order mark opening the file is not part of its first row; a damaged gzip stream is a DataError."""
    opener = gzip.open if path.suffix == ".gz" else open
    n = 0
    try:
        with opener(path, "rb") as f:
            for n, raw in enumerate(f, 1):
                if n == 1 and raw.startswith(codecs.BOM_UTF8):
                    raw = raw[len(codecs.BOM_UTF8):]
                try:
                    line = raw.decode("utf-8")
                except UnicodeDecodeError:
                    line = None
                yield n, line, raw
    except (EOFError, zlib.error, gzip.BadGzipFile) as err:
        raise DataError(f"{path}: damaged gzip stream after line {n} ({err}); "
                        "re-create or re-download the file") from None


def text_rows(path: Path, reject) -> Iterator[tuple[int, str]]:
    """(line number, text) for each non-blank line of ``path`` (plain or gzip); a line whose bytes are not
    UTF-8 goes to ``reject(n, "not_utf8", text)`` (bad bytes replaced) instead. Blank lines are layout, not
    rows: neither yielded nor rejected."""
    for n, line, raw in _lines(path):
        if line is None:
            reject(n, "not_utf8", raw.decode("utf-8", "replace"))
        elif line.strip():
            yield n, line


def json_rows(path: Path, reject) -> Iterator[tuple[int, str, object]]:
    """(line number, text, parsed JSON value) for each row of :func:`text_rows`; a row that is not JSON goes to
    ``reject(n, "bad_json", text)`` instead. The value may be any JSON type: callers check its shape."""
    for n, line in text_rows(path, reject):
        try:
            row = json.loads(line)
        except json.JSONDecodeError:
            reject(n, "bad_json", line)
            continue
        yield n, line, row


def _check_share(name: str, good: int, rejected: int, max_share: float) -> None:
    total = good + rejected
    if good == 0:
        raise DataError(f"{name}: no valid rows ({rejected} rejected of {total}); see the rejects file")
    if total and rejected / total > max_share:
        raise DataError(
            f"{name}: {rejected} of {total} rows rejected ({rejected / total:.1%}), over the configured "
            f"max_reject_share {max_share:.1%}; see the rejects file")


def _read_jsonl(path: Path, rejects: Rejects, need_title: bool) -> dict:
    out: dict = {}
    name = path.name
    for n, line, row in json_rows(path, partial(rejects.add, name)):
        add_record(out, row, rejects, name, n, line, need_title)
    return out


def add_record(out: dict, row, rejects: Rejects, name: str, n: int, raw: str, need_title: bool) -> None:
    """One corpus (``need_title``) or query row, as a dict with ``_id`` (or ``id``), ``text`` (and ``title``),
    into ``out``, or into ``rejects`` with its reason: the checks every reader applies (distill.sources too)."""
    if not isinstance(row, dict):
        rejects.add(name, n, "not_an_object", raw)
        return
    rid = row.get("_id", row.get("id"))
    if isinstance(rid, bool) or not isinstance(rid, (str, int)) or not str(rid).strip():
        rejects.add(name, n, "missing_id", raw)
        return
    rid = str(rid).strip()  # as qrels columns are: a padded id must still match them
    text = row.get("text")
    title = row.get("title") or "" if need_title else ""
    if not isinstance(title, str):
        title = str(title)
    if not isinstance(text, str) or not (text.strip() or title.strip()):
        rejects.add(name, n, "missing_text", raw)
        return
    if rid in out:
        rejects.add(name, n, "duplicate_id", raw)
        return
    out[rid] = (title.strip(), text.strip()) if need_title else text.strip()


def _read_qrels(path: Path, corpus: dict, queries: dict, rejects: Rejects) -> dict[str, dict[str, int]]:
    out: dict[str, dict[str, int]] = {}
    name = f"qrels/{path.name}"
    for n, line in text_rows(path, partial(rejects.add, name)):
        cols = line.rstrip("\r\n").split("\t")
        if n == 1 and cols[0].strip().lower() in ("query-id", "query_id", "qid"):
            continue  # header
        if len(cols) == 4:  # TREC style: qid 0 docid score
            cols = [cols[0], cols[2], cols[3]]
        if len(cols) != 3:
            rejects.add(name, n, "bad_columns", line)
            continue
        qid, docid, score = (c.strip() for c in cols)
        add_qrel(out, qid, docid, score, corpus, queries, rejects, name, n, line)
    return out


def add_qrel(out: dict, qid: str, docid: str, score, corpus: dict, queries: dict, rejects: Rejects, name: str,
             n: int, raw: str) -> None:
    """One judgement into ``out`` (qid -> docid -> int score), or into ``rejects`` with its reason."""
    try:
        score_i = int(float(score))
    except (ValueError, OverflowError, TypeError):  # not a number; nan; inf; missing
        rejects.add(name, n, "bad_score", raw)
        return
    if qid not in queries:
        rejects.add(name, n, "unknown_query", raw)
        return
    if docid not in corpus:
        rejects.add(name, n, "unknown_doc", raw)
        return
    if docid in out.get(qid, {}):
        rejects.add(name, n, "duplicate_pair", raw)
        return
    out.setdefault(qid, {})[docid] = score_i


def read_beir(directory: str | Path, corpus: str = "corpus.jsonl", queries: str = "queries.jsonl",
              splits: tuple[str, ...] = ("train", "test"), max_reject_share: float = 0.05,
              rejects_path: str | Path | None = None) -> BeirData:
    """Read a BEIR directory; write rejects to ``rejects_path`` (always, even when empty)."""
    d = Path(directory)
    if not d.is_dir():
        raise DataError(f"data directory not found: {d}")
    rejects = Rejects()
    counts: dict[str, int] = {}
    try:
        cpath = _resolve(d / corpus)
        docs = _read_jsonl(cpath, rejects, need_title=True)
        counts["corpus"] = len(docs)
        _check_share(cpath.name, len(docs), rejects.count_for(cpath.name), max_reject_share)
        qpath = _resolve(d / queries)
        qs = _read_jsonl(qpath, rejects, need_title=False)
        counts["queries"] = len(qs)
        _check_share(qpath.name, len(qs), rejects.count_for(qpath.name), max_reject_share)
        qrels = {}
        for split in splits:
            p = _resolve(d / "qrels" / f"{split}.tsv")
            qrels[split] = _read_qrels(p, docs, qs, rejects)
            pairs = sum(len(v) for v in qrels[split].values())
            counts[f"qrels/{split}"] = pairs
            _check_share(f"qrels/{p.name}", pairs, rejects.count_for(f"qrels/{p.name}"), max_reject_share)
    finally:
        if rejects_path is not None:
            rejects.write(rejects_path)
    return BeirData(corpus=docs, queries=qs, qrels=qrels, rejects=rejects, row_counts=counts)


def carve_dev(data: BeirData, train_split: str, n: int, seed: int) -> list[str]:
    """Move ``n`` train-split queries (drawn with ``seed`` from the sorted query ids) to split ``dev``, so no
    stage trains on them and settings can be chosen on them; returns the dev query ids. Deterministic."""
    import random

    train = data.qrels[train_split]
    if n >= len(train):
        raise DataError(f"data.dev_queries={n} leaves no training queries (split {train_split!r} has {len(train)})")
    dev = sorted(random.Random(seed).sample(sorted(train), n))
    data.qrels["dev"] = {q: train[q] for q in dev}
    data.qrels[train_split] = {q: r for q, r in train.items() if q not in data.qrels["dev"]}
    data.row_counts["qrels/dev"] = sum(len(v) for v in data.qrels["dev"].values())
    data.row_counts[f"qrels/{train_split}"] -= data.row_counts["qrels/dev"]
    return dev
