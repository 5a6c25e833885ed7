"""Stage ``train``: Ray Train ``TorchTrainer`` distils the student (DeepSpeed ZeRO or plain DDP).

Each step takes B queries per worker; each query brings a group of K candidates: one judged positive
(column 0) and K-1 negatives sampled from its mined candidates, with the teacher's raw logits. The
student scores s = sim(E(q), E(d)); the loss is

    w_kl * KL(softmax(t/T_t) || softmax(s/T_s)) + w_mm * MarginMSE + w_mse * MSE
    + w_nce * InfoNCE(q, all documents of the step gathered from every worker)
    + w_emb * embedding matching + w_lead * LEAD

Batches are a pure function of (seed, global step), so a worker restarted from a checkpoint (Ray's
``FailureConfig``) or a re-run of the driver continues the same sequence from the saved step.

The parts, Tevatron-style: the model is distill.pair_model.PairModel, batch assembly distill.collator,
the losses distill.losses (one signature, summed by distill.losses.combine), the DeepSpeed/DDP backend
distill.train_engine, and the Ray Train plumbing (schedule, checkpoints, resume, trainer) distill.raytrain.
This module holds the training groups, the loop itself and the stage's ``run``.
"""

from __future__ import annotations

import json
import time
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq

from distill import raytrain
from distill.collator import Collator, assemble, sample_group
from distill.faults import Fault, train_step_from_env
from distill.progress import Progress
from distill.raytrain import EXPORT_DIR, STATE_FILE, latest_checkpoint, step_indices
from distill.train_engine import TrainEngine

STARTS_LOG = "starts.jsonl"  # train_work/: {"start_step", "total", "from": scratch|driver|ray|storage} per start
__all__ = ["EXPORT_DIR", "STATE_FILE", "STARTS_LOG", "build_groups", "fit", "latest_checkpoint", "loop_config", "run",
           "sample_group", "step_indices", "train_loop", "unlabelled_policy", "withhold_labels"]


# ---- data ----------------------------------------------------------------------------------------------
def build_groups(scores: pd.DataFrame, queries: dict[str, str], doc_text, unlabelled: str = "drop") -> pd.DataFrame:
    """One row per query with at least one positive and one negative: texts, teacher logits, labels. A query
    with no judged positive among its candidates is dropped, or (``unlabelled="teacher_top"``) its teacher's
    top candidate takes the positive slot (``pseudo``: True)."""
    rows = []
    for qid, g in scores.groupby("qid", sort=True):
        labels = g["label"].to_numpy(np.int8)
        pseudo = False
        if labels.sum() == 0 and unlabelled == "teacher_top" and len(labels) > 1:
            labels = np.zeros_like(labels)
            labels[int(np.argmax(g["teacher_score"].to_numpy()))] = 1
            pseudo = True
        if labels.sum() == 0 or labels.sum() == len(labels):
            continue
        row = {"qid": qid, "query": queries[qid], "docs": [doc_text(d) for d in g["docid"]],
               "scores": g["teacher_score"].astype(np.float32).tolist(), "labels": labels.tolist(), "pseudo": pseudo}
        if "teacher_q_emb" in g:  # EmbedDistill targets, one pair of vectors per candidate
            row["q_embs"] = [np.asarray(v, np.float32).tolist() for v in g["teacher_q_emb"]]
            row["d_embs"] = [np.asarray(v, np.float32).tolist() for v in g["teacher_d_emb"]]
        if "teacher_layer_scores" in g:  # LEAD targets: per candidate, one score per teacher layer
            row["layer_scores"] = [np.asarray(v, np.float32).tolist() for v in g["teacher_layer_scores"]]
        rows.append(row)
    return pd.DataFrame(rows)


def withhold_labels(scores: pd.DataFrame, share: float, seed: int) -> tuple[pd.DataFrame, list[str]]:
    """Keep the judgements of round(share x n) of the n labelled training queries (drawn with ``seed`` from
    the sorted ids; generated ``gen:`` queries always keep theirs). Each other query loses its labels: its
    rows are set to label 0 and the positives that only the qrels put among its candidates (``source ==
    "qrels"``) are removed, so its candidates are what mining found without labels. Returns the scores and
    the unlabelled query ids. The draw is distill.label_budget.kept_queries, the teacher's too."""
    from distill.label_budget import kept_queries

    if share >= 1:
        return scores, []
    real = sorted(q for q in scores.loc[scores["label"] > 0, "qid"].unique() if not str(q).startswith("gen:"))
    keep = kept_queries(real, share, seed)
    gone = [q for q in real if q not in keep]
    hit = scores["qid"].isin(set(gone))
    out = scores[~(hit & (scores["source"] == "qrels"))].copy()
    out.loc[out["qid"].isin(set(gone)), "label"] = 0
    return out.reset_index(drop=True), gone


