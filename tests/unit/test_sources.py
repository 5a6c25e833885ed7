"""distill.sources: parquet, Hugging Face datasets and ir_datasets readers with the BEIR reader's row checks;
imported teacher scores (FlagEmbedding JSONL, parquet) in place of the score stage's teacher."""

import json

import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from distill.config import DataConfig
from distill.data import DataError, read_beir
from distill.sources import import_scores, read_source

CORPUS = [{"_id": f"d{i}", "title": f"title {i}", "text": f"document number {i}"} for i in range(20)]
QUERIES = [{"_id": f"q{i}", "text": f"question {i}"} for i in range(10)]
QRELS = {"train": [{"query-id": f"q{i}", "corpus-id": f"d{i}", "score": 1} for i in range(6)],
         "test": [{"query-id": f"q{i}", "corpus-id": f"d{i}", "score": 1} for i in range(6, 10)]}


def _bad_rows():
    """One bad row per file: a missing id, a missing text, an unknown document."""
    corpus = CORPUS + [{"_id": "", "title": "", "text": "no id"}]
    queries = QUERIES + [{"_id": "q99", "text": ""}]
    qrels = {k: list(v) for k, v in QRELS.items()}
    qrels["train"] = qrels["train"] + [{"query-id": "q0", "corpus-id": "nope", "score": 1}]
    return corpus, queries, qrels


def _write_beir(d, corpus, queries, qrels):
    (d / "qrels").mkdir(parents=True)
    (d / "corpus.jsonl").write_text("".join(json.dumps(r) + "\n" for r in corpus))
    (d / "queries.jsonl").write_text("".join(json.dumps(r) + "\n" for r in queries))
    for split, rows in qrels.items():
        (d / "qrels" / f"{split}.tsv").write_text("query-id\tcorpus-id\tscore\n" + "".join(
            f"{r['query-id']}\t{r['corpus-id']}\t{r['score']}\n" for r in rows))


def _same_as_beir(data, ref):
    assert data.corpus == ref.corpus and data.queries == ref.queries and data.qrels == ref.qrels
    assert data.row_counts == ref.row_counts and data.rejects.counts() == ref.rejects.counts()


def test_parquet_reader_matches_beir_with_the_same_rejects(tmp_path):
    corpus, queries, qrels = _bad_rows()
    _write_beir(tmp_path / "beir", corpus, queries, qrels)
    ref = read_beir(tmp_path / "beir", max_reject_share=0.2)
    d = tmp_path / "pq"
    (d / "qrels").mkdir(parents=True)
    pq.write_table(pa.Table.from_pylist(corpus), d / "corpus.parquet")
    pq.write_table(pa.Table.from_pylist(queries), d / "queries.parquet")
    for split, rows in qrels.items():
        pq.write_table(pa.Table.from_pylist(rows), d / "qrels" / f"{split}.parquet")
    c = DataConfig(dir=str(d), format="parquet", max_reject_share=0.2)
    data = read_source(c, ("train", "test"), rejects_path=tmp_path / "rejects.jsonl")
    _same_as_beir(data, ref)
    assert data.rejects.counts() == {"missing_id": 1, "missing_text": 1, "unknown_doc": 1}
    assert len((tmp_path / "rejects.jsonl").read_text().splitlines()) == 3
    with pytest.raises(DataError, match="over the configured max_reject_share"):
        read_source(DataConfig(dir=str(d), format="parquet", max_reject_share=0.01), ("train", "test"))


def test_hf_dataset_saved_to_disk(tmp_path):
    datasets = pytest.importorskip("datasets")
    corpus, queries, qrels = _bad_rows()
    _write_beir(tmp_path / "beir", corpus, queries, qrels)
    ref = read_beir(tmp_path / "beir", max_reject_share=0.2)
    dd = datasets.DatasetDict({"corpus": datasets.Dataset.from_list(corpus),
                               "queries": datasets.Dataset.from_list(queries),
                               **{s: datasets.Dataset.from_list(r) for s, r in qrels.items()}})
    dd.save_to_disk(str(tmp_path / "hf"))
    data = read_source(DataConfig(format="hf", hf=str(tmp_path / "hf"), max_reject_share=0.2), ("train", "test"))
    _same_as_beir(data, ref)
    from distill.sources import input_files

    files = input_files(DataConfig(format="hf", hf=str(tmp_path / "hf")))
    assert files["corpus"] and files["qrels/test"]  # their checksums go into the stage digests


def test_missing_optional_packages_are_named(monkeypatch):
    import builtins

    real = builtins.__import__

    def no(name, *a, **k):
        if name in ("datasets", "ir_datasets"):
            raise ImportError(name)
        return real(name, *a, **k)

    monkeypatch.setattr(builtins, "__import__", no)
    with pytest.raises(DataError, match="pip install datasets"):
        read_source(DataConfig(format="hf", hf="some/dataset"), ("train",))
    with pytest.raises(DataError, match="pip install ir_datasets"):
        read_source(DataConfig(format="ir_datasets", ir_datasets="beir/scifact"), ("test",))


def test_ir_datasets_id(tmp_path):
    pytest.importorskip("ir_datasets")
    pytest.skip("no ir_datasets dataset can be built offline here")


def _loaded(tmp_path):
    _write_beir(tmp_path / "beir", CORPUS, QUERIES, QRELS)
    data = read_beir(tmp_path / "beir")
    cands = pd.DataFrame([{"qid": f"q{q}", "docid": f"d{d}", "label": int(q == d), "source": "mined"}
                          for q in range(3) for d in range(3)])
    return data, cands


