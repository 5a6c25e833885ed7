"""Stage ``train``: Ray Train ``TorchTrainer`` distils the student (DeepSpeed ZeRO or plain DDP).

Each step takes B queries per worker; each query brings a group of K candidates: one judged positive
(column 0) and K-1 negatives sampled from its mined candidates, with the teacher's raw logits. The
student scores s = sim(E(q), E(d)); the loss is

    w_kl * KL(softmax(t/T_t) || softmax(s/T_s)) + w_mm * MarginMSE + w_mse * MSE
    + w_nce * InfoNCE(q, all documents of the step gathered from every worker)

Batches are a pure function of (seed, global step), so a worker restarted from a checkpoint (Ray's
``FailureConfig``) or a re-run of the driver continues the same sequence from the saved step.
"""

from __future__ import annotations

import json
import os
import shutil
import tempfile
import time
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq

STATE_FILE = "distill_state.json"
STARTS_LOG = "starts.jsonl"  # train_work/: {"start_step", "total", "from": scratch|driver|ray|storage} per start
EXPORT_DIR = "export"


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
    the unlabelled query ids."""
    import random

    if share >= 1:
        return scores, []
    real = sorted(q for q in scores.loc[scores["label"] > 0, "qid"].unique() if not str(q).startswith("gen:"))
    keep = set(random.Random(seed).sample(real, round(share * len(real))))
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


def sample_group(row, k: int, rng: np.random.Generator):
    """(docs, teacher scores, mask, chosen candidate indices): a random positive first, then up to k-1
    random negatives; short lists are padded with masked slots (index -1)."""
    labels = np.asarray(row["labels"])
    pos = np.flatnonzero(labels > 0)
    neg = np.flatnonzero(labels == 0)
    chosen = [int(rng.choice(pos))] + rng.choice(neg, size=min(k - 1, len(neg)), replace=False).tolist()
    docs = [row["docs"][i] for i in chosen]
    scores = [row["scores"][i] for i in chosen]
    mask = [True] * len(chosen)
    while len(docs) < k:  # pad short lists; padded slots are masked out of every loss
        docs.append("")
        scores.append(0.0)
        mask.append(False)
        chosen.append(-1)
    return docs, scores, mask, chosen


def step_indices(n: int, step: int, steps_per_epoch: int, batch: int, world: int, rank: int, seed: int):
    """Row indices for this worker at a global step: epoch-wise permutation, disjoint worker slices."""
    epoch, within = divmod(step, steps_per_epoch)
    perm = np.random.default_rng([seed, epoch]).permutation(n)
    start = (within * world + rank) * batch
    return perm[start:start + batch]


def _maybe_fail(fault: dict | None, step: int, rank: int) -> None:
    """Fault injection for tests (``DISTILL_FAIL_AT_STEP``): rank 0 dies hard after finishing ``step``,
    once (a marker file records that it happened), as a crashed or killed worker would."""
    if not fault or rank != 0 or step != fault["step"]:
        return
    marker = Path(fault["once_file"])
    if marker.exists():
        return
    marker.write_text(str(step))
    os._exit(17)


# ---- the training loop (runs on every Ray Train worker) -------------------------------------------------
def train_loop(config: dict) -> None:
    import ray.train
    import torch
    import torch.distributed as dist

    from distill import losses
    from distill.models import DualEncoder

    ctx = ray.train.get_context()
    rank, world = ctx.get_world_rank(), ctx.get_world_size()
    torch.set_num_threads(config["threads"])
    torch.manual_seed(config["seed"] + rank)
    groups = pq.read_table(config["groups_path"]).to_pandas()
    B, K = config["queries_per_batch"], config["group_size"]
    steps_per_epoch = max(1, len(groups) // (B * world))
    total = config["max_steps"] or steps_per_epoch * config["epochs"]
    w = config["losses"]

    student = DualEncoder(**config["student"])
    tokenize = student.tokenize

    asym = config["asymmetric"]  # documents keep the teacher's embeddings; only queries are encoded

    class PairModel(torch.nn.Module):
        """The student tower, plus (for embedding matching) a learned map into the teacher's width."""

        def __init__(self, enc, teacher_dim: int | None):
            super().__init__()
            self.encoder = enc
            self.proj = None
            if teacher_dim:  # asymmetric: the encoder's own output_dim already is the teacher's width
                self.proj = (torch.nn.Identity() if teacher_dim == enc.dim
                             else torch.nn.Linear(enc.dim, teacher_dim, bias=False))

        def forward(self, q, d, layers: bool = False):
            if d is None:
                return self.encoder(**q), None
            return self.encoder(**q, return_layers=layers), self.encoder(**d, return_layers=layers)

    if asym and student.dim != len(groups["d_embs"].iloc[0][0]):
        raise ValueError(f"asymmetric student width {student.dim} != teacher width {len(groups['d_embs'].iloc[0][0])}")
    use_emb = (bool(w.get("embedding")) or asym) and "q_embs" in groups
    use_lead = bool(w.get("lead")) and "layer_scores" in groups
    if use_lead:
        from distill.losses.lead import default_layer_map

        t_layers = len(groups["layer_scores"].iloc[0][0])
        layer_map = [tuple(p) for p in config["lead"]["layer_map"]] if config["lead"]["layer_map"] else \
            default_layer_map(student.num_layers, t_layers)
        lead_weights = {int(k): v for k, v in config["lead_weights"].items()}
    model = PairModel(student, len(groups["q_embs"].iloc[0][0]) if use_emb and not asym else None)
    warmup = int(config["warmup_ratio"] * total)
    use_ds = config["backend"] == "deepspeed"
    if use_ds:
        os.environ.setdefault("DS_ACCELERATOR", "cuda" if config["use_gpu"] else "cpu")
        import deepspeed

        if not config["use_gpu"]:
            # DeepSpeed's CPU shared-memory op only speeds up *inference* all-reduce; training reduces gradients
            # over Ray's gloo group. Skipping it avoids a C++ build (~60 s) in every new virtualenv.
            deepspeed.ops.__compatible_ops__["deepspeed_shm_comm"] = False
        ds_config = {
            "train_micro_batch_size_per_gpu": B,
            "gradient_accumulation_steps": 1,
            "gradient_clipping": 1.0,
            "optimizer": {"type": "AdamW", "params": {"lr": config["lr"], "weight_decay": config["weight_decay"],
                                                      "torch_adam": True}},
            "scheduler": {"type": "WarmupDecayLR", "params": {
                "warmup_min_lr": 0.0, "warmup_max_lr": config["lr"], "warmup_num_steps": max(1, warmup),
                "total_num_steps": max(total, warmup + 1), "warmup_type": "linear"}},
            "zero_optimization": {"stage": config["zero_stage"]},
            "bf16": {"enabled": config["precision"] == "bf16"},
            "steps_per_print": 10**9,
            "wall_clock_breakdown": False,
        }
        engine, _, _, _ = deepspeed.initialize(model=model, model_parameters=model.parameters(), config=ds_config,
                                               dist_init_required=False)
        device = engine.device
    else:
        from ray.train.torch import prepare_model

        engine = prepare_model(model)
        device = next(engine.parameters()).device
        optim = torch.optim.AdamW(engine.parameters(), lr=config["lr"], weight_decay=config["weight_decay"])
        sched = torch.optim.lr_scheduler.LambdaLR(
            optim, lambda s: min((s + 1) / max(1, warmup), max(0.0, (total - s) / max(1, total - warmup))))

    # ---- resume ----
    start = 0
    ckpt = ray.train.get_checkpoint()
    # Ray's checkpoint after a worker-group restart may lag: the controller collects a report only when it
    # polls, so a worker that dies right after reporting loses it. Take the newest complete one of Ray's,
    # the newest on storage, and the driver's (a checkpoint is complete once it has its state file).
    found = {"ray": ckpt.to_directory() if ckpt is not None else None,
             "storage": latest_checkpoint(Path(config["checkpoint_root"])) if config.get("checkpoint_root") else None,
             "driver": config.get("resume_from")}
    found = {k: (json.loads((Path(d) / STATE_FILE).read_text())["step"], d) for k, d in found.items()
             if d and (Path(d) / STATE_FILE).exists()}
    source = max(found, key=lambda k: found[k][0]) if found else "scratch"
    ckpt_dir = found[source][1] if found else None
    if ckpt_dir:
        state = json.loads((Path(ckpt_dir) / STATE_FILE).read_text())
        start = state["step"]
        if use_ds:
            from distill.safe_load import deepspeed_weights_only

            with deepspeed_weights_only():  # DeepSpeed itself reads its *.pt with weights_only=False
                engine.load_checkpoint(ckpt_dir, tag="ckpt")
        else:
            from safetensors.torch import load_file

            engine_module = engine.module if hasattr(engine, "module") else engine
            engine_module.load_state_dict(load_file(str(Path(ckpt_dir) / "model.safetensors")))
            optim.load_state_dict(torch.load(Path(ckpt_dir) / "optim.pt", weights_only=True))
            sched.load_state_dict(state["scheduler"])
    if rank == 0 and config.get("starts_log"):  # one line per (re)start of the worker group: the step it starts at
        with open(config["starts_log"], "a", encoding="utf-8") as f:
            f.write(json.dumps({"start_step": start, "total": total, "from": source}) + "\n")

    def gather(x: torch.Tensor) -> torch.Tensor:
        if world == 1:
            return x
        import torch.distributed.nn.functional as dnf

        return torch.cat(dnf.all_gather(x), dim=0)

    def save(step: int, metrics: dict, final: bool) -> None:
        before = ray.train.get_checkpoint()
        with tempfile.TemporaryDirectory() as tmp:
            state = {"step": step, "total": total, "world": world}
            if use_ds:
                engine.save_checkpoint(tmp, tag="ckpt")
            elif rank == 0:
                from safetensors.torch import save_file

                m = engine.module if hasattr(engine, "module") else engine
                save_file({k: v.contiguous() for k, v in m.state_dict().items()}, str(Path(tmp) / "model.safetensors"))
                torch.save(optim.state_dict(), Path(tmp) / "optim.pt")
                state["scheduler"] = sched.state_dict()
            if rank == 0 and final:
                m = engine.module if hasattr(engine, "module") else engine
                m.encoder.save(Path(tmp) / EXPORT_DIR)
            has_files = use_ds or rank == 0
            ray.train.report(metrics, checkpoint=ray.train.Checkpoint.from_directory(tmp) if has_files else None)
        if world > 1 and dist.is_initialized():
            dist.barrier()  # every rank's files are in storage now
        after = ray.train.get_checkpoint()
        if rank == 0 and after is not None and (before is None or after.path != before.path):
            # the state file goes in last: a checkpoint that has one is complete (resume relies on it)
            with after.filesystem.open_output_stream(f"{after.path}/{STATE_FILE}") as f:
                f.write(json.dumps(state).encode())

    T_t, T_s = config["teacher_temperature"], config["student_temperature"]
    engine.train()
    metrics = {}
    step_seconds: list[float] = []  # wall time of each step's compute (batch build to optimizer step)
    from distill.progress import Progress

    progress = Progress("train", total, rank, start)
    log_every = config.get("log_every") or 0
    tracker = None
    if rank == 0 and log_every and config.get("tracking"):  # distill.tracking: TensorBoard (default), MLflow, W&B
        from distill.tracking import Tracker

        tracker = Tracker(config["tracking"], config.get("tensorboard_dir"), config.get("run_name") or "train",
                          {k: v for k, v in config.items() if k in ("lr", "queries_per_batch", "group_size", "seed",
                                                                     "backend", "epochs", "max_steps")})
    for step in range(start, total):
        t_step = time.perf_counter()
        idx = step_indices(len(groups), step, steps_per_epoch, B, world, rank, config["seed"])
        rng = np.random.default_rng([config["seed"], step, rank])
        docs, tscores, masks, t_q, t_d, t_layers_b = [], [], [], [], [], []
        for i in idx:
            row = groups.iloc[i]
            d, s, m, chosen = sample_group(row, K, rng)
            docs += d
            tscores.append(s)
            masks.append(m)
            if use_lead:
                n_l = len(row["layer_scores"][0])
                t_layers_b.append([row["layer_scores"][c] if c >= 0 else [0.0] * n_l for c in chosen])
            if use_emb:
                t_q.append(row["q_embs"][chosen[0]])  # the query's vector from its positive pair
                t_d += [row["d_embs"][c] if c >= 0 else np.zeros(len(row["d_embs"][0]), np.float32) for c in chosen]
        q_in = {k: v.to(device) for k, v in tokenize(groups["query"].iloc[idx].tolist()).items()}
        d_in = None if asym else {k: v.to(device) for k, v in tokenize(docs).items()}
        if use_lead:
            (q, q_layers), (d, d_layers) = engine(q_in, d_in, True)
        else:
            q, d = engine(q_in, d_in)
        if asym:  # the teacher's document vectors, fixed: no gradient reaches the document side
            d = torch.tensor(np.asarray(t_d, np.float32), device=device)
        q, d = q.float(), d.float()
        t = torch.tensor(tscores, dtype=torch.float32, device=device)
        mask = torch.tensor(masks, dtype=torch.bool, device=device)
        s = (q.unsqueeze(1) * d.view(len(idx), K, -1)).sum(-1)
        terms = {}
        if w["kl"]:
            terms["kl"] = losses.listwise_kl(s, t, T_t, T_s, mask)
        if w["margin_mse"]:
            terms["margin_mse"] = losses.margin_mse(s, t, T_t, T_s, mask)
        if w["mse"]:
            terms["mse"] = losses.score_mse(s, t, T_t, T_s, mask)
        if w["infonce"]:
            all_d = gather(d)
            all_mask = gather(mask.reshape(-1).float()).bool()
            pos = torch.arange(len(idx), device=device) * K + rank * len(idx) * K
            terms["infonce"] = losses.info_nce(q, all_d, pos, T_s, all_mask)
        if use_emb and w.get("embedding"):
            proj = (engine.module if hasattr(engine, "module") else engine).proj
            tq = torch.tensor(np.asarray(t_q, np.float32), device=device)
            mode = config["embedding_mode"]
            terms["embedding"] = losses.embedding_match(q if asym else proj(q), tq, mode)
            if not asym:
                td = torch.tensor(np.asarray(t_d, np.float32), device=device)
                terms["embedding"] = terms["embedding"] + losses.embedding_match(proj(d), td, mode, mask.reshape(-1))
        if use_lead:
            from distill.losses.lead import lead_loss

            n_pick = min(config["lead"]["pairs_per_step"], len(layer_map))
            picked = [layer_map[j] for j in rng.choice(len(layer_map), size=n_pick, replace=False)]
            s_layers = {m: (q_layers[m - 1].float().unsqueeze(1) * d_layers[m - 1].float().view(len(idx), K, -1)).sum(-1)
                        for m, _ in picked}
            tl = torch.tensor(np.asarray(t_layers_b, np.float32), device=device)
            terms["lead"] = lead_loss(s_layers, tl, picked, lead_weights, config["lead"]["temperature"], mask)
        loss = sum(w[k] * v for k, v in terms.items())
        logs_now = bool(log_every) and ((step + 1) % log_every == 0 or step + 1 == total)
        lr = float(engine.get_lr()[0] if use_ds else optim.param_groups[0]["lr"]) if logs_now else float("nan")
        if use_ds:
            engine.backward(loss)
            engine.step()
        else:
            optim.zero_grad()
            loss.backward()
            torch.nn.utils.clip_grad_norm_(engine.parameters(), 1.0)
            optim.step()
            sched.step()
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
                ray.train.report(metrics)
        if checkpoint_now:
            save(step + 1, metrics, final=done)
        _maybe_fail(config.get("fault"), step + 1, rank)
    if start >= total:  # resumed after the last step: export again so the driver finds the student
        save(total, {"step": total, "loss": float("nan")}, final=True)
    if tracker is not None:
        tracker.close()
    if world > 1 and dist.is_initialized():
        dist.barrier()


