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


def _pick_queries(run_dir: Path, n: int) -> list[str]:
    """Queries from the run's data (config.data.dir/queries.jsonl) when it is there, else fixed ones."""
    import json

    from serve.app import resolve_run_dir

    try:
        manifest = json.loads((resolve_run_dir(run_dir) / "manifest.json").read_text())
        data = (manifest.get("config") or {}).get("data") or {}
        qpath = Path(data.get("dir") or "data/sample") / data.get("queries", "queries.jsonl")
        if not qpath.is_absolute() and not qpath.exists():
            qpath = Path(__file__).resolve().parent.parent / qpath
        if qpath.is_file() and qpath.suffix == ".jsonl":
            with open(qpath) as f:
                qs = [json.loads(line)["text"] for line in f if line.strip()]
            return qs[:: max(1, len(qs) // n)][:n]
    except (OSError, ValueError, KeyError):
        pass
    return ["how do volcanoes erupt", "what causes inflation", "rules of offside in football"][:n]


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
    try:
        url = deploy(run_dir, rerank=rerank, host=host, port=port)
        query_demo(url, queries, k=k, rerank=rerank)
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
