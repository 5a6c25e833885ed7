"""The serving half of ``make demo``: start the app on a run directory, query it over real HTTP with
and without reranking, print the results, shut down.

``python -m serve.demo RUN_DIR [--port 8000] [--no-rerank]`` or ``serve.demo.main("runs/demo")``.
"""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path

DEFAULT_QUERIES = 3


FALLBACK_QUERIES = ["how do volcanoes erupt", "what causes inflation", "rules of offside in football"]


def _positive(score: str) -> bool:
    try:
        return float(score) > 0
    except ValueError:
        return False


def _held_out_qrels(data_dir: Path, split: str) -> dict[str, set[str]]:
    """``qrels/<split>.tsv`` in ``data_dir`` (BEIR layout): query id -> its judged-relevant doc ids (score > 0),
    queries in file order; {} when the file is absent."""
    path = data_dir / "qrels" / f"{split}.tsv"
    out: dict[str, set[str]] = {}
    if path.is_file():
        with open(path) as f:
            for line in f:
                parts = line.rstrip("\n").split("\t")
                if len(parts) >= 2 and parts[0] and parts[0] != "query-id":
                    rel = out.setdefault(parts[0], set())
                    if len(parts) < 3 or _positive(parts[2]):
                        rel.add(parts[1])
    return out


def _demo_queries(run_dir: Path) -> tuple[list[str], dict[str, set[str]]] | None:
    """The queries to spread the demo over: those of the run's test split (qrels/<test_split>.tsv beside
    config.data.dir/queries.jsonl: queries no stage trained on) when it has any, else every query; with the
    judged-relevant doc ids of each held-out query text. None when the run's data cannot be read."""
    import json

    from serve.app import resolve_run_dir

    try:
        manifest = json.loads((resolve_run_dir(run_dir) / "manifest.json").read_text())
        data = (manifest.get("config") or {}).get("data") or {}
        qpath = Path(data.get("dir") or "data/sample") / data.get("queries", "queries.jsonl")
        if not qpath.is_absolute() and not qpath.exists():
            qpath = Path(__file__).resolve().parent.parent / qpath
        if not (qpath.is_file() and qpath.suffix == ".jsonl"):
            return None
        with open(qpath) as f:
            rows = [json.loads(line) for line in f if line.strip()]
        texts = {str(r.get("_id")): r["text"] for r in rows}
        qrels = _held_out_qrels(qpath.parent, data.get("test_split", "test"))
        held_out = [q for q in qrels if q in texts]
        if not held_out:
            return [r["text"] for r in rows], {}
        return [texts[q] for q in held_out], {texts[q]: qrels[q] for q in held_out}
    except (OSError, ValueError, KeyError, AttributeError):
        return None


def _pick_queries(run_dir: Path, n: int) -> list[str]:
    """``n`` queries spread evenly over _demo_queries (the run's held-out queries); fixed ones otherwise."""
    found = _demo_queries(run_dir)
    if not found or not found[0]:
        return FALLBACK_QUERIES[:n]
    qs = found[0]
    return qs[:: max(1, len(qs) // n)][:n]


def _judged(run_dir: Path, queries: list[str]) -> dict[str, set[str]]:
    """The judged-relevant doc ids of those of ``queries`` that are held-out queries of the run's data."""
    found = _demo_queries(run_dir)
    return {q: found[1][q] for q in queries if q in found[1]} if found else {}


def main(
    run_dir: str | Path,
    queries: list[str] | None = None,
    port: int = 8000,
    host: str = "127.0.0.1",
    rerank: bool = True,
    k: int = 3,
) -> int:
    """Deploy ``run_dir`` (with the reranker when ``rerank`` and the run has corpus text), query it,
    print, shut Serve (and the Ray it started) down. Returns 0 on success."""
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    from serve.app import deploy, resolve_run_dir, shutdown
    from serve.client import query_demo
    from serve.core import RunArtifacts

    art = RunArtifacts.load(resolve_run_dir(run_dir))
    if rerank and art.docs is None:
        print("note: the index has no docs.parquet (no corpus text): serving without the reranker")
        rerank = False
    queries = queries or _pick_queries(Path(run_dir), DEFAULT_QUERIES)
    judged = _judged(Path(run_dir), queries)
    if judged:
        print(f"{len(judged)} of the {len(queries)} queries are from the test split (no stage trained on them); "
              "* marks a passage judged relevant")
    try:
        url = deploy(run_dir, rerank=rerank, host=host, port=port)
        query_demo(url, queries, k=k, rerank=rerank, judged=judged)
    finally:
        shutdown()
    return 0


def cli(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m serve.demo", description=__doc__.split("\n\n")[0])
    p.add_argument("run_dir")
    p.add_argument("--port", type=int, default=8000)
    p.add_argument("--no-rerank", action="store_true")
    p.add_argument("-q", "--query", action="append", help="a query to send (repeatable)")
    a = p.parse_args(argv)
    return main(a.run_dir, queries=a.query, port=a.port, rerank=not a.no_rerank)


if __name__ == "__main__":
    sys.exit(cli())
