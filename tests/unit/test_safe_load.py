"""distill/safe_load.py: checkpoints load without running code from them. ``load_weights_only`` and the
``deepspeed_weights_only`` guard on plain files (a pickle carrying code is refused, naming the file and the
refused global, before anything runs), and DeepSpeed ZeRO checkpoints resumed through the guard (1 CPU
process, gloo world of 1). The package-wide scan for unsafe loads: test_security_defaults.py."""

from __future__ import annotations

import io
import os
import pickle
import socket
from pathlib import Path

import pytest
import torch

from distill.safe_load import (DEEPSPEED_GLOBALS, UnsafeCheckpointError, _reason, deepspeed_safe_globals,
                               deepspeed_weights_only, load_weights_only)


class Payload:
    """A pickled object whose unpickling runs code: writes ``marker`` (what an attacker's file would do)."""

    def __init__(self, marker: Path):
        self.marker = marker

    def __reduce__(self):
        return exec, (f"open({str(self.marker)!r}, 'w').write('pwned')",)


class Allowed:
    """A plain class a caller may allow by name (``extra_globals``)."""

    def __init__(self, n: int = 0):
        self.n = n


# ---- the guard on plain files --------------------------------------------------------------------------
def test_weights_only_load_and_refusal(tmp_path):
    marker = tmp_path / "ran"
    torch.save({"w": torch.ones(2), "step": 3}, tmp_path / "ok.pt")
    assert load_weights_only(tmp_path / "ok.pt")["step"] == 3
    torch.save({"w": torch.ones(2), "evil": Payload(marker)}, tmp_path / "evil.pt")
    with pytest.raises(UnsafeCheckpointError, match=r"evil\.pt: refused to load.*refused global exec"):
        load_weights_only(tmp_path / "evil.pt")
    real = torch.load
    with deepspeed_weights_only():
        assert torch.load is not real
        with pytest.raises(UnsafeCheckpointError):
            torch.load(tmp_path / "evil.pt", weights_only=False)  # what DeepSpeed asks for: overridden
        with pytest.raises(UnsafeCheckpointError, match="pickle_module"):
            import pickle

            torch.load(tmp_path / "ok.pt", pickle_module=pickle)
        assert torch.load(tmp_path / "ok.pt", weights_only=False)["step"] == 3
    assert torch.load is real
    with pytest.raises(RuntimeError), deepspeed_weights_only():
        raise RuntimeError("boom")
    assert torch.load is real and not marker.exists()


def test_unsafe_checkpoint_error_is_an_unpickling_error():
    assert issubclass(UnsafeCheckpointError, pickle.UnpicklingError)


def test_a_file_object_is_named_by_its_type_and_nothing_runs(tmp_path):
    marker = tmp_path / "ran"
    buf = io.BytesIO()
    torch.save({"evil": Payload(marker)}, buf)
    buf.seek(0)
    with pytest.raises(UnsafeCheckpointError, match=r"^BytesIO: refused to load.*refused global exec"):
        load_weights_only(buf)
    assert not marker.exists()


def test_extra_globals_admit_exactly_the_named_classes(tmp_path):
    torch.save({"obj": Allowed(5), "w": torch.zeros(1)}, tmp_path / "obj.pt")
    with pytest.raises(UnsafeCheckpointError, match=r"refused global .*Allowed"):
        load_weights_only(tmp_path / "obj.pt")
    got = load_weights_only(tmp_path / "obj.pt", extra_globals=[Allowed])
    assert isinstance(got["obj"], Allowed) and got["obj"].n == 5
    torch.save({"obj": Allowed(1), "evil": Payload(tmp_path / "ran")}, tmp_path / "both.pt")
    with pytest.raises(UnsafeCheckpointError, match="refused global exec"):  # one class allowed, not another
        load_weights_only(tmp_path / "both.pt", extra_globals=[Allowed])
    assert not (tmp_path / "ran").exists()


def test_map_location_and_kwargs_reach_torch_load(tmp_path):
    calls = []

    def fake_load(f, map_location=None, weights_only=None, **kw):
        calls.append((f, map_location, weights_only, kw))
        return "loaded"

    assert load_weights_only("x.pt", "cpu", _load=fake_load, mmap=True) == "loaded"
    assert calls == [("x.pt", "cpu", True, {"mmap": True})]


def test_reason_names_the_refused_global_without_torchs_advice():
    err = pickle.UnpicklingError("Weights only load failed. ...\nUnsupported global: GLOBAL builtins.exec was not "
                                 "an allowed global by default. Please use `torch.serialization.add_safe_globals`")
    assert _reason(err) == "refused global builtins.exec"
    err = pickle.UnpicklingError("Weights only load failed.\nWeightsUnpickler error: Unsupported operand 149. "
                                 "Please file an issue")
    assert _reason(err) == "WeightsUnpickler error: Unsupported operand 149"
    assert _reason(pickle.UnpicklingError("first line\nsecond")) == "first line"
    assert _reason(pickle.UnpicklingError("")) == "UnpicklingError"


def test_deepspeed_safe_globals_are_the_named_classes():
    pytest.importorskip("deepspeed")
    classes = deepspeed_safe_globals()
    assert [(c.__module__, c.__name__) for c in classes] == list(DEEPSPEED_GLOBALS)


