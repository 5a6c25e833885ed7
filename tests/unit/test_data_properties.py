"""Property-based tests of the BEIR reader (distill.data.read_beir) against bad input made on purpose.

A valid corpus / queries / qrels set is generated, then rows are corrupted at random (invalid UTF-8
bytes, truncated or broken JSON, non-objects, missing or blank ids and texts, duplicate ids, huge
fields, qrels naming unknown or rejected ids, wrong column counts, bad scores, blank lines, CRLF, a
UTF-8 BOM, gzip). The generator knows what it did to every line, so it knows the outcome: the reader
must return exactly the good rows and reject exactly the bad ones, each with its file, line and
reason; or, when a file's rejected share passes ``max_reject_share`` (or it has no good row), stop
with a DataError naming that file and its counts, the rejects file still written.
"""

from __future__ import annotations

import gzip
import json
import tempfile
from dataclasses import dataclass, field
from pathlib import Path

import pytest
from hypothesis import HealthCheck, event, given, settings
from hypothesis import strategies as st

from distill.data import DataError, read_beir

SETTINGS = settings(max_examples=80, deadline=None, suppress_health_check=[HealthCheck.too_slow,
                                                                           HealthCheck.data_too_large])

# Printable text without tabs/newlines (ids must fit a TSV column); texts may hold any non-surrogate char.
ID_CHARS = st.characters(blacklist_categories=("Cs", "Cc", "Zs", "Zl", "Zp"))
TEXT = st.text(min_size=1, max_size=30).filter(lambda s: s.strip())
BAD_BYTES = [b"\xff", b"\xfe", b"\xc3\x28", b"\x80", b"\xed\xa0\x80", b"\xc0\xaf", b"\xf8\x88\x80\x80\x80"]
JSON_KINDS = ["good"] * 8 + ["not_utf8", "bad_json", "not_an_object", "missing_id", "missing_text",
                             "duplicate_id", "blank", "huge"]
ROWS = st.sampled_from([*range(1, 15)] * 2 + [0])  # an empty file now and then
QREL_KINDS = ["good"] * 8 + ["not_utf8", "bad_columns", "bad_score", "unknown_query", "unknown_doc",
                             "duplicate_pair", "blank", "trec"]


@dataclass
class FileSpec:
    """One input file: its lines (bytes, no terminator) and, per line, the expected outcome."""

    path: str  # relative to the data dir, without .gz
    lines: list[bytes] = field(default_factory=list)
    # per line: ("good", key, value) | ("reject", reason) | ("skip",)
    outcome: list[tuple] = field(default_factory=list)
    gz: bool = False
    crlf: bool = False
    bom: bool = False
    final_newline: bool = True

    def __repr__(self) -> str:
        rows = enumerate(zip(self.lines, self.outcome), 1)
        lines = "\n".join(f"  {n}: {ln[:80]!r} -> {o[:2]}" for n, (ln, o) in rows)
        flags = f"crlf={self.crlf}, bom={self.bom}, final_newline={self.final_newline}"
        return f"FileSpec({self.display}, {flags})\n{lines}"

    @property
    def display(self) -> str:
        """The name the reader uses in rejects and messages."""
        return self.path + (".gz" if self.gz else "")

    def add(self, line: bytes, *outcome) -> None:
        self.lines.append(line)
        self.outcome.append(outcome)

    def data(self) -> bytes:
        sep = b"\r\n" if self.crlf else b"\n"
        body = sep.join(self.lines) + (sep if self.lines and self.final_newline else b"")
        return (b"\xef\xbb\xbf" if self.bom else b"") + body

    def write(self, root: Path) -> None:
        p = root / self.display
        p.parent.mkdir(parents=True, exist_ok=True)
        p.write_bytes(gzip.compress(self.data()) if self.gz else self.data())

    def good(self) -> dict:
        return {o[1]: o[2] for o in self.outcome if o[0] == "good"}

    def rejects(self) -> list[tuple[str, int, str]]:
        return [(self.display, n, o[1]) for n, o in enumerate(self.outcome, 1) if o[0] == "reject"]


