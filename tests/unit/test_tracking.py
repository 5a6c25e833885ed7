"""distill.tracking: TensorBoard event files readable back, optional backends named when missing."""

import importlib.util

import pytest

from distill import tracking
from distill.config import TrainingConfig

pytest.importorskip("tensorboard")


def test_tracker_writes_tensorboard_scalars(tmp_path):
    t = tracking.Tracker(["tensorboard"], tmp_path / "tb", "demo", {"lr": 1e-3}, in_ray_train=False)
    for step in (5, 10, 15):
        t.log({"step": step, "loss": 1.0 / step, "kl": 0.5 / step, "lr": 1e-3, "step_time": 0.1, "flag": True}, step)
    t.close()
    assert list((tmp_path / "tb").glob("events.out.tfevents.*"))
    s = tracking.read_scalars(tmp_path / "tb")
    assert [st for st, _ in s["train/loss"]] == [5, 10, 15]
    assert s["train/loss"][-1][1] == pytest.approx(1 / 15)
    assert {"train/kl", "train/lr", "train/step_time"} <= set(s) and "train/step" not in s and "train/flag" not in s


def test_sweep_table_logged(tmp_path):
    rows = [{"run": "a", "nDCG@10": 0.5, "MRR@10": 0.4}, {"run": "b", "nDCG@10": 0.6, "MRR@10": 0.45}]
    assert tracking.log_sweep_table(rows, tmp_path, "| run | nDCG@10 |\n|---|---|\n| a | 0.5 |")
    s = tracking.read_scalars(tmp_path)
    assert s["sweep/nDCG@10"] == [(0, pytest.approx(0.5)), (1, pytest.approx(0.6))]


@pytest.mark.parametrize("pkg", ["mlflow", "wandb"])
def test_missing_optional_backend_is_named(pkg):
    if importlib.util.find_spec(pkg) is not None:
        pytest.skip(f"{pkg} is installed")
    with pytest.raises(tracking.TrackingError, match=f"pip install {pkg}"):
        tracking.check_backends(["tensorboard", pkg])


def test_config_defaults_and_digest_unaffected():
    from distill.config import RunConfig
    from distill.manifest import stage_digest

    t = TrainingConfig()
    assert t.tracking == ["tensorboard"] and t.log_every == 5
    base = RunConfig.model_validate({"name": "x", "teacher": {"model": "m"}, "student": {"model": "m"}})
    other = base.model_copy(update={"training": base.training.model_copy(update={"log_every": 1, "tracking": []})})
    assert stage_digest(base, "train") == stage_digest(other, "train")
