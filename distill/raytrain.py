"""Ray Train helpers shared by the training stages (``train``: the student; ``teacher``: a cross-encoder
or a FiD reader): worker start, step indices, the warmup-decay learning-rate schedule, trainer
construction, checkpoints (save, find, resume from three sources) and reading the exported model back.

Batches are a pure function of (seed, global step): ``step_indices`` permutes the rows once per epoch
and gives each worker a disjoint slice, so a worker group restarted from a checkpoint sees the same
sequence of batches from the saved step on.
"""

from __future__ import annotations

import json
import logging
import shutil
import tempfile
from pathlib import Path

import numpy as np

STATE_FILE = "distill_state.json"  # in a student checkpoint: {"step", "total", "world"[, "scheduler"]}
EXPORT_STATE = "state.json"  # in a teacher's final checkpoint: {"steps"}
EXPORT_DIR = "export"  # the model as the next stage loads it, inside the final checkpoint


# ---- on a worker -----------------------------------------------------------------------------------------
class _SchedulerNotStarted(logging.Filter):
    """DeepSpeed's WarmupDecayLR warns that its rate is read "before it has started" from its own constructor."""

    def filter(self, record: logging.LogRecord) -> bool:
        return "before it has started" not in record.getMessage()


def quiet_worker_logs() -> None:
    """A training worker's log without the lines that tell a user nothing: Ray Train's INFO line for every
    ``ray.train.report`` (its metrics in full, where distill.progress prints one short line about ten times a
    fit; that logger, named after its module's file, keeps its warnings), DeepSpeed's warning from its own
    scheduler's constructor, and torch 2.13's deprecation of the ``all_gather_into_tensor`` ZeRO calls."""
    import warnings

    try:
        from ray.train.v2._internal.execution import context
    except ImportError:  # another Ray Train layout: its logger is left as is
        context = None
    if context is not None:
        logging.getLogger(context.__file__).setLevel(logging.WARNING)
    deepspeed_log = logging.getLogger("DeepSpeed")
    if not any(isinstance(f, _SchedulerNotStarted) for f in deepspeed_log.filters):
        deepspeed_log.addFilter(_SchedulerNotStarted())
    warnings.filterwarnings("ignore", message="`torch.distributed.all_gather_into_tensor` is deprecated",
                            category=FutureWarning)


def start_worker(threads: int, seed: int, per_rank_seed: bool = False) -> tuple[int, int]:
    """(rank, world) of this Ray Train worker; sets torch's threads and seed (``seed + rank`` when
    ``per_rank_seed``)."""
    import ray.train
    import torch

    quiet_worker_logs()
    ctx = ray.train.get_context()
    rank, world = ctx.get_world_rank(), ctx.get_world_size()
    torch.set_num_threads(threads)
    torch.manual_seed(seed + rank if per_rank_seed else seed)
    return rank, world