def test_import_flagembedding_jsonl(tmp_path):
    data, cands = _loaded(tmp_path)
    lines = [{"query": f"question {q}", "pos": [data.doc_text(f"d{q}")],
              "neg": [f"document number {d}" for d in range(3) if d != q],  # text without title matches too
              "pos_scores": [5.0 + q], "neg_scores": [float(d) for d in range(3) if d != q]} for q in range(3)]
    lines.append({"query": "a question nobody asked", "pos": ["x"], "neg": [], "pos_scores": [1.0], "neg_scores": []})
    lines.append({"query": "question 0", "pos": ["a document nobody wrote"], "neg": [], "pos_scores": [1.0],
                  "neg_scores": []})
    p = tmp_path / "scores.jsonl"
    p.write_text("".join(json.dumps(r) + "\n" for r in lines))
    scored, counts, rejects = import_scores(p, cands, data, max_reject_share=0.5, rejects_path=tmp_path / "r.jsonl")
    assert len(scored) == len(cands) and rejects == {"unknown_query": 1, "unknown_doc": 1}
    s = {(r.qid, r.docid): r.teacher_score for r in scored.itertuples()}
    assert s[("q1", "d1")] == 6.0 and s[("q1", "d2")] == 2.0 and scored["teacher_score"].dtype == "float32"
    assert counts["imported_pairs"] == 9 and counts["not_candidates"] == 0
    assert len((tmp_path / "r.jsonl").read_text().splitlines()) == 2
    with pytest.raises(DataError, match="over the configured max_reject_share"):
        import_scores(p, cands, data, max_reject_share=0.01)


def test_import_parquet_checks_every_candidate_once(tmp_path):
    data, cands = _loaded(tmp_path)
    rows = [{"qid": q, "docid": d, "score": float(i)} for i, (q, d) in enumerate(zip(cands.qid, cands.docid))]
    rows += [{"qid": "q0", "docid": "d0", "score": 9.0},  # duplicate pair
             {"qid": "q0", "docid": "zzz", "score": 1.0},  # unknown document
             {"qid": "q0", "docid": "d7", "score": 1.0}]  # known, not a candidate: counted, unused
    p = tmp_path / "scores.parquet"
    pq.write_table(pa.Table.from_pylist(rows), p)
    scored, counts, rejects = import_scores(p, cands, data, max_reject_share=0.5)
    assert rejects == {"duplicate_pair": 1, "unknown_doc": 1} and counts["not_candidates"] == 1
    assert scored["teacher_score"].tolist() == [float(i) for i in range(9)]  # the first score of a pair counts
    pq.write_table(pa.Table.from_pylist(rows[1:9]), p)  # one candidate unscored
    with pytest.raises(DataError, match="1 of 9 candidates have no imported score"):
        import_scores(p, cands, data, max_reject_share=0.5)
    scored, counts, _ = import_scores(p, cands, data, max_reject_share=0.5, missing="drop")
    assert len(scored) == 8 and counts["dropped_unscored"] == 1


def test_score_stage_reads_imported_scores(tmp_path):
    from distill.config import build_config
    from distill.manifest import RunDir, stage_digest
    from distill.stages import score

    data, cands = _loaded(tmp_path)
    p = tmp_path / "scores.parquet"
    pq.write_table(pa.Table.from_pylist([{"qid": q, "docid": d, "score": float(i)}
                                         for i, (q, d) in enumerate(zip(cands.qid, cands.docid))]), p)
    base = {"name": "imp", "runs_dir": str(tmp_path / "runs"), "data": {"dir": str(tmp_path / "beir")},
            "teacher": {"model": "m"}, "student": {"model": "m"}}
    cfg = build_config({**base, "scoring": {"import_path": str(p)}})
    assert stage_digest(cfg, "score") != stage_digest(build_config(base), "score")
    assert stage_digest(cfg, "mine") == stage_digest(build_config(base), "mine")
    rd = RunDir(cfg)
    rd.stage_path("mine").mkdir(parents=True)
    pq.write_table(pa.Table.from_pandas(cands), rd.stage_path("mine") / "candidates.parquet")
    counts = score.score_candidates(rd, data, "no-teacher-needed")
    assert counts["pairs_in"] == counts["pairs_out"] == 9 and counts["import_rejects"] == 0
    out = pq.read_table(rd.stage_path("score") / "scores.parquet").to_pandas()
    assert out["teacher_score"].tolist() == [float(i) for i in range(9)]
    assert rd.stages["score"]["imported"]["path"] == str(p)


def test_load_data_reads_parquet_and_records_its_checksums(tmp_path):
    from distill.config import build_config
    from distill.manifest import RunDir
    from distill.pipeline import load_data

    d = tmp_path / "pq"
    (d / "qrels").mkdir(parents=True)
    pq.write_table(pa.Table.from_pylist(CORPUS), d / "corpus.parquet")
    pq.write_table(pa.Table.from_pylist(QUERIES), d / "queries.parquet")
    for split, rows in QRELS.items():
        pq.write_table(pa.Table.from_pylist(rows), d / "qrels" / f"{split}.parquet")
    cfg = build_config({"name": "p", "runs_dir": str(tmp_path / "runs"), "data": {"dir": str(d), "format": "parquet"},
                        "teacher": {"model": "m"}, "student": {"model": "m"}})
    rd = RunDir(cfg)
    data = load_data(rd)
    assert data.row_counts == {"corpus": 20, "queries": 10, "qrels/train": 6, "qrels/test": 4}
    assert str(d / "corpus.parquet") in rd.manifest["inputs"] and rd.input_checksums("mine")["corpus"]
