"""Experiment tracking: training metrics (and the sweep table) to TensorBoard, MLflow and W&B.

``training.tracking`` names the backends (default ``[tensorboard]``); ``training.log_every`` how often the
train loop logs loss, each loss term, learning rate and step time. TensorBoard writes event files into the run
directory (``runs/<name>/tensorboard/``) through ``torch.utils.tensorboard.SummaryWriter``; it comes with the
``[train]`` extra, and a missing ``tensorboard`` package only skips it (with a warning). MLflow and W&B go
through Ray Train's integrations (``ray.air.integrations.mlflow.setup_mlflow`` / ``...wandb.setup_wandb``)
and are not dependencies: asking for one whose package is not installed is an error naming the package.
Every import here is lazy.
"""

from __future__ import annotations

import importlib.util
import logging
from pathlib import Path

logger = logging.getLogger(__name__)
BACKENDS = ("tensorboard", "mlflow", "wandb")
TB_DIR = "tensorboard"


class TrackingError(RuntimeError):
    """A tracking backend was asked for but cannot be used."""


def tensorboard_available() -> bool:
    return importlib.util.find_spec("tensorboard") is not None


def check_backends(backends) -> list[str]:
    """The backends that will log: unknown names and an optional package that is missing are errors (MLflow:
    ``mlflow``, W&B: ``wandb``); tensorboard without its package is dropped with a warning."""
    out = []
    for b in dict.fromkeys(backends or []):
        if b not in BACKENDS:
            raise TrackingError(f"unknown tracking backend {b!r} (one of {', '.join(BACKENDS)})")
        if b == "tensorboard":
            if not tensorboard_available():
                logger.warning("tracking: the `tensorboard` package is not installed (pip install tensorboard, or "
                               "the [train] extra); no TensorBoard event files are written")
                continue
        elif importlib.util.find_spec(b) is None:
            raise TrackingError(f"training.tracking asks for {b} but the `{b}` package is not installed "
                                f"(pip install {b}); it is optional, not part of ray-distill's install")
        out.append(b)
    return out


class Tracker:
    """Logs scalar dicts to the configured backends. Create it on rank 0 only (the train loop does)."""

    def __init__(self, backends, log_dir: str | Path | None, run_name: str = "train", config: dict | None = None,
                 in_ray_train: bool = True):
        self.backends = check_backends(backends)
        self.tb = self.mlflow = self.wandb = None
        if "tensorboard" in self.backends and log_dir:
            from torch.utils.tensorboard import SummaryWriter

            Path(log_dir).mkdir(parents=True, exist_ok=True)
            self.tb = SummaryWriter(log_dir=str(log_dir))
        params = {k: v for k, v in (config or {}).items() if isinstance(v, (int, float, str, bool))}
        if "mlflow" in self.backends:
            import os

            uri = os.environ.get("MLFLOW_TRACKING_URI") or (Path(log_dir).parent.resolve() / "mlruns").as_uri()
            if in_ray_train:
                from ray.air.integrations.mlflow import setup_mlflow

                self.mlflow = setup_mlflow(params, tracking_uri=uri, experiment_name="ray-distill", run_name=run_name,
                                           create_experiment_if_not_exists=True, rank_zero_only=False)
            else:
                import mlflow

                mlflow.set_tracking_uri(uri)
                mlflow.set_experiment("ray-distill")
                mlflow.start_run(run_name=run_name)
                mlflow.log_params(params)
                self.mlflow = mlflow
        if "wandb" in self.backends:
            if in_ray_train:
                from ray.air.integrations.wandb import setup_wandb

                self.wandb = setup_wandb(params, project="ray-distill", name=run_name, rank_zero_only=False)
            else:
                import wandb

                self.wandb = wandb.init(project="ray-distill", name=run_name, config=params)

    def log(self, metrics: dict, step: int, prefix: str = "train/") -> None:
        scalars = {f"{prefix}{k}": float(v) for k, v in metrics.items()
                   if isinstance(v, (int, float)) and not isinstance(v, bool) and k != "step"}
        if self.tb is not None:
            for k, v in scalars.items():
                self.tb.add_scalar(k, v, step)
            self.tb.flush()
        if self.mlflow is not None:
            self.mlflow.log_metrics({k.replace("/", "."): v for k, v in scalars.items()}, step=step)
        if self.wandb is not None:
            self.wandb.log(scalars, step=step)

    def text(self, tag: str, text: str, step: int = 0) -> None:
        if self.tb is not None:
            self.tb.add_text(tag, text, step)
        if self.mlflow is not None:
            self.mlflow.log_text(text, f"{tag}.md")

    def close(self) -> None:
        if self.tb is not None:
            self.tb.close()
        if self.mlflow is not None:
            self.mlflow.end_run()
        if self.wandb is not None:
            self.wandb.finish()


def read_scalars(log_dir: str | Path) -> dict[str, list[tuple[int, float]]]:
    """Every scalar series in the event files under ``log_dir``: tag -> [(step, value)] (needs tensorboard)."""
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    out: dict[str, list[tuple[int, float]]] = {}
    for d in sorted({p.parent for p in Path(log_dir).rglob("events.out.tfevents.*")}):
        acc = EventAccumulator(str(d), size_guidance={"scalars": 0})
        acc.Reload()
        for tag in acc.Tags()["scalars"]:
            out.setdefault(tag, []).extend((e.step, e.value) for e in acc.Scalars(tag))
    return out


def log_sweep_table(rows: list[dict], log_dir: str | Path, table_md: str | None = None) -> bool:
    """The sweep table as TensorBoard scalars (``sweep/<metric>``, one step per table row, in row order) and
    text (``sweep/table``, the markdown table). False (nothing written) when tensorboard is not installed."""
    if not tensorboard_available():
        return False
    from torch.utils.tensorboard import SummaryWriter

    Path(log_dir).mkdir(parents=True, exist_ok=True)
    w = SummaryWriter(log_dir=str(log_dir))
    try:
        for i, row in enumerate(rows):
            label = str(row.get("run", row.get("name", i)))
            for k, v in row.items():
                if isinstance(v, (int, float)) and not isinstance(v, bool):
                    w.add_scalar(f"sweep/{k}", float(v), i)
            w.add_text("sweep/runs", f"{i}: {label}", i)
        if table_md:
            w.add_text("sweep/table", table_md, 0)
    finally:
        w.close()
    return True
