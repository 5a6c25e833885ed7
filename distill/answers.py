"""Question-answer pairs (``data.answers``): what a reader teacher is fine-tuned on (stage ``teacher``).

Contract: :func:`read_answers` reads a JSONL file (or its ``.gz``) of ``{"_id": ..., "answers": [str, ...]
| str}`` rows (``id`` and ``answer`` are accepted too) into ``{qid: [answer, ...]}`` for the known queries,
and counts what it read. It never raises on a bad row: each is counted and rejected with its reason
(``not_utf8``, ``bad_json``, ``missing_id``, ``bad_answers``, ``unknown_query``, ``duplicate_id``) into
``rejects`` (a :class:`distill.data.Rejects`) when given, as distill.data does for the corpus; a missing
file is a DataError.
"""

from __future__ import annotations

from pathlib import Path


def read_answers(path: str | Path, queries: dict[str, str], rejects=None) -> tuple[dict[str, list[str]], dict]:
    """``{qid: [answer, ...]}`` from a JSONL file of ``{"_id": ..., "answers": [str, ...] | str}``.

    Rows without an ``answers`` key are counted (``no_answers``: a queries file may hold unanswered test
    queries); broken rows, unknown query ids, malformed or empty answers and duplicates are rejected with
    their reason (into ``rejects`` when given) and counted."""
    from distill.data import DataError, json_rows

    path = Path(path)
    if not path.exists() and Path(str(path) + ".gz").exists():
        path = Path(str(path) + ".gz")
    if not path.exists():
        raise DataError(f"answers file not found: {path}")
    out: dict[str, list[str]] = {}
    counts = {"rows": 0, "answered": 0, "no_answers": 0, "rejected": 0}

    def reject(n: int, reason: str, raw: str) -> None:
        counts["rejected"] += 1
        counts["rows"] += reason == "bad_json"  # a row, unlike a line that is not text at all
        if rejects is not None:
            rejects.add(path.name, n, reason, raw)

    for n, line, row in json_rows(path, reject):
        counts["rows"] += 1
        if not isinstance(row, dict) or row.get("_id", row.get("id")) is None:
            reject(n, "missing_id", line)
            continue
        qid = str(row.get("_id", row.get("id")))
        if "answers" not in row and "answer" not in row:
            counts["no_answers"] += 1
            continue
        ans = row.get("answers", row.get("answer"))
        ans = [ans] if isinstance(ans, str) else ans
        if not isinstance(ans, list) or not all(isinstance(a, str) for a in ans) or not any(a.strip() for a in ans):
            reject(n, "bad_answers", line)
            continue
        if qid not in queries:
            reject(n, "unknown_query", line)
            continue
        if qid in out:
            reject(n, "duplicate_id", line)
            continue
        out[qid] = [a.strip() for a in ans if a.strip()]
    counts["answered"] = len(out)
    return out, counts