# ---- driver side ---------------------------------------------------------------------------------------
def latest_checkpoint(storage: Path) -> str | None:
    """The saved checkpoint with the highest step under ``storage`` (scanned, so it survives a driver crash).
    Only complete checkpoints count: rank 0 writes the state file after every rank's files are stored."""
    best, best_step = None, -1
    for f in storage.rglob(STATE_FILE):
        try:
            step = json.loads(f.read_text())["step"]
        except (OSError, ValueError, KeyError):
            continue
        if step > best_step:
            best, best_step = str(f.parent), step
    return best


def loop_config(cfg, groups_path: Path, student_model: str, resume_from: str | None,
                teacher_dim: int | None = None) -> dict:
    """The train loop's settings. An asymmetric student's query encoder outputs ``teacher_dim`` vectors
    (``student.output_dim`` unless set), so it searches the teacher's document index directly."""
    t = cfg.training
    from distill.models import resolve_model
    from distill.precision import for_stage

    fault = None
    if os.environ.get("DISTILL_FAIL_AT_STEP"):
        fault = {"step": int(os.environ["DISTILL_FAIL_AT_STEP"]),
                 "once_file": os.environ.get("DISTILL_FAIL_ONCE_FILE", str(groups_path.parent / "fault.once"))}
    return {
        "groups_path": str(groups_path), "resume_from": resume_from, "fault": fault,
        "starts_log": str(groups_path.parent / STARTS_LOG),
        "student": {**cfg.student.model_dump(), "model": resolve_model(student_model),  # DualEncoder kwargs
                    **({"output_dim": cfg.student.output_dim or teacher_dim} if t.asymmetric else {})},
        "backend": t.backend, "zero_stage": t.zero_stage, "use_gpu": t.use_gpu,
        "precision": for_stage(cfg, "train", warn=True),  # auto resolved here; DeepSpeed takes fp32 | bf16
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
    """Run the TorchTrainer; returns (result, exported student dir inside the final checkpoint). Rank 0 writes
    TensorBoard event files into ``tracking_dir`` (training.tracking, every training.log_every steps)."""
    from ray.train import CheckpointConfig, FailureConfig, RunConfig, ScalingConfig
    from ray.train.torch import TorchConfig, TorchTrainer

    from distill.raycluster import ensure_ray

    ensure_ray(cfg.ray)
    t = cfg.training
    resources = {"CPU": t.cpus_per_worker}
    if t.use_gpu:
        resources["GPU"] = 1
    loop_cfg = loop_config(cfg, groups_path, student_model, latest_checkpoint(storage / name), teacher_dim)
    loop_cfg["lead_weights"] = {str(k): v for k, v in (lead_weights or {}).items()}
    loop_cfg["checkpoint_root"] = str((storage / name).resolve())  # workers resume from the newest one there
    if tracking_dir is not None:
        from distill.tracking import check_backends

        check_backends(t.tracking)  # an optional backend asked for but not installed fails here, before Ray Train
        loop_cfg["tensorboard_dir"] = str(Path(tracking_dir).resolve())
    trainer = TorchTrainer(
        train_loop,
        train_loop_config=loop_cfg,
        scaling_config=ScalingConfig(num_workers=t.num_workers, use_gpu=t.use_gpu, resources_per_worker=resources),
        torch_config=TorchConfig(backend="nccl" if t.use_gpu else "gloo"),
        run_config=RunConfig(name=name, storage_path=str(storage.resolve()),
                             checkpoint_config=CheckpointConfig(num_to_keep=t.keep_checkpoints),
                             failure_config=FailureConfig(max_failures=t.max_failures)),
    )
    result = trainer.fit()
    if result.checkpoint is None:
        raise RuntimeError("training finished without a checkpoint")
    return result


def run(rd, data) -> dict:
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
    lead_weights = None
    if "teacher_layer_scores" in scores:
        from distill.losses.lead import layer_weights

        lead_weights = layer_weights(np.stack(scores["teacher_layer_scores"].to_numpy()), scores["label"].to_numpy(),
                                     scores["qid"].to_numpy(), cfg.training.lead.temperature)
    resumed = latest_checkpoint(work / "checkpoints" / name)
    resumed_step = json.loads((Path(resumed) / STATE_FILE).read_text())["step"] if resumed else 0
    starts_log = work / STARTS_LOG
    seen = len(starts_log.read_text().splitlines()) if starts_log.exists() else 0
    teacher_dim = None
    if cfg.training.asymmetric:
        if "teacher_d_emb" not in scores:
            raise RuntimeError("train: training.asymmetric needs the teacher's document embeddings in the scores "
                               "(scoring.store_embeddings: true, re-run the score stage)")
        teacher_dim = len(scores["teacher_d_emb"].iloc[0])
    result = fit(cfg, groups_path, work / "checkpoints", name, cfg.student.model, lead_weights, teacher_dim,
                 tracking_dir=rd.path / "tensorboard")
    starts = [json.loads(x)["start_step"] for x in starts_log.read_text().splitlines()[seen:]] \
        if starts_log.exists() else []
    with result.checkpoint.as_directory() as ckpt, rd.atomic_output("train") as tmp:
        export = Path(ckpt) / EXPORT_DIR
        if not export.exists():
            raise RuntimeError(f"final checkpoint {ckpt} holds no exported student")
        shutil.copytree(export, tmp, dirs_exist_ok=True)
        state = json.loads((Path(ckpt) / STATE_FILE).read_text())
    counts = {"groups": len(groups), "labels_withheld": len(withheld),
              "pseudo_labelled_groups": int(groups["pseudo"].sum()), "steps": state["step"],
              "workers": cfg.training.num_workers}
    from distill.precision import for_stage

    rd.mark_done("train", counts, precision=for_stage(cfg, "train"), resumed_from_step=resumed_step, worker_starts=starts, lead_layer_weights=lead_weights, final_metrics={k: v for k, v in (result.metrics or {}).items()
                                                 if isinstance(v, (int, float))})
    from distill.export import write_model_card

    write_model_card(rd)  # README.md in the student dir; the evaluate stage adds its metrics
    return counts
