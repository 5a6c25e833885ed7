"""The offline pipeline: teacher -> mine -> score -> train -> encode -> index -> evaluate.

Each stage is skipped when the manifest lists it as finished with the same digest (config sections and
input-file checksums) and its output exists; a stage that runs invalidates every stage that reads its
output, directly or not (their inputs changed; ``mine`` does not read the teacher: distill.manifest.STAGE_READS). The run holds ``run.lock`` in its directory throughout (distill.manifest.RunLock). With
``rounds: N`` rounds 2..N repeat mine -> score -> train -> encode -> index -> evaluate under
``round-<r>/`` (distill.stages.rounds); an interrupted run resumes in the round it stopped in.

The stages come from one table (``distill.stages.RUNNERS``: ``run(rd, data) -> counts`` each); this module
walks it and knows no stage by name. A sweep (distill.sweep) drives this module from outside:
:func:`holding`, :func:`load_logged` and :func:`run_stages` are what it and :func:`run_pipeline` share.

Every line the driver logs is printed (``log``, default ``print``) and copied to the standard ``logging``
logger ``distill.pipeline``; while a run holds its directory, a ``logging.FileHandler`` on the ``distill``
logger appends those records (and any other ``distill.*`` logger's, INFO and up) to ``<run_dir>/run.log``.
"""

from __future__ import annotations

import contextlib
import logging
import time
from pathlib import Path

from distill import layout
from distill.config import RunConfig
from distill.data import carve_dev, read_beir
from distill.manifest import RunDir, input_files

LOG_FILE = layout.LOG
logger = logging.getLogger(__name__)


def logged(log):
    """``log`` that also hands each line to the ``distill.pipeline`` logger (once: a ``log`` it returned
    is returned as is, so a sweep's nested runs do not record lines twice)."""
    if getattr(log, "copies_to_logging", False):
        return log

    def out(msg: str) -> None:
        log(msg)
        logger.info(msg)

    out.copies_to_logging = True
    return out


@contextlib.contextmanager
def run_log(path: str | Path):
    """Append the ``distill`` logger's records (INFO and up) to ``path`` while the block runs: a
    ``logging.FileHandler`` attached for the block and closed after it; an exception that ends the block
    is recorded (with its traceback) before it propagates."""
    root = logging.getLogger("distill")
    handler = logging.FileHandler(path, encoding="utf-8")
    handler.setLevel(logging.INFO)
    handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s"))
    level = root.level
    if root.getEffectiveLevel() > logging.INFO:
        root.setLevel(logging.INFO)
    root.addHandler(handler)
    try:
        yield handler
    except BaseException as err:
        logger.error("[run] stopped by %s: %s", type(err).__name__, err, exc_info=not isinstance(err, KeyboardInterrupt))
        raise
    finally:
        root.removeHandler(handler)
        root.setLevel(level)
        handler.close()


def load_data(rd: RunDir):
    c = rd.config.data
    splits = tuple(dict.fromkeys(s for s in (c.train_split, c.test_split) if not (c.dev_queries and s == "dev")))
    # checksums first: a file edited while it is read then fails the next run's digest check, not this one's
    rd.record_inputs([p for paths in input_files(rd.config).values() for p in paths if p.exists()])
    if c.format == "beir":
        data = read_beir(c.dir, c.corpus, c.queries, splits, c.max_reject_share, rejects_path=rd.path / layout.REJECTS)
    else:  # parquet, a Hugging Face dataset, an ir_datasets id: the same row checks (distill.sources)
        from distill.sources import read_source

        data = read_source(c, splits, rejects_path=rd.path / layout.REJECTS)
    if c.dev_queries:
        carve_dev(data, c.train_split, c.dev_queries, rd.config.seed)
    rd.manifest["data"] = {"rows": data.row_counts, "rejects": data.rejects.counts()}
    return data


def run_stage(rd: RunDir, data, stage: str) -> dict:
    """Run one stage: its ``run(rd, data)`` from the table in :mod:`distill.stages`."""
    from distill.stages import runner

    return runner(stage)(rd, data)


def run_pipeline(cfg: RunConfig, only: list[str] | None = None, force: bool = False, log=print) -> RunDir:
    """Run the configured stages (``only``: these). The run directory is locked while this runs (a second
    run of it fails at once: distill.manifest.RunLock), and its log lines are appended to
    ``<run_dir>/run.log`` (:func:`run_log`) as well as passed to ``log``. A sweep (``cfg.sweep``) is not
    run here: :func:`distill.sweep.run_with_sweep` runs this, then the sweep."""
    rd = RunDir(cfg)
    log = logged(log)
    with holding(rd, log, only, force):
        run_stages(rd, load_logged(rd, log), only, force, log)
    return rd


@contextlib.contextmanager
def holding(rd: RunDir, log, only: list[str] | None = None, force: bool = False, announce: bool = True):
    """Hold ``rd``'s lock and copy the ``distill`` logger's records to ``<run_dir>/run.log`` while the block
    runs; ``log`` is a :func:`logged` one. ``announce``: log where the run directory is (a sweep's own runs
    do not)."""
    cfg = rd.config
    with rd.locked(log), run_log(rd.path / LOG_FILE):
        from distill import __version__

        logger.info("ray-distill %s: run %s, stages %s%s", __version__, cfg.name, ", ".join(only or cfg.stages),
                    " (forced)" if force else "")
        if announce:
            log(f"[run] {cfg.name}: run directory {rd.path}")
        yield rd


def load_logged(rd: RunDir, log):
    """:func:`load_data`, and a log line of the rows read and rejected."""
    data = load_data(rd)
    rej = data.rejects.counts()
    log(f"[data] {data.row_counts}" + (f"; rejected {rej} (see {rd.path / layout.REJECTS})" if rej else ""))
    return data


def run_stages(rd: RunDir, data, only: list[str] | None, force: bool, log) -> None:
    """Every wanted stage of every round that is not finished, in order (a held ``rd``: :func:`holding`);
    then the rounds report (``rounds: N``) and the manifest's ``final_round``."""
    cfg = rd.config
    wanted = only or cfg.stages
    for r in range(1, cfg.rounds + 1):
        view = rd.for_round(r)
        for stage in view.stage_order:
            if stage in wanted:
                _run_one(view, data, stage, force, log)
    if cfg.rounds > 1 and "evaluate" in wanted:
        from distill.stages.rounds import REPORT_DIR, write_report

        report = write_report(rd)
        rd.manifest["rounds_report"] = {"path": f"{REPORT_DIR}/report.json",
                                        "rounds": [row["round"] for row in report["rounds"]]}
        log(f"[rounds] metrics per round in {rd.path / REPORT_DIR}")
    rd.manifest["final_round"] = rd.final_round()
    rd.save()


def _run_one(view: RunDir, data, stage: str, force: bool, log) -> None:
    """Run ``stage`` of one round's view unless it is finished (a shared stage is kept even when forced)."""
    name = stage if view.round == 1 else f"round-{view.round}/{stage}"
    if view.is_done(stage) and (not force or view.stages[stage].get("shared_from")):
        log(f"[{name}] already finished, skipped ({view.stages[stage]['counts']})")
        return
    t0 = time.perf_counter()
    view.invalidate_from(stage)
    counts = run_stage(view, data, stage)
    view.stages[stage]["seconds"] = round(time.perf_counter() - t0, 1)
    view.save()
    shown = {k: v for k, v in counts.items() if k != "metrics"} if isinstance(counts, dict) else counts
    log(f"[{name}] done in {time.perf_counter() - t0:.1f}s: {shown if stage != 'evaluate' else ''}")