def _inject_bad_bytes(draw, raw: bytes) -> bytes:
    pos = draw(st.integers(0, len(raw)))
    out = raw[:pos] + draw(st.sampled_from(BAD_BYTES)) + raw[pos:]
    try:
        out.decode("utf-8")
    except UnicodeDecodeError:
        return out
    return b"\xff" + out  # a safety net: each of BAD_BYTES already breaks UTF-8 wherever it lands


def _file_flags(draw, spec: FileSpec) -> FileSpec:
    spec.gz, spec.crlf, spec.bom, spec.final_newline = (draw(st.booleans()) for _ in range(4))
    return spec


@st.composite
def jsonl_file(draw, path: str, corpus: bool, prefix: str):
    """A corpus or queries file; returns (spec, ids the rejected rows would have had)."""
    spec = _file_flags(draw, FileSpec(path))
    accepted: list[str] = []
    rejected_ids: list[str] = []
    for i in range(draw(ROWS)):
        kind = draw(st.sampled_from(JSON_KINDS))
        form = draw(st.sampled_from(["plain", "plain", "int", "padded", "id_key"]))
        base = f"{prefix}{draw(st.text(ID_CHARS, max_size=3))}~{i}"
        key = str(10_000 + i) if form == "int" else base
        rid = {"plain": base, "int": 10_000 + i, "padded": f"  {base} ", "id_key": base}[form]
        row: dict = {("id" if form == "id_key" else "_id"): rid}
        text = draw(TEXT)
        title = draw(st.one_of(st.none(), st.just(""), TEXT)) if corpus else None
        if corpus and draw(st.booleans()):
            row["title"] = title
        else:
            title = None
        row["text"] = text
        if draw(st.booleans()):
            row["meta"] = {"source": draw(st.text(max_size=5)), "n": [1, 2]}  # extra keys are ignored
        if kind == "duplicate_id" and not accepted:
            kind = "good"
        if kind == "duplicate_id":
            key = draw(st.sampled_from(accepted))
            row.pop("id", None)
            row["_id"] = key
        elif kind == "huge":
            row["text"] = text = "lorem ipsum " * draw(st.sampled_from([20_000, 90_000]))
        elif kind == "missing_id":
            row.pop("id", None)
            row.pop("_id", None)
            bad_id = draw(st.sampled_from(["absent", None, "", "   ", 1.5, [1], {"a": 1}, True, False]))
            if bad_id != "absent":
                row["_id"] = bad_id
        elif kind == "missing_text":
            bad = draw(st.sampled_from(["absent", None, "", " \t ", 5, ["a"], {"t": "x"}]))
            row.pop("text")
            if bad != "absent":
                row["text"] = bad
            if isinstance(bad, str) or bad == "absent" or bad is None:
                row.pop("title", None)  # (a title and a blank text make a good, title-only, corpus row)
        line = json.dumps(row, ensure_ascii=draw(st.booleans())).encode()
        if kind == "not_utf8":
            line = _inject_bad_bytes(draw, line)
        elif kind == "bad_json":
            how = draw(st.sampled_from(["truncate", "extra", "repr", "nul"]))
            s = line.decode()
            if how == "truncate":
                s = s[: draw(st.integers(1, len(s) - 1))]
            elif how == "extra":
                s += draw(st.sampled_from(["}", ",", " x", "{}"]))
            elif how == "repr":
                s = repr(row)
            else:
                s = s[:-1] + ', "x": "a\x00b"}'
            line = s.encode()
        elif kind == "not_an_object":
            line = draw(st.sampled_from([b"[1, 2]", b'"a string"', b"42", b"null", b"true", b"[]"]))
        elif kind == "blank":
            line = draw(st.sampled_from([b"", b"   ", b"\t", b"\r"]))
        if kind in ("good", "huge"):
            value = ((title or "").strip(), text.strip()) if corpus else text.strip()
            spec.add(line, "good", key, value)
            accepted.append(key)
        elif kind == "blank":
            spec.add(line, "skip")
        else:
            spec.add(line, "reject", kind)
            if kind in ("not_utf8", "bad_json", "not_an_object", "missing_text"):
                rejected_ids.append(key)
    return spec, rejected_ids