def epoch_steps(n: int, per_step: int, world: int) -> int:
    """Steps per epoch: whole batches of ``per_step`` rows on each of ``world`` workers (at least 1)."""
    return max(1, n // (per_step * world))


def step_indices(n: int, step: int, steps_per_epoch: int, batch: int, world: int, rank: int, seed: int):
    """Row indices for this worker at a global step: epoch-wise permutation, disjoint worker slices."""
    epoch, within = divmod(step, steps_per_epoch)
    perm = np.random.default_rng([seed, epoch]).permutation(n)
    start = (within * world + rank) * batch
    return perm[start:start + batch]


def warmup_decay(total: int, warmup: int):
    """The learning-rate factor at step s (0-based): linear warmup over ``warmup`` steps to 1, then linear
    decay to 0 at ``total``:  min((s + 1) / warmup, max(0, (total - s) / (total - warmup)))  (denominators
    at least 1). A plain function, so ``LambdaLR.state_dict`` stores nothing of it."""
    return lambda s: min((s + 1) / max(1, warmup), max(0.0, (total - s) / max(1, total - warmup)))


def warmup_decay_lr(optim, total: int, warmup: int):
    """A ``LambdaLR`` on ``optim`` with the ``warmup_decay`` factor."""
    import torch

    return torch.optim.lr_scheduler.LambdaLR(optim, warmup_decay(total, warmup))


def deepspeed_warmup_decay(lr: float, total: int, warmup: int) -> dict:
    """DeepSpeed's own ``WarmupDecayLR`` (linear warmup from 0 to ``lr``, linear decay to 0 at ``total``)."""
    return {"type": "WarmupDecayLR", "params": {
        "warmup_min_lr": 0.0, "warmup_max_lr": lr, "warmup_num_steps": max(1, warmup),
        "total_num_steps": max(total, warmup + 1), "warmup_type": "linear"}}


def gather(x, world: int):
    """``x`` of every worker concatenated along dim 0, differentiable (identity on one worker)."""
    if world == 1:
        return x
    import warnings

    import torch
    import torch.distributed.nn.functional as dnf

    with warnings.catch_warnings():  # torch 2.13 deprecates it for a functional collective not yet checked on gloo
        warnings.filterwarnings("ignore", message=".*all_gather.* is deprecated", category=FutureWarning)
        return torch.cat(dnf.all_gather(x), dim=0)


def barrier(world: int) -> None:
    import torch.distributed as dist

    if world > 1 and dist.is_initialized():
        dist.barrier()


# ---- checkpoints -----------------------------------------------------------------------------------------
def read_state(directory) -> dict:
    return json.loads((Path(directory) / STATE_FILE).read_text())


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


def resume_point(config: dict) -> tuple[str, str | None]:
    """(source, checkpoint dir) to resume from: the newest complete one of Ray's (``ray``), the newest on
    storage (``storage``, under ``config["checkpoint_root"]``) and the driver's (``driver``,
    ``config["resume_from"]``); ("scratch", None) when there is none. Ray's checkpoint after a worker-group
    restart may lag: the controller collects a report only when it polls, so a worker that dies right after
    reporting loses it."""
    import ray.train

    ckpt = ray.train.get_checkpoint()
    found = {"ray": ckpt.to_directory() if ckpt is not None else None,
             "storage": latest_checkpoint(Path(config["checkpoint_root"])) if config.get("checkpoint_root") else None,
             "driver": config.get("resume_from")}
    found = {k: (read_state(d)["step"], d) for k, d in found.items() if d and (Path(d) / STATE_FILE).exists()}
    if not found:
        return "scratch", None
    source = max(found, key=lambda k: found[k][0])
    return source, found[source][1]


def log_start(path: str | None, start: int, total: int, source: str) -> None:
    """One line per (re)start of the worker group (rank 0): the step it starts at and where it came from."""
    if path:
        with open(path, "a", encoding="utf-8") as f:
            f.write(json.dumps({"start_step": start, "total": total, "from": source}) + "\n")


def report_checkpoint(metrics: dict, state: dict, write_files, has_files: bool, rank: int, world: int) -> None:
    """``ray.train.report`` with a checkpoint of what ``write_files(tmp_dir)`` writes there (it returns
    extra state entries); after every rank's files are stored, rank 0 adds ``state`` as the state file,
    last, so a checkpoint that has one is complete (``latest_checkpoint``, ``resume_point``)."""
    import ray.train

    before = ray.train.get_checkpoint()
    with tempfile.TemporaryDirectory() as tmp:
        state.update(write_files(Path(tmp)) or {})
        ray.train.report(metrics, checkpoint=ray.train.Checkpoint.from_directory(tmp) if has_files else None)
    barrier(world)  # every rank's files are in storage now
    after = ray.train.get_checkpoint()
    if rank == 0 and after is not None and (before is None or after.path != before.path):
        with after.filesystem.open_output_stream(f"{after.path}/{STATE_FILE}") as f:
            f.write(json.dumps(state).encode())


def report_export(metrics: dict, rank: int, save_model, steps: int) -> None:
    """The final report of a run that checkpoints only at the end: rank 0's checkpoint holds the model
    (``save_model(dir)`` into ``EXPORT_DIR``) and ``EXPORT_STATE``."""
    import ray.train

    with tempfile.TemporaryDirectory() as tmp:
        if rank == 0:
            save_model(Path(tmp) / EXPORT_DIR)
            (Path(tmp) / EXPORT_STATE).write_text(json.dumps({"steps": steps}))
        ray.train.report(metrics, checkpoint=ray.train.Checkpoint.from_directory(tmp) if rank == 0 else None)


# ---- on the driver ---------------------------------------------------------------------------------------
def make_trainer(loop, loop_config: dict, *, name: str, storage: Path, num_workers: int, cpus_per_worker: float,
                 use_gpu: bool, keep_checkpoints: int | None = None, max_failures: int | None = None):
    """A ``TorchTrainer`` running ``loop(loop_config)`` on ``num_workers`` workers (gloo on CPU, nccl on
    GPU), its runs stored under ``storage/name``; checkpoint retention and worker restarts when given."""
    from ray.train import CheckpointConfig, FailureConfig, RunConfig, ScalingConfig
    from ray.train.torch import TorchConfig, TorchTrainer

    resources = {"CPU": cpus_per_worker, **({"GPU": 1} if use_gpu else {})}
    run_kw = {}
    if keep_checkpoints is not None:
        run_kw["checkpoint_config"] = CheckpointConfig(num_to_keep=keep_checkpoints)
    if max_failures is not None:
        run_kw["failure_config"] = FailureConfig(max_failures=max_failures)
    return TorchTrainer(
        loop, train_loop_config=loop_config,
        scaling_config=ScalingConfig(num_workers=num_workers, use_gpu=use_gpu, resources_per_worker=resources),
        torch_config=TorchConfig(backend="nccl" if use_gpu else "gloo"),
        run_config=RunConfig(name=name, storage_path=str(Path(storage).resolve()), **run_kw),
    )


def copy_export(result, dest: Path, state_file: str = EXPORT_STATE) -> dict:
    """Copy the model exported in ``result``'s final checkpoint into ``dest``; returns its state file."""
    if result.checkpoint is None:
        raise RuntimeError("training finished without a checkpoint")
    with result.checkpoint.as_directory() as ckpt:
        export = Path(ckpt) / EXPORT_DIR
        if not export.exists():
            raise RuntimeError(f"final checkpoint {ckpt} holds no exported model")
        shutil.copytree(export, dest, dirs_exist_ok=True)
        return json.loads((Path(ckpt) / state_file).read_text())
