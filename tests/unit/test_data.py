import gzip
import json

import pytest

from distill.data import DataError, json_rows, read_beir, text_rows


def _write(d, corpus_lines, query_lines, train_lines, test_lines=None):
    (d / "qrels").mkdir(parents=True, exist_ok=True)
    (d / "corpus.jsonl").write_bytes(b"\n".join(corpus_lines) + b"\n")
    (d / "queries.jsonl").write_bytes(b"\n".join(query_lines) + b"\n")
    (d / "qrels" / "train.tsv").write_text("query-id\tcorpus-id\tscore\n" + "".join(train_lines))
    (d / "qrels" / "test.tsv").write_text("query-id\tcorpus-id\tscore\n" + "".join(test_lines or train_lines))


def _doc(i, text="some text", title="t"):
    return json.dumps({"_id": f"d{i}", "title": title, "text": text}).encode()


def _q(i, text="a query"):
    return json.dumps({"_id": f"q{i}", "text": text}).encode()


def test_clean_read(tmp_path):
    _write(tmp_path, [_doc(i) for i in range(5)], [_q(i) for i in range(3)], ["q0\td1\t1\n", "q1\td2\t1\n"])
    data = read_beir(tmp_path, rejects_path=tmp_path / "rejects.jsonl")
    assert data.row_counts == {"corpus": 5, "queries": 3, "qrels/train": 2, "qrels/test": 2}
    assert data.doc_text("d1") == "t. some text"
    assert (tmp_path / "rejects.jsonl").read_text() == ""


def test_every_bad_row_counted_with_reason(tmp_path):
    corpus = [_doc(i) for i in range(20)] + [
        b"{not json", b"[1, 2]", json.dumps({"title": "x", "text": "no id"}).encode(),
        json.dumps({"_id": "d99", "title": "", "text": ""}).encode(), _doc(3), b"\xff\xfe bad bytes"]
    queries = [_q(i) for i in range(20)] + [json.dumps({"_id": "q1", "text": "dup"}).encode()]
    train = [f"q{i}\td{i}\t1\n" for i in range(19)] + ["q0\tmissing\t1\n", "nope\td1\t1\n", "q2\td2\tx\n", "q3\n", "q5\td5\t1\n"]
    _write(tmp_path, corpus, queries, train)
    data = read_beir(tmp_path, max_reject_share=0.5, rejects_path=tmp_path / "rejects.jsonl")
    assert len(data.corpus) == 20 and len(data.queries) == 20
    rows = [json.loads(line) for line in (tmp_path / "rejects.jsonl").read_text().splitlines()]
    reasons = sorted(r["reason"] for r in rows if r["file"] == "corpus.jsonl")
    assert reasons == ["bad_json", "duplicate_id", "missing_id", "missing_text", "not_an_object", "not_utf8"]
    assert [r["reason"] for r in rows if r["file"] == "queries.jsonl"] == ["duplicate_id"]
    train_reasons = sorted(r["reason"] for r in rows if r["file"] == "qrels/train.tsv")
    assert train_reasons == ["bad_columns", "bad_score", "duplicate_pair", "unknown_doc", "unknown_query"]
    # good rows are all kept: 19 distinct pairs minus the duplicate (q2,d2 is bad score; q0,d0 fine)
    assert sum(len(v) for v in data.qrels["train"].values()) == 19


def test_reject_share_stops_run_with_clear_message(tmp_path):
    _write(tmp_path, [_doc(0), b"{bad", b"{bad"], [_q(0)], ["q0\td0\t1\n"])
    with pytest.raises(DataError, match=r"corpus.jsonl: 2 of 3 rows rejected"):
        read_beir(tmp_path, max_reject_share=0.1, rejects_path=tmp_path / "r.jsonl")
    assert len((tmp_path / "r.jsonl").read_text().splitlines()) == 2


def test_empty_file_is_an_error(tmp_path):
    _write(tmp_path, [], [_q(0)], [])
    with pytest.raises(DataError, match="no valid rows"):
        read_beir(tmp_path)


def test_gzip_and_missing_dir(tmp_path):
    _write(tmp_path, [_doc(0), _doc(1)], [_q(0)], ["q0\td1\t1\n"])
    raw = (tmp_path / "corpus.jsonl").read_bytes()
    (tmp_path / "corpus.jsonl").unlink()
    with gzip.open(tmp_path / "corpus.jsonl.gz", "wb") as f:
        f.write(raw)
    assert len(read_beir(tmp_path).corpus) == 2
    with pytest.raises(DataError, match="not found"):
        read_beir(tmp_path / "nowhere")


def test_sample_dataset_is_clean():
    data = read_beir("data/sample", max_reject_share=0.0)
    assert data.row_counts == {"corpus": 320, "queries": 111, "qrels/train": 73, "qrels/test": 40}
    assert not set(data.qrels["train"]) & set(data.qrels["test"])


@pytest.mark.parametrize("gz", [False, True])
def test_text_and_json_rows_yield_rows_and_reject_the_rest_by_line(tmp_path, gz):
    body = b"\xef\xbb\xbf" + b'{"a": 1}\n\n   \n[2]\n{broken\n\xff\xfe\n"s"\n'
    path = tmp_path / ("f.jsonl.gz" if gz else "f.jsonl")
    path.write_bytes(gzip.compress(body) if gz else body)
    rejected = []
    rows = list(json_rows(path, lambda n, reason, raw: rejected.append((n, reason, raw))))
    assert [(n, row) for n, _, row in rows] == [(1, {"a": 1}), (4, [2]), (7, "s")]  # BOM gone, blanks skipped
    assert rejected == [(5, "bad_json", "{broken\n"), (6, "not_utf8", "\ufffd\ufffd\n")]
    rejected.clear()
    assert [n for n, _ in text_rows(path, lambda *a: rejected.append(a))] == [1, 4, 5, 7]
    assert rejected == [(6, "not_utf8", "\ufffd\ufffd\n")]
