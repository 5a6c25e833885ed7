"""distill/raytrain.py without a Ray cluster: step indices, the warmup-decay schedule, DeepSpeed's schedule
settings, checkpoint discovery and resume from three sources, the start log and reading an export back."""

import json
from types import SimpleNamespace

import pytest
import torch

from distill import raytrain
from distill.raytrain import STATE_FILE


def test_epoch_steps_and_step_indices_partition_each_epoch():
    assert raytrain.epoch_steps(41, 4, 2) == 5 and raytrain.epoch_steps(3, 4, 2) == 1
    n, batch, world, spe = 40, 4, 2, 5
    for epoch in range(2):
        seen = []
        for step in range(epoch * spe, (epoch + 1) * spe):
            for rank in range(world):
                seen += raytrain.step_indices(n, step, spe, batch, world, rank, seed=3).tolist()
        assert sorted(seen) == list(range(n))


def test_warmup_decay_values():
    f = raytrain.warmup_decay(total=10, warmup=4)
    assert [f(s) for s in range(10)] == [0.25, 0.5, 0.75, 1.0, 1.0, 5 / 6, 4 / 6, 3 / 6, 2 / 6, 1 / 6]
    g = raytrain.warmup_decay(total=5, warmup=0)  # no warmup: full rate at once, then linear decay
    assert [g(s) for s in range(5)] == [1.0, 0.8, 0.6, 0.4, 0.2]
    assert raytrain.warmup_decay(3, 3)(2) == 1.0 and raytrain.warmup_decay(3, 3)(3) == 0.0


def test_warmup_decay_lr_drives_the_optimizer_and_its_state_holds_no_function():
    p = torch.nn.Parameter(torch.zeros(1))
    opt = torch.optim.SGD([p], lr=2.0)
    sched = raytrain.warmup_decay_lr(opt, total=10, warmup=4)
    lrs = []
    for _ in range(6):
        lrs.append(opt.param_groups[0]["lr"])
        opt.step()
        sched.step()
    assert lrs == pytest.approx([0.5, 1.0, 1.5, 2.0, 2.0, 2 * 5 / 6])
    state = sched.state_dict()
    assert state["lr_lambdas"] == [None] and json.dumps(state)  # checkpoint state files are JSON


def test_deepspeed_schedule_settings():
    assert raytrain.deepspeed_warmup_decay(0.1, 10, 0) == {"type": "WarmupDecayLR", "params": {
        "warmup_min_lr": 0.0, "warmup_max_lr": 0.1, "warmup_num_steps": 1, "total_num_steps": 10,
        "warmup_type": "linear"}}
    assert raytrain.deepspeed_warmup_decay(0.1, 3, 5)["params"]["total_num_steps"] == 6


def test_gather_on_one_worker_is_identity():
    x = torch.ones(2)
    assert raytrain.gather(x, 1) is x


def _ckpt(path, step):
    path.mkdir(parents=True)
    (path / STATE_FILE).write_text(json.dumps({"step": step}))
    return str(path)


def test_latest_checkpoint_takes_the_highest_complete_step(tmp_path):
    assert raytrain.latest_checkpoint(tmp_path) is None
    _ckpt(tmp_path / "a" / "c1", 3)
    best = _ckpt(tmp_path / "b" / "c2", 9)
    (tmp_path / "c").mkdir()
    (tmp_path / "c" / STATE_FILE).write_text("{broken")  # a half-written state file does not count
    (tmp_path / "d").mkdir()  # no state file: incomplete
    assert raytrain.latest_checkpoint(tmp_path) == best
    assert raytrain.read_state(best) == {"step": 9}


def test_resume_point_takes_the_newest_of_ray_storage_and_driver(tmp_path, monkeypatch):
    import ray.train

    ray_dir = _ckpt(tmp_path / "ray", 4)
    monkeypatch.setattr(ray.train, "get_checkpoint", lambda: SimpleNamespace(to_directory=lambda: ray_dir))
    storage = _ckpt(tmp_path / "storage" / "x", 6)
    driver = _ckpt(tmp_path / "driver", 5)
    cfg = {"checkpoint_root": str(tmp_path / "storage"), "resume_from": driver}
    assert raytrain.resume_point(cfg) == ("storage", storage)
    assert raytrain.resume_point({"resume_from": driver}) == ("driver", driver)
    monkeypatch.setattr(ray.train, "get_checkpoint", lambda: None)
    assert raytrain.resume_point({}) == ("scratch", None)
    assert raytrain.resume_point({"resume_from": str(tmp_path / "nothing")}) == ("scratch", None)


def test_log_start_appends_one_line_per_start(tmp_path):
    log = tmp_path / "starts.jsonl"
    raytrain.log_start(str(log), 0, 10, "scratch")
    raytrain.log_start(str(log), 6, 10, "storage")
    raytrain.log_start(None, 1, 1, "x")  # no log configured: nothing
    assert [json.loads(x) for x in log.read_text().splitlines()] == [
        {"start_step": 0, "total": 10, "from": "scratch"}, {"start_step": 6, "total": 10, "from": "storage"}]


class _Checkpoint:
    def __init__(self, path):
        self.path = path

    def as_directory(self):
        import contextlib

        return contextlib.nullcontext(str(self.path))


def test_copy_export_copies_the_model_and_returns_the_state(tmp_path):
    ck = tmp_path / "ck"
    (ck / raytrain.EXPORT_DIR).mkdir(parents=True)
    (ck / raytrain.EXPORT_DIR / "model.safetensors").write_bytes(b"w")
    (ck / raytrain.EXPORT_STATE).write_text(json.dumps({"steps": 7}))
    out = tmp_path / "out"
    assert raytrain.copy_export(SimpleNamespace(checkpoint=_Checkpoint(ck)), out) == {"steps": 7}
    assert (out / "model.safetensors").read_bytes() == b"w"
    with pytest.raises(RuntimeError, match="without a checkpoint"):
        raytrain.copy_export(SimpleNamespace(checkpoint=None), out)
    (tmp_path / "empty").mkdir()
    with pytest.raises(RuntimeError, match="no exported model"):
        raytrain.copy_export(SimpleNamespace(checkpoint=_Checkpoint(tmp_path / "empty")), out)


def test_a_training_workers_noise_is_quieted_and_its_warnings_kept():
    import logging
    import warnings

    from ray.train.v2._internal.execution import context

    from distill.raytrain import quiet_worker_logs

    log, ds = logging.getLogger(context.__file__), logging.getLogger("DeepSpeed")
    before, filters = log.level, list(ds.filters)
    try:
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            quiet_worker_logs()
            quiet_worker_logs()  # once per process is enough, twice is harmless
            warnings.warn("`torch.distributed.all_gather_into_tensor` is deprecated. Please use ...", FutureWarning)
            warnings.warn("something else is deprecated", FutureWarning)
        assert [str(w.message) for w in caught] == ["something else is deprecated"]
        assert not log.isEnabledFor(logging.INFO) and log.isEnabledFor(logging.WARNING)
        rec = lambda msg: logging.LogRecord("DeepSpeed", logging.WARNING, "f", 1, msg, None, None)  # noqa: E731
        assert not ds.filter(rec("Attempting to get learning rate from scheduler before it has started"))
        assert ds.filter(rec("total_num_steps 3 is less than warmup_num_steps 5"))
        assert len(ds.filters) == len(filters) + 1
    finally:
        log.setLevel(before)
        ds.filters[:] = filters