def unlabelled_policy(training_cfg) -> str:
    """``training.unlabelled`` resolved: auto is teacher_top when a teacher-signal loss is on, else drop."""
    if training_cfg.unlabelled != "auto":
        return training_cfg.unlabelled
    w = training_cfg.losses
    return "teacher_top" if w.kl + w.margin_mse + w.mse + w.embedding + w.lead > 0 else "drop"


# ---- the training loop (runs on every Ray Train worker) -------------------------------------------------
def _setup(config: dict, groups: pd.DataFrame, rank: int, world: int):
    """The step's parts, built in a fixed order (torch's random draws): the student, its PairModel, the
    collator and the enabled losses. Returns (model, collator, losses)."""
    from distill.losses import build_losses
    from distill.losses.lead import default_layer_map
    from distill.models import DualEncoder
    from distill.pair_model import PairModel

    w = config["losses"]
    student = DualEncoder(**config["student"])
    asym = config["asymmetric"]  # documents keep the teacher's embeddings; only queries are encoded
    if asym and student.dim != len(groups["d_embs"].iloc[0][0]):
        raise ValueError(f"asymmetric student width {student.dim} != teacher width {len(groups['d_embs'].iloc[0][0])}")
    use_emb = (bool(w.get("embedding")) or asym) and "q_embs" in groups
    use_lead = bool(w.get("lead")) and "layer_scores" in groups
    layer_map = None
    if use_lead:
        t_layers = len(groups["layer_scores"].iloc[0][0])
        layer_map = [tuple(p) for p in config["lead"]["layer_map"]] if config["lead"]["layer_map"] else \
            default_layer_map(student.num_layers, t_layers)
    model = PairModel(student, len(groups["q_embs"].iloc[0][0]) if use_emb and not asym else None)
    collate = Collator(groups, config["group_size"], student.tokenize, embeddings=use_emb, asymmetric=asym,
                       layer_map=layer_map, pairs_per_step=config["lead"]["pairs_per_step"])
    losses = build_losses(w, teacher_temperature=config["teacher_temperature"],
                          student_temperature=config["student_temperature"], embedding_mode=config["embedding_mode"],
                          gather=lambda x: raytrain.gather(x, world), rank=rank,
                          lead_weights={int(k): v for k, v in config["lead_weights"].items()},
                          lead_temperature=config["lead"]["temperature"],
                          available={"embedding": use_emb, "lead": use_lead})
    return model, collate, losses


def _resume(engine, config: dict, rank: int, total: int) -> int:
    """Load the newest complete checkpoint of the three sources (distill.raytrain.resume_point); rank 0
    records the start in ``starts.jsonl``. Returns the step to start at."""
    source, ckpt_dir = raytrain.resume_point(config)
    start = 0
    if ckpt_dir:
        state = raytrain.read_state(ckpt_dir)
        start = state["step"]
        engine.load(ckpt_dir, state)
    if rank == 0:
        raytrain.log_start(config.get("starts_log"), start, total, source)
    return start


def _tracker(config: dict, rank: int):
    """Rank 0's metrics tracker (distill.tracking: TensorBoard by default, MLflow, W&B), or None."""
    if rank != 0 or not config.get("log_every") or not config.get("tracking"):
        return None
    from distill.tracking import Tracker

    return Tracker(config["tracking"], config.get("tensorboard_dir"), config.get("run_name") or "train",
                   {k: v for k, v in config.items() if k in ("lr", "queries_per_batch", "group_size", "seed",
                                                              "backend", "epochs", "max_steps")})


def _save(engine, rank: int, world: int, step: int, total: int, metrics: dict, final: bool) -> None:
    """Checkpoint the training state at ``step`` (the final one also holds the exported student)."""

    def write(tmp: Path) -> dict:
        extra = engine.save(tmp, rank)
        if rank == 0 and final:
            engine.module.encoder.save(tmp / EXPORT_DIR)
        return extra

    raytrain.report_checkpoint(metrics, {"step": step, "total": total, "world": world}, write,
                               engine.has_files(rank), rank, world)


def _train_step(engine, collate, losses, weights: dict, idx, rng, log_lr: bool, precision: str = "fp32"):
    """One optimisation step: (loss, {name: term}, learning rate of this step or nan). ``precision`` bf16: the
    forward runs under autocast (bf16 matmuls, fp32 weights); the losses see fp32 vectors (assemble)."""
    from distill.losses import weighted_sum
    from distill.precision import autocast

    f = collate(idx, rng)
    with autocast(precision, engine.device):
        outputs = engine(f.q_in, f.d_in, f.layer_pairs is not None)
    batch = assemble(outputs, f, engine.module.proj, collate.asymmetric)
    loss, terms = weighted_sum(losses, weights, batch)
    lr = engine.lr() if log_lr else float("nan")
    engine.step(loss)
    return loss, terms, lr


