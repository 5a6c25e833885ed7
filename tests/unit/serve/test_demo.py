"""serve/demo.py without Ray: which queries the demo sends, its command line, and main's flow with
deploy/shutdown/query_demo stubbed (the reranker dropped for an index without corpus text; Serve shut
down even when the queries fail)."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest

import serve.app
import serve.client
from serve import demo

FALLBACK = ["how do volcanoes erupt", "what causes inflation", "rules of offside in football"]


def _run_with_data(tmp_path: Path, n_queries: int, data: dict | None = None) -> Path:
    (tmp_path / "data").mkdir()
    with open(tmp_path / "data" / "queries.jsonl", "w") as f:
        for i in range(n_queries):
            f.write(json.dumps({"_id": f"q{i}", "text": f"query {i}"}) + "\n")
        f.write("\n")  # a blank line is skipped
    run = tmp_path / "run"
    run.mkdir()
    cfg = {"data": data if data is not None else {"dir": str(tmp_path / "data")}}
    (run / "manifest.json").write_text(json.dumps({"config": cfg}))
    return run


def test_pick_queries_spreads_over_the_runs_query_file(tmp_path):
    run = _run_with_data(tmp_path, 10)
    assert demo._pick_queries(run, 3) == ["query 0", "query 3", "query 6"]
    assert demo._pick_queries(run, 1) == ["query 0"]
    assert demo._pick_queries(run, 20) == [f"query {i}" for i in range(10)]


def test_pick_queries_reads_a_named_query_file(tmp_path):
    (tmp_path / "data").mkdir()
    (tmp_path / "data" / "mine.jsonl").write_text(json.dumps({"text": "only one"}) + "\n")
    run = tmp_path / "run"
    run.mkdir()
    (run / "manifest.json").write_text(json.dumps({"config": {"data": {"dir": str(tmp_path / "data"),
                                                                       "queries": "mine.jsonl"}}}))
    assert demo._pick_queries(run, 3) == ["only one"]


@pytest.mark.parametrize("manifest", [None, "not json",
                                      json.dumps({"config": {"data": {"dir": "/nonexistent/dir"}}}),
                                      json.dumps({"config": {"data": {"dir": "/x", "queries": "q.tsv"}}})])
def test_pick_queries_falls_back_to_fixed_queries(tmp_path, manifest):
    run = tmp_path / "run"
    run.mkdir()
    if manifest is not None:
        (run / "manifest.json").write_text(manifest)
    assert demo._pick_queries(run, 2) == FALLBACK[:2]
    assert demo._pick_queries(run, 3) == FALLBACK


def _sample_queries() -> list[str]:
    root = Path(demo.__file__).resolve().parent.parent
    with open(root / "data" / "sample" / "queries.jsonl") as f:
        return [json.loads(line)["text"] for line in f if line.strip()]


def test_pick_queries_without_a_data_section_reads_data_sample_test_split(tmp_path):
    run = tmp_path / "run"
    run.mkdir()
    (run / "manifest.json").write_text(json.dumps({"config": None}))
    sample = _sample_queries()
    root = Path(demo.__file__).resolve().parent.parent / "data" / "sample"
    test_ids = list(demo._held_out_qrels(root, "test"))
    assert len(test_ids) == 40 and len(sample) == 111
    picked = demo._pick_queries(run, 3)
    assert len(picked) == 3 and set(picked) <= set(sample)
    assert picked[2] == "is the pale crinkly layer on top of my homemade pickles dangerous"  # q075, a test query


def _write_qrels(data_dir: Path, split: str, qids: list[str]) -> None:
    (data_dir / "qrels").mkdir(exist_ok=True)
    rows = ["query-id\tcorpus-id\tscore"] + [f"{q}\td{i}\t1" for i, q in enumerate(qids)]
    (data_dir / "qrels" / f"{split}.tsv").write_text("\n".join(rows) + "\n")


def test_pick_queries_prefers_the_test_split(tmp_path):
    run = _run_with_data(tmp_path, 10)
    # q7 twice (two judged docs), q99 not in the query file: skipped; file order kept
    _write_qrels(tmp_path / "data", "test", ["q9", "q7", "q7", "q99", "q5", "q1"])
    assert demo._pick_queries(run, 2) == ["query 9", "query 5"]
    assert demo._pick_queries(run, 10) == ["query 9", "query 7", "query 5", "query 1"]


def test_pick_queries_reads_the_configured_test_split(tmp_path):
    run = _run_with_data(tmp_path, 6, data={"dir": str(tmp_path / "data"), "test_split": "heldout"})
    _write_qrels(tmp_path / "data", "test", ["q0"])
    _write_qrels(tmp_path / "data", "heldout", ["q4", "q2"])
    assert demo._pick_queries(run, 3) == ["query 4", "query 2"]


def test_pick_queries_uses_every_query_when_the_split_matches_none(tmp_path):
    run = _run_with_data(tmp_path, 4)
    _write_qrels(tmp_path / "data", "test", ["other"])
    assert demo._pick_queries(run, 2) == ["query 0", "query 2"]
    assert demo._judged(run, ["query 0"]) == {}


def test_judged_reads_the_relevant_docs_of_held_out_queries(tmp_path):
    run = _run_with_data(tmp_path, 4)
    (tmp_path / "data" / "qrels").mkdir()
    (tmp_path / "data" / "qrels" / "test.tsv").write_text(
        "query-id\tcorpus-id\tscore\nq1\td1\t1\nq1\td2\t2\nq1\td3\t0\nq3\td9\t1\n")
    # score 0 is judged not relevant; a query outside the split has no judgement
    assert demo._judged(run, ["query 1", "query 2", "query 3"]) == {"query 1": {"d1", "d2"}, "query 3": {"d9"}}
    assert demo._judged(tmp_path / "nothing", ["query 1"]) == {}


def test_pick_queries_bad_rows_fall_back(tmp_path):
    run = _run_with_data(tmp_path, 2)
    with open(tmp_path / "data" / "queries.jsonl", "a") as f:
        f.write(json.dumps({"_id": "no text"}) + "\n")  # KeyError
    assert demo._pick_queries(run, 2) == FALLBACK[:2]


def test_cli_passes_its_arguments_to_main(monkeypatch):
    calls = []
    monkeypatch.setattr(demo, "main", lambda *a, **kw: calls.append((a, kw)) or 0)
    assert demo.cli(["runs/x"]) == 0
    assert demo.cli(["runs/y", "--port", "9001", "--no-rerank", "-q", "one", "--query", "two"]) == 0
    assert calls == [(("runs/x",), {"queries": None, "port": 8000, "rerank": True}),
                     (("runs/y",), {"queries": ["one", "two"], "port": 9001, "rerank": False})]
    with pytest.raises(SystemExit):
        demo.cli([])


@pytest.fixture
def stubbed(monkeypatch):
    """deploy / shutdown / query_demo replaced: records what main asks of them."""
    log = []

    def deploy(run_dir, rerank=False, host=None, port=None):
        log.append(("deploy", str(run_dir), rerank, host, port))
        return f"http://{host}:{port}"

    def query_demo(url, queries, k=3, rerank=None, judged=None):
        log.append(("query", url, list(queries), k, rerank))
        log.append(("judged", judged))
        if queries == ["boom"]:
            raise RuntimeError("query failed")

    monkeypatch.setattr(serve.app, "deploy", deploy)
    monkeypatch.setattr(serve.app, "shutdown", lambda: log.append(("shutdown",)))
    monkeypatch.setattr(serve.client, "query_demo", query_demo)
    return log


def test_main_deploys_queries_and_shuts_down(tiny_run, stubbed, capsys):
    run = str(tiny_run["run_dir"])
    assert demo.main(run, queries=["a", "b"], port=8123, k=2) == 0
    assert stubbed == [("deploy", run, True, "127.0.0.1", 8123),
                       ("query", "http://127.0.0.1:8123", ["a", "b"], 2, True), ("judged", {}), ("shutdown",)]
    assert "no docs.parquet" not in capsys.readouterr().out
    stubbed.clear()
    with pytest.raises(RuntimeError, match="query failed"):
        demo.main(run, queries=["boom"], rerank=False)
    assert stubbed[0][2] is False and stubbed[-1] == ("shutdown",)  # shut down even when the queries fail


def test_main_without_corpus_text_serves_without_the_reranker(tiny_run, stubbed, tmp_path, capsys):
    run = tmp_path / "nodocs"
    shutil.copytree(tiny_run["run_dir"], run)
    (run / "index" / "docs.parquet").unlink()
    assert demo.main(run, queries=["a"]) == 0
    assert "no docs.parquet (no corpus text): serving without the reranker" in capsys.readouterr().out
    assert (stubbed[0][2], stubbed[1][4]) == (False, False)  # deploy and query_demo without the reranker
    stubbed.clear()
    assert demo.main(run) == 0  # no queries given: the run's manifest names no data dir, so data/sample's
    assert stubbed[1][2] == demo._pick_queries(run, demo.DEFAULT_QUERIES)  # test queries
    assert len(stubbed[1][2]) == demo.DEFAULT_QUERIES and set(stubbed[1][2]) <= set(_sample_queries())
    pickles = "is the pale crinkly layer on top of my homemade pickles dangerous"
    assert len(stubbed[2][1]) == 3 and stubbed[2][1][pickles] == {"d0200"}  # each held-out query's judged docs
    out = capsys.readouterr().out
    assert "3 of the 3 queries are from the test split (no stage trained on them); * marks" in out