@st.composite
def qrels_file(draw, split: str, docs: list[str], queries: list[str], bad_docs: list[str],
               bad_queries: list[str]):
    spec = _file_flags(draw, FileSpec(f"qrels/{split}.tsv"))
    if draw(st.booleans()):
        spec.add(draw(st.sampled_from([b"query-id\tcorpus-id\tscore", b"qid\tdocid\tscore"])), "skip")
    seen: set[tuple[str, str]] = set()

    def cell(s: str) -> str:
        return draw(st.sampled_from(["", " "])) + s + draw(st.sampled_from(["", " "]))

    for _ in range(draw(ROWS)):
        kind = draw(st.sampled_from(QREL_KINDS))
        if kind in ("good", "trec", "duplicate_pair", "unknown_doc") and not (docs and queries):
            kind = "unknown_query"
        if kind == "duplicate_pair" and not seen:
            kind = "good"
        score = draw(st.integers(-2, 3))
        score_s = draw(st.sampled_from([str(score), f"{score}.0",
                                        f"{score}.7" if score >= 0 else str(score)]))
        q = draw(st.sampled_from(queries)) if queries else "q"
        d = draw(st.sampled_from(docs)) if docs else "d"
        if kind == "duplicate_pair":
            q, d = draw(st.sampled_from(sorted(seen)))
        elif kind == "unknown_query":
            q = draw(st.sampled_from(bad_queries + ["no-such-query"]))
        elif kind == "unknown_doc":
            d = draw(st.sampled_from(bad_docs + ["no-such-doc"]))
        elif kind in ("good", "trec") and (q, d) in seen:
            kind = "duplicate_pair"
        cols = [cell(q), cell(d), score_s]
        if kind == "trec":
            cols = [cols[0], "0", cols[1], score_s]
        elif kind == "bad_columns":
            # (4 columns are TREC style: qid 0 docid score)
            cols = draw(st.sampled_from([cols[:1], cols[:2], cols + ["x", "y"], cols + ["x", "y", "z"]]))
            if len(spec.lines) == 0 and cols[0].strip().lower() in ("query-id", "query_id", "qid"):
                cols[0] = "q"
        elif kind == "bad_score":
            cols[2] = draw(st.sampled_from(["x", "", "nan", "inf", "-inf", "1e400", "1,5", "0x1", "one"]))
        line = "\t".join(cols).encode()
        if kind == "not_utf8":
            line = _inject_bad_bytes(draw, line)
        elif kind == "blank":
            line = draw(st.sampled_from([b"", b"  ", b"\r"]))
        if kind in ("good", "trec"):
            seen.add((q, d))
            spec.add(line, "good", (q, d), int(float(score_s)))
        elif kind == "blank":
            spec.add(line, "skip")
        else:
            spec.add(line, "reject", kind)
    return spec


@st.composite
def beir_sets(draw):
    corpus, bad_docs = draw(jsonl_file("corpus.jsonl", True, "d"))
    queries, bad_queries = draw(jsonl_file("queries.jsonl", False, "q"))
    docs, qs = sorted(corpus.good()), sorted(queries.good())
    splits = [draw(qrels_file(s, docs, qs, bad_docs, bad_queries)) for s in ("train", "test")]
    share = draw(st.sampled_from([1.0] * 6 + [0.6, 0.3, 0.05, 0.0]))
    return [corpus, queries, *splits], share


def _expected_stop(files: list[FileSpec], share: float):
    """(index of the file that stops the read, its message pattern) or None when the read succeeds."""
    for i, f in enumerate(files):
        good, bad = len(f.good()), len(f.rejects())
        total = good + bad
        if good == 0:
            return i, f"{f.display}: no valid rows ({bad} rejected of {total})"
        if bad / total > share:
            return i, f"{f.display}: {bad} of {total} rows rejected"
    return None


