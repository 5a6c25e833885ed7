"""The run directory's layout: the one place that names what a run leaves under ``runs/<name>/``.

The pipeline (distill.manifest, distill.pipeline, distill.cli, distill.sweep, distill.stages.rounds) reads
its names here, and so can ``serve/`` (which only reads a run). Every name is relative to the run
directory; round r > 1 of an iterative run keeps its stages' outputs under :func:`round_dir` with the same
names. Nothing here imports more than the standard library (resolving the teacher imports distill.models
when called).
"""

from __future__ import annotations

MANIFEST = "manifest.json"
LOCK = "run.lock"
LOG = "run.log"
REJECTS = "rejects.jsonl"
SCORE_IMPORT_REJECTS = "score_import_rejects.jsonl"

# stage -> the folder holding its output
STAGE_DIRS = {
    "teacher": "teacher_model",
    "mine": "candidates",
    "score": "teacher",
    "train": "student",
    "encode": "embeddings",
    "index": "index",
    "evaluate": "eval",
}
CANDIDATES = "candidates.parquet"  # in STAGE_DIRS["mine"]
ZEROSHOT = "zeroshot"  # in STAGE_DIRS["mine"]: the zero-shot student's corpus embeddings
SCORES = "scores.parquet"  # in STAGE_DIRS["score"]
DOCS = "docs.parquet"  # in STAGE_DIRS["index"]: docid, title, text
REPORT_JSON = "report.json"  # in STAGE_DIRS["evaluate"] and ROUNDS_DIR
REPORT_MD = "report.md"
PER_QUERY = "per_query.json"  # in STAGE_DIRS["evaluate"]: each system's metrics per query (paired tests)
ROUNDS_DIR = "rounds"  # every round's metrics (distill.stages.rounds)
SWEEP_DIR = "sweep"  # the sweep's runs and table (distill.sweep)
SWEEP_TABLE_MD = "table.md"
SWEEP_TABLE_JSON = "table.json"
CACHE = "cache"  # teacher scores of evaluation pairs, by teacher (distill.pair_cache)


def stage_dir(stage: str) -> str:
    """The folder of ``stage``'s output (a stage without an entry: its own name)."""
    return STAGE_DIRS.get(stage, stage)


def round_dir(r: int) -> str:
    """The folder of round ``r`` > 1's outputs."""
    return f"round-{r}"


def partial_dir(stage: str) -> str:
    """The folder of a stage's finished shards while it has not finished (distill.partial)."""
    return f".{stage_dir(stage)}.partial"


def teacher_dir(rd) -> str:
    """Where scoring, encoding (an asymmetric student) and evaluation load the teacher from: the fine-tuned
    teacher's folder, "" for an ensemble (its members have their own: distill.ensemble.member_specs), else
    ``teacher.model`` resolved (the same as distill.stages.teacher.teacher_path)."""
    cfg = rd.config
    if cfg.teacher.finetunes:
        return str(rd.stage_path("teacher").resolve())
    if cfg.teacher.kind == "ensemble":
        return ""
    from distill.models import resolve_model

    return resolve_model(cfg.teacher.model)