def train_loop(config: dict) -> None:
    rank, world = raytrain.start_worker(config["threads"], config["seed"], per_rank_seed=True)
    groups = pq.read_table(config["groups_path"]).to_pandas()
    B = config["queries_per_batch"]
    steps_per_epoch = raytrain.epoch_steps(len(groups), B, world)
    total = config["max_steps"] or steps_per_epoch * config["epochs"]
    model, collate, losses = _setup(config, groups, rank, world)
    engine = TrainEngine(model, config, total)
    collate.device = engine.device
    start = _resume(engine, config, rank, total)
    engine.train()
    step_seconds: list[float] = []  # wall time of each step's compute (batch build to optimizer step)
    progress = Progress("train", total, rank, start)
    log_every = config.get("log_every") or 0
    tracker = _tracker(config, rank)
    fault = Fault(config.get("fault") if rank == 0 else None)  # tests only: a worker dies after a step
    for step in range(start, total):
        t_step = time.perf_counter()
        idx = raytrain.step_indices(len(groups), step, steps_per_epoch, B, world, rank, config["seed"])
        rng = np.random.default_rng([config["seed"], step, rank])
        logs_now = bool(log_every) and ((step + 1) % log_every == 0 or step + 1 == total)
        loss, terms, lr = _train_step(engine, collate, losses, config["losses"], idx, rng, logs_now,
                                      config["precision"])
        step_seconds.append(time.perf_counter() - t_step)
        metrics = {"step": step + 1, "loss": float(loss.detach()), **{k: float(v.detach()) for k, v in terms.items()},
                   # median over this attempt's steps after the first (which pays lazy initialisation)
                   "step_seconds": float(np.median(step_seconds[1:] or step_seconds)),
                   "step_time": step_seconds[-1], **({"lr": lr} if logs_now else {})}  # lr: this step's
        progress.step(step + 1, metrics["loss"])
        done = step + 1 == total
        checkpoint_now = done or (step + 1) % config["checkpoint_every"] == 0
        if logs_now:
            if tracker is not None:
                tracker.log(metrics, step + 1)
            if not checkpoint_now:  # metrics only; a checkpoint step reports them with its checkpoint
                _report(metrics)
        if checkpoint_now:
            _save(engine, rank, world, step + 1, total, metrics, final=done)
        fault.hit(at=step + 1)
    if start >= total:  # resumed after the last step: export again so the driver finds the student
        _save(engine, rank, world, total, total, {"step": total, "loss": float("nan")}, final=True)
    if tracker is not None:
        tracker.close()
    raytrain.barrier(world)


def _report(metrics: dict) -> None:
    import ray.train

    ray.train.report(metrics)


# ---- driver side ---------------------------------------------------------------------------------------
def loop_config(cfg, groups_path: Path, student_model: str, resume_from: str | None,
                teacher_dim: int | None = None) -> dict:
    """The train loop's settings. An asymmetric student's query encoder outputs ``teacher_dim`` vectors
    (``student.output_dim`` unless set), so it searches the teacher's document index directly."""
    t = cfg.training
    from distill.models import resolve_model
    from distill.precision import for_stage

    fault = train_step_from_env(str(groups_path.parent / "fault.once"))  # tests only (distill/faults.py)
    return {
        "groups_path": str(groups_path), "resume_from": resume_from, "fault": fault,
        "starts_log": str(groups_path.parent / STARTS_LOG),
        "student": {**cfg.student.model_dump(), "model": resolve_model(student_model),  # DualEncoder kwargs
                    **({"output_dim": cfg.student.output_dim or teacher_dim} if t.asymmetric else {})},
        "backend": t.backend, "zero_stage": t.zero_stage, "use_gpu": t.use_gpu,
        "precision": for_stage(cfg, "train", warn=True),  # auto resolved here: fp32 | bf16 (autocast)
        "threads": max(1, int(t.cpus_per_worker)), "seed": t.seed, "epochs": t.epochs, "max_steps": t.max_steps,
        "lr": t.learning_rate, "warmup_ratio": t.warmup_ratio, "weight_decay": t.weight_decay,
        "queries_per_batch": t.queries_per_batch, "group_size": t.group_size,
        "teacher_temperature": t.teacher_temperature, "student_temperature": t.student_temperature,
        "losses": t.losses.model_dump(), "embedding_mode": t.embedding_mode, "checkpoint_every": t.checkpoint_every,
        "lead": t.lead.model_dump(), "lead_weights": {}, "asymmetric": t.asymmetric,
        "log_every": t.log_every, "tracking": list(t.tracking), "run_name": cfg.name,
    }