# ---- DeepSpeed checkpoints (1 CPU process, gloo world of 1) ---------------------------------------------
@pytest.fixture(scope="module")
def ds_world():
    import torch.distributed as dist

    env = {"DS_ACCELERATOR": "cpu", "LOCAL_RANK": "0", "RANK": "0", "WORLD_SIZE": "1",
           "LOCAL_WORLD_SIZE": "1"}
    saved = {k: os.environ.get(k) for k in env}
    os.environ.update(env)
    started = not dist.is_initialized()
    if started:
        with socket.socket() as s:
            s.bind(("127.0.0.1", 0))
            port = s.getsockname()[1]
        dist.init_process_group("gloo", init_method=f"tcp://127.0.0.1:{port}", rank=0, world_size=1)
    import deepspeed

    deepspeed.ops.__compatible_ops__["deepspeed_shm_comm"] = False
    yield deepspeed
    if started:
        dist.destroy_process_group()
    for k, v in saved.items():
        if v is None:
            os.environ.pop(k, None)
        else:
            os.environ[k] = v


def _engine(deepspeed, stage: int, precision: str, seed: int):
    """The training stage's DeepSpeed config (AdamW torch_adam, WarmupDecayLR) on a tiny MLP."""
    torch.manual_seed(seed)
    model = torch.nn.Sequential(torch.nn.Linear(4, 8), torch.nn.ReLU(), torch.nn.Linear(8, 1))
    cfg = {"train_micro_batch_size_per_gpu": 2, "gradient_accumulation_steps": 1, "gradient_clipping": 1.0,
           "optimizer": {"type": "AdamW", "params": {"lr": 1e-2, "weight_decay": 0.01, "torch_adam": True}},
           "scheduler": {"type": "WarmupDecayLR", "params": {
               "warmup_min_lr": 0.0, "warmup_max_lr": 1e-2, "warmup_num_steps": 2, "total_num_steps": 10,
               "warmup_type": "linear"}},
           "zero_optimization": {"stage": stage}, "bf16": {"enabled": precision == "bf16"},
           "steps_per_print": 10**9}
    engine, *_ = deepspeed.initialize(model=model, model_parameters=model.parameters(), config=cfg,
                                      dist_init_required=False)
    return engine


def _step(engine, i: int) -> None:
    g = torch.Generator().manual_seed(i)
    x = torch.randn(2, 4, generator=g).to(next(engine.module.parameters()).dtype)
    engine.backward(engine(x).float().pow(2).sum())
    engine.step()


def _params(engine) -> dict[str, torch.Tensor]:
    return {k: v.detach().float().clone() for k, v in engine.module.state_dict().items()}


@pytest.mark.parametrize("stage,precision", [(0, "fp32"), (2, "fp32"), (2, "bf16")])
def test_deepspeed_checkpoint_resumes_through_the_guard(ds_world, tmp_path, stage, precision):
    a = _engine(ds_world, stage, precision, seed=0)
    for i in range(3):
        _step(a, i)
    a.save_checkpoint(str(tmp_path), tag="ckpt")
    _step(a, 3)
    b = _engine(ds_world, stage, precision, seed=1)  # other initial weights
    with deepspeed_weights_only():
        path, _ = b.load_checkpoint(str(tmp_path), tag="ckpt")
    assert path is not None and b.global_steps == 3
    _step(b, 3)  # the same step from the restored weights, optimizer moments and lr schedule
    pa, pb = _params(a), _params(b)
    for k in pa:
        torch.testing.assert_close(pb[k], pa[k], rtol=0, atol=0)


def test_deepspeed_globals_are_exactly_what_checkpoints_hold(ds_world, tmp_path):
    import pickletools
    import zipfile

    found = set()
    for stage, precision in [(0, "fp32"), (1, "bf16"), (2, "fp32")]:
        e = _engine(ds_world, stage, precision, seed=0)
        _step(e, 0)
        e.save_checkpoint(str(tmp_path / f"{stage}{precision}"), tag="ckpt")
    for f in tmp_path.rglob("*.pt"):
        z = zipfile.ZipFile(f)
        ops = list(pickletools.genops(z.read(next(n for n in z.namelist() if n.endswith("data.pkl")))))
        for i, (op, arg, _) in enumerate(ops):
            if op.name == "STACK_GLOBAL":
                found.add((ops[i - 2][1], ops[i - 1][1]))
            elif op.name == "GLOBAL":
                found.add(tuple(arg.split(" ", 1)))
    assert {g for g in found if not g[0].startswith(("torch", "collections"))} == set(DEEPSPEED_GLOBALS)


@pytest.mark.parametrize("which", ["mp_rank_00_model_states.pt", "zero_pp_rank_0_mp_rank_00_optim_states.pt"])
def test_deepspeed_checkpoint_carrying_code_is_refused(ds_world, tmp_path, which):
    a = _engine(ds_world, 2, "fp32", seed=0)
    _step(a, 0)
    a.save_checkpoint(str(tmp_path), tag="ckpt")
    f = tmp_path / "ckpt" / which
    marker = tmp_path / "ran"
    state = torch.load(f, weights_only=False)  # our own file, just written
    torch.save({**state, "extra": Payload(marker)}, f)
    b = _engine(ds_world, 2, "fp32", seed=1)
    with pytest.raises(UnsafeCheckpointError, match=rf"{which}: refused to load.*refused global exec"):
        with deepspeed_weights_only():
            b.load_checkpoint(str(tmp_path), tag="ckpt")
    assert not marker.exists()
    # Why the guard exists: DeepSpeed on its own (weights_only=False) runs the file's code.
    b.load_checkpoint(str(tmp_path), tag="ckpt")
    assert marker.read_text() == "pwned", "DeepSpeed now loads weights_only; the guard may be retired"