@SETTINGS
@given(beir_sets())
def test_reader_keeps_every_good_row_and_counts_every_bad_one(case):
    files, share = case
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp) / "data"
        for f in files:
            f.write(root)
        rejects_path = Path(tmp) / "rejects.jsonl"
        stop = _expected_stop(files, share)
        event(f"stops at {files[stop[0]].path}" if stop else "reads through")
        if stop is not None:
            i, message = stop
            with pytest.raises(DataError) as err:
                read_beir(root, max_reject_share=share, rejects_path=rejects_path)
            assert message in str(err.value)
            assert "rejects file" in str(err.value)
            read_files = files[: i + 1]
        else:
            data = read_beir(root, max_reject_share=share, rejects_path=rejects_path)
            corpus, queries, train, test = files
            assert data.corpus == corpus.good()
            assert data.queries == queries.good()
            for split, spec in (("train", train), ("test", test)):
                expected: dict = {}
                for (q, d), s in spec.good().items():
                    expected.setdefault(q, {})[d] = s
                assert data.qrels[split] == expected
            assert data.row_counts == {"corpus": len(corpus.good()), "queries": len(queries.good()),
                                       "qrels/train": len(train.good()), "qrels/test": len(test.good())}
            read_files = files
        rows = [json.loads(line) for line in rejects_path.read_text(encoding="utf-8").splitlines()]
        expected = [r for f in read_files for r in f.rejects()]
        assert [(r["file"], r["line"], r["reason"]) for r in rows] == expected
        assert all(len(r["raw"]) <= 200 for r in rows)


# ---- whole-file damage ------------------------------------------------------------------------------------
def _valid_set(root: Path, n_docs: int = 4) -> None:
    (root / "qrels").mkdir(parents=True, exist_ok=True)
    (root / "corpus.jsonl").write_text("".join(
        json.dumps({"_id": f"d{i}", "title": "Café", "text": f"numéro {i}"}, ensure_ascii=False) + "\n"
        for i in range(n_docs)), encoding="utf-8")
    (root / "queries.jsonl").write_text(json.dumps({"_id": "q0", "text": "où"}) + "\n")
    for split in ("train", "test"):
        (root / "qrels" / f"{split}.tsv").write_text("query-id\tcorpus-id\tscore\nq0\td1\t1\n")


@pytest.mark.parametrize("encoding", ["utf-16", "utf-16-le", "utf-32"])
def test_wrong_encoding_stops_with_every_line_counted(tmp_path, encoding):
    _valid_set(tmp_path)
    text = (tmp_path / "corpus.jsonl").read_text(encoding="utf-8")
    raw = text.encode(encoding)
    (tmp_path / "corpus.jsonl").write_bytes(raw)
    n = raw.count(b"\n") + (not raw.endswith(b"\n"))  # the bytes after the last b"\n" (NULs) are a line too
    with pytest.raises(DataError, match=rf"corpus.jsonl: no valid rows \({n} rejected of {n}\)"):
        read_beir(tmp_path, rejects_path=tmp_path / "r.jsonl")
    rows = [json.loads(x) for x in (tmp_path / "r.jsonl").read_text().splitlines()]
    assert [r["line"] for r in rows] == list(range(1, n + 1))
    assert {r["reason"] for r in rows} <= {"not_utf8", "bad_json"}


def test_latin1_rows_are_rejected_ascii_rows_kept(tmp_path):
    _valid_set(tmp_path)
    lines = (tmp_path / "corpus.jsonl").read_text(encoding="utf-8").splitlines()
    lines.append(json.dumps({"_id": "plain", "text": "ascii only"}))
    (tmp_path / "corpus.jsonl").write_bytes(b"".join(
        (ln.encode("utf-8") if i % 2 else ln.encode("latin-1")) + b"\n" for i, ln in enumerate(lines)))
    data = read_beir(tmp_path, max_reject_share=0.5, rejects_path=tmp_path / "r.jsonl")
    assert set(data.corpus) == {"d1", "d3", "plain"}
    assert data.rejects.counts() == {"not_utf8": 2}
    assert [r[1] for r in data.rejects.rows] == [1, 3]