def fit(cfg, groups_path: Path, storage: Path, name: str, student_model: str, lead_weights: dict | None = None,
        teacher_dim: int | None = None, tracking_dir: Path | None = None):
    """Run the TorchTrainer; returns its result (the final checkpoint holds the exported student). Rank 0
    writes TensorBoard event files into ``tracking_dir`` (training.tracking, every training.log_every steps)."""
    from distill.raycluster import ensure_ray

    ensure_ray(cfg.ray)
    t = cfg.training
    loop_cfg = loop_config(cfg, groups_path, student_model, latest_checkpoint(storage / name), teacher_dim)
    loop_cfg["lead_weights"] = {str(k): v for k, v in (lead_weights or {}).items()}
    loop_cfg["checkpoint_root"] = str((storage / name).resolve())  # workers resume from the newest one there
    if tracking_dir is not None:
        from distill.tracking import check_backends

        check_backends(t.tracking)  # an optional backend asked for but not installed fails here, before Ray Train
        loop_cfg["tensorboard_dir"] = str(Path(tracking_dir).resolve())
    trainer = raytrain.make_trainer(train_loop, loop_cfg, name=name, storage=storage, num_workers=t.num_workers,
                                    cpus_per_worker=t.cpus_per_worker, use_gpu=t.use_gpu,
                                    keep_checkpoints=t.keep_checkpoints, max_failures=t.max_failures)
    result = trainer.fit()
    if result.checkpoint is None:
        raise RuntimeError("training finished without a checkpoint")
    return result


def _lead_weights(scores: pd.DataFrame, cfg) -> dict | None:
    """LEAD's teacher-layer weights from the stored per-layer scores (None without them)."""
    if "teacher_layer_scores" not in scores:
        return None
    from distill.losses.lead import layer_weights

    return layer_weights(np.stack(scores["teacher_layer_scores"].to_numpy()), scores["label"].to_numpy(),
                         scores["qid"].to_numpy(), cfg.training.lead.temperature)


def _teacher_dim(scores: pd.DataFrame, cfg) -> int | None:
    """The teacher's width an asymmetric student's query encoder must output (None otherwise)."""
    if not cfg.training.asymmetric:
        return None
    if "teacher_d_emb" not in scores:
        raise RuntimeError("train: training.asymmetric needs the teacher's document embeddings in the scores "
                           "(scoring.store_embeddings: true, re-run the score stage)")
    return len(scores["teacher_d_emb"].iloc[0])


def run(rd, data) -> dict:
    """Stage ``train``: groups from the teacher's scores (and the generated queries ``mine`` kept), the
    student distilled on Ray Train, exported into the stage's output."""
    from distill.stages.mine import add_generated_queries

    add_generated_queries(rd, data)  # idempotent: the pipeline's adapter may have done it already
    cfg = rd.config
    scores = pq.read_table(rd.stage_path("score") / "scores.parquet").to_pandas()
    scores, withheld = withhold_labels(scores, cfg.training.label_share, cfg.seed)
    groups = build_groups(scores, data.queries, data.doc_text, unlabelled_policy(cfg.training))
    if len(groups) == 0:
        raise RuntimeError("train: no query has both a positive and a negative candidate")
    work = rd.path / "train_work"
    work.mkdir(exist_ok=True)
    groups_path = work / "groups.parquet"
    pq.write_table(pa.Table.from_pandas(groups, preserve_index=False), groups_path)
    name = f"train-{rd.digest('train')}"  # config and input checksums: changed inputs never resume old checkpoints
    lead_weights = _lead_weights(scores, cfg)
    resumed = latest_checkpoint(work / "checkpoints" / name)
    resumed_step = raytrain.read_state(resumed)["step"] if resumed else 0
    starts_log = work / STARTS_LOG
    seen = len(starts_log.read_text().splitlines()) if starts_log.exists() else 0
    teacher_dim = _teacher_dim(scores, cfg)
    result = fit(cfg, groups_path, work / "checkpoints", name, cfg.student.model, lead_weights, teacher_dim,
                 tracking_dir=rd.path / "tensorboard")
    starts = [json.loads(x)["start_step"] for x in starts_log.read_text().splitlines()[seen:]] \
        if starts_log.exists() else []
    with rd.atomic_output("train") as tmp:
        state = raytrain.copy_export(result, tmp, STATE_FILE)
    counts = {"groups": len(groups), "labels_withheld": len(withheld),
              "pseudo_labelled_groups": int(groups["pseudo"].sum()), "steps": state["step"],
              "workers": cfg.training.num_workers}
    from distill.precision import for_stage

    rd.mark_done("train", counts, precision=for_stage(cfg, "train"), resumed_from_step=resumed_step, worker_starts=starts, lead_layer_weights=lead_weights, final_metrics={k: v for k, v in (result.metrics or {}).items()
                                                 if isinstance(v, (int, float))})
    from distill.export import write_model_card

    write_model_card(rd)  # README.md in the student dir; the evaluate stage adds its metrics
    return counts
