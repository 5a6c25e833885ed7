"""The student's optimisation backend behind one interface: DeepSpeed ZeRO (``training.backend:
deepspeed``) or PyTorch DDP via Ray Train's ``prepare_model`` (``ddp``). Both clip gradients at norm 1,
use AdamW, and a linear warmup-decay learning rate (DeepSpeed's ``WarmupDecayLR``; DDP: ``LambdaLR`` with
distill.raytrain.warmup_decay); both save and load their full training state in a checkpoint directory.
"""

from __future__ import annotations

import os
from pathlib import Path

from distill import raytrain


def deepspeed_config(config: dict, total: int, warmup: int) -> dict:
    """DeepSpeed's settings for one micro-batch of ``queries_per_batch`` queries per worker and step."""
    return {
        "train_micro_batch_size_per_gpu": config["queries_per_batch"],
        "gradient_accumulation_steps": 1,
        "gradient_clipping": 1.0,
        "optimizer": {"type": "AdamW", "params": {"lr": config["lr"], "weight_decay": config["weight_decay"],
                                                  "torch_adam": True}},
        "scheduler": raytrain.deepspeed_warmup_decay(config["lr"], total, warmup),
        "zero_optimization": {"stage": config["zero_stage"]},
        # bf16 is torch autocast around the forward (distill.stages.train), so DeepSpeed keeps fp32 weights,
        # gradients and optimizer state: its own bf16 mode (bf16 weights) stays off on every device.
        "bf16": {"enabled": False},
        "steps_per_print": 10**9,
        "wall_clock_breakdown": False,
    }


class TrainEngine:
    """``model`` wrapped for training over ``total`` steps (warmup: ``warmup_ratio`` of them)."""

    def __init__(self, model, config: dict, total: int):
        self.use_ds = config["backend"] == "deepspeed"
        warmup = int(config["warmup_ratio"] * total)
        if self.use_ds:
            self._init_deepspeed(model, config, total, warmup)
        else:
            self._init_ddp(model, config, total, warmup)

    def _init_deepspeed(self, model, config: dict, total: int, warmup: int) -> None:
        os.environ.setdefault("DS_ACCELERATOR", "cuda" if config["use_gpu"] else "cpu")
        import deepspeed

        if not config["use_gpu"]:
            # DeepSpeed's CPU shared-memory op only speeds up *inference* all-reduce; training reduces gradients
            # over Ray's gloo group. Skipping it avoids a C++ build (~60 s) in every new virtualenv.
            deepspeed.ops.__compatible_ops__["deepspeed_shm_comm"] = False
        self.engine, _, _, _ = deepspeed.initialize(model=model, model_parameters=model.parameters(),
                                                    config=deepspeed_config(config, total, warmup),
                                                    dist_init_required=False)
        self.device = self.engine.device
        self.optim = self.sched = None

    def _init_ddp(self, model, config: dict, total: int, warmup: int) -> None:
        import torch
        from ray.train.torch import prepare_model

        self.engine = prepare_model(model)
        self.device = next(self.engine.parameters()).device
        self.optim = torch.optim.AdamW(self.engine.parameters(), lr=config["lr"], weight_decay=config["weight_decay"])
        self.sched = raytrain.warmup_decay_lr(self.optim, total, warmup)

    @property
    def module(self):
        """The model itself (inside DeepSpeed's engine or the DDP wrapper)."""
        return self.engine.module if hasattr(self.engine, "module") else self.engine

    def __call__(self, *args):
        return self.engine(*args)

    def train(self) -> None:
        self.engine.train()

    def lr(self) -> float:
        """The learning rate the next ``step`` uses."""
        return float(self.engine.get_lr()[0] if self.use_ds else self.optim.param_groups[0]["lr"])

    def step(self, loss) -> None:
        """Backward, clip at norm 1, optimizer and scheduler step."""
        if self.use_ds:
            self.engine.backward(loss)
            self.engine.step()
            return
        import torch

        self.optim.zero_grad()
        loss.backward()
        torch.nn.utils.clip_grad_norm_(self.engine.parameters(), 1.0)
        self.optim.step()
        self.sched.step()

    def has_files(self, rank: int) -> bool:
        """Whether this rank writes checkpoint files (every rank under DeepSpeed, rank 0 under DDP)."""
        return self.use_ds or rank == 0

    def save(self, directory: Path, rank: int) -> dict:
        """Write the training state into ``directory``; returns extra entries for the state file."""
        if self.use_ds:
            self.engine.save_checkpoint(str(directory), tag="ckpt")
            return {}
        if rank != 0:
            return {}
        import torch
        from safetensors.torch import save_file

        m = self.module
        save_file({k: v.contiguous() for k, v in m.state_dict().items()}, str(Path(directory) / "model.safetensors"))
        torch.save(self.optim.state_dict(), Path(directory) / "optim.pt")
        return {"scheduler": self.sched.state_dict()}

    def load(self, directory: str, state: dict) -> None:
        """Restore what ``save`` wrote (``state``: the checkpoint's state file)."""
        if self.use_ds:
            from distill.safe_load import deepspeed_weights_only

            with deepspeed_weights_only():  # DeepSpeed itself reads its *.pt with weights_only=False
                self.engine.load_checkpoint(directory, tag="ckpt")
            return
        import torch
        from safetensors.torch import load_file

        self.module.load_state_dict(load_file(str(Path(directory) / "model.safetensors")))
        self.optim.load_state_dict(torch.load(Path(directory) / "optim.pt", weights_only=True))
        self.sched.load_state_dict(state["scheduler"])