def test_utf8_bom_is_not_a_bad_row(tmp_path):
    _valid_set(tmp_path)
    for name in ("corpus.jsonl", "qrels/train.tsv"):
        p = tmp_path / name
        p.write_bytes(b"\xef\xbb\xbf" + p.read_bytes())
    data = read_beir(tmp_path, max_reject_share=0.0)
    assert len(data.corpus) == 4 and data.qrels["train"] == {"q0": {"d1": 1}}


@pytest.mark.parametrize("damage", ["truncated", "not_gzip", "corrupt"])
def test_damaged_gzip_is_a_clear_error(tmp_path, damage):
    _valid_set(tmp_path, n_docs=400)
    raw = (tmp_path / "corpus.jsonl").read_bytes()
    (tmp_path / "corpus.jsonl").unlink()
    gz = gzip.compress(raw)
    if damage == "truncated":
        gz = gz[: len(gz) // 2]
    elif damage == "not_gzip":
        gz = raw
    else:
        gz = gz[:20] + bytes(b ^ 0x5A for b in gz[20:40]) + gz[40:]
    (tmp_path / "corpus.jsonl.gz").write_bytes(gz)
    with pytest.raises(DataError, match=r"corpus.jsonl.gz: .*gzip"):
        read_beir(tmp_path, rejects_path=tmp_path / "r.jsonl")
    assert (tmp_path / "r.jsonl").exists()


@pytest.mark.parametrize("name", ["corpus.jsonl", "queries.jsonl", "qrels/train.tsv", "qrels/test.tsv"])
def test_each_empty_file_is_named(tmp_path, name):
    _valid_set(tmp_path)
    (tmp_path / name).write_bytes(b"")
    with pytest.raises(DataError, match=rf"{name}: no valid rows \(0 rejected of 0\)"):
        read_beir(tmp_path)


def test_huge_row_kept_and_huge_bad_row_logged_short(tmp_path):
    _valid_set(tmp_path)
    big = "word " * 1_000_000  # 5 MB in one field
    with open(tmp_path / "corpus.jsonl", "a") as f:
        f.write(json.dumps({"_id": "big", "text": big}) + "\n")
        f.write('{"_id": "broken", "text": "' + big + "\n")
    data = read_beir(tmp_path, max_reject_share=0.5, rejects_path=tmp_path / "r.jsonl")
    assert data.corpus["big"] == ("", big.strip())
    rows = [json.loads(x) for x in (tmp_path / "r.jsonl").read_text().splitlines()]
    assert [(r["line"], r["reason"], len(r["raw"])) for r in rows] == [(6, "bad_json", 200)]


@pytest.mark.parametrize("score", ["inf", "-inf", "1e400", "nan"])
def test_non_finite_scores_are_bad_scores(tmp_path, score):
    _valid_set(tmp_path)
    with open(tmp_path / "qrels" / "train.tsv", "a") as f:
        f.write(f"q0\td2\t{score}\n")
    data = read_beir(tmp_path, max_reject_share=0.5)
    assert data.rejects.counts() == {"bad_score": 1} and data.qrels["train"] == {"q0": {"d1": 1}}


def test_ids_are_strings_or_ints_never_booleans_and_are_stripped(tmp_path):
    _valid_set(tmp_path)
    with open(tmp_path / "corpus.jsonl", "a") as f:
        for rid in (True, False, 7, "  padded "):
            f.write(json.dumps({"_id": rid, "text": "t"}) + "\n")
    with open(tmp_path / "qrels" / "train.tsv", "a") as f:
        f.write("q0\tpadded\t2\nq0\t7\t1\n")
    data = read_beir(tmp_path, max_reject_share=0.5, rejects_path=tmp_path / "r.jsonl")
    assert {"7", "padded"} <= set(data.corpus) and "True" not in data.corpus
    assert data.rejects.counts() == {"missing_id": 2}
    assert data.qrels["train"] == {"q0": {"d1": 1, "padded": 2, "7": 1}}
