"""distill/train_engine.py without Ray Train: DeepSpeed's settings, and the DDP engine's step (AdamW,
clipping, the warmup-decay rate) and its checkpoint round trip (Ray's prepare_model is the identity here)."""

import json

import pytest
import torch

from distill.train_engine import TrainEngine, deepspeed_config

CONFIG = {"backend": "ddp", "lr": 0.1, "weight_decay": 0.01, "warmup_ratio": 0.25, "queries_per_batch": 4,
          "zero_stage": 2, "precision": "fp32", "use_gpu": False}


@pytest.fixture
def no_ray(monkeypatch):
    import ray.train.torch

    monkeypatch.setattr(ray.train.torch, "prepare_model", lambda m: m)


def _model(seed=0):
    torch.manual_seed(seed)
    return torch.nn.Linear(3, 2)


def test_deepspeed_config():
    ds = deepspeed_config(CONFIG, total=8, warmup=2)
    assert ds["train_micro_batch_size_per_gpu"] == 4 and ds["gradient_clipping"] == 1.0
    assert ds["optimizer"] == {"type": "AdamW", "params": {"lr": 0.1, "weight_decay": 0.01, "torch_adam": True}}
    assert ds["scheduler"]["params"]["warmup_num_steps"] == 2 and ds["scheduler"]["params"]["total_num_steps"] == 8
    assert ds["zero_optimization"] == {"stage": 2} and ds["bf16"] == {"enabled": False}
    # bf16 training is autocast around the forward: DeepSpeed keeps fp32 weights and optimizer state
    assert deepspeed_config({**CONFIG, "precision": "bf16"}, total=8, warmup=2)["bf16"] == {"enabled": False}


def test_ddp_step_is_adamw_with_clipping_and_warmup_decay(no_ray):
    eng = TrainEngine(_model(), CONFIG, total=8)  # warmup: 2 steps
    ref = _model()
    opt = torch.optim.AdamW(ref.parameters(), lr=0.1, weight_decay=0.01)
    sched = torch.optim.lr_scheduler.LambdaLR(opt, lambda s: min((s + 1) / 2, max(0.0, (8 - s) / 6)))
    x = torch.randn(5, 3)
    for _ in range(3):
        assert eng.lr() == opt.param_groups[0]["lr"]
        eng.step((eng(x) ** 2).sum() * 10)
        opt.zero_grad()
        ((ref(x) ** 2).sum() * 10).backward()
        torch.nn.utils.clip_grad_norm_(ref.parameters(), 1.0)
        opt.step()
        sched.step()
    for a, b in zip(eng.module.parameters(), ref.parameters()):
        assert torch.equal(a, b)
    assert eng.module is eng.engine and eng.has_files(0) and not eng.has_files(1)


def test_ddp_checkpoint_round_trip(no_ray, tmp_path):
    eng = TrainEngine(_model(), CONFIG, total=8)
    x = torch.randn(5, 3)
    for _ in range(2):
        eng.step((eng(x) ** 2).sum())
    assert eng.save(tmp_path, rank=1) == {} and not list(tmp_path.iterdir())  # only rank 0 writes under DDP
    extra = eng.save(tmp_path, rank=0)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["model.safetensors", "optim.pt"]
    state = json.loads(json.dumps({"step": 2, **extra}))  # what the state file holds
    again = TrainEngine(_model(seed=1), CONFIG, total=8)
    again.load(str(tmp_path), state)
    for a, b in zip(again.module.parameters(), eng.module.parameters()):
        assert torch.equal(a, b)
    assert again.lr() == eng.lr()
    eng.step((eng(x) ** 2).sum())  # both continue identically
    again.step((again(x) ** 2).sum())
    for a, b in zip(again.module.parameters(), eng.module.parameters()):
        assert torch.equal(a, b)
