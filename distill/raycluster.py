"""Connecting to Ray: a cluster named by config or ``RAY_ADDRESS`` (as under ``ray job submit``), else a
local one started in-process and sized by the config."""

from __future__ import annotations

import os

import ray

from distill.config import RayConfig


def ensure_ray(cfg: RayConfig) -> None:
    if ray.is_initialized():
        return
    env = {"env_vars": {"TOKENIZERS_PARALLELISM": "false", "HF_HUB_OFFLINE": os.environ.get("HF_HUB_OFFLINE", "0")}}
    if cfg.address or os.environ.get("RAY_ADDRESS"):
        ray.init(address=cfg.address or os.environ["RAY_ADDRESS"], runtime_env=env, log_to_driver=True)
        return
    # address="local": start a fresh in-process cluster, never attach to a stale one left on the machine
    ray.init(address="local", num_cpus=cfg.num_cpus, object_store_memory=cfg.object_store_memory,
             include_dashboard=False, runtime_env=env, log_to_driver=True)


def actor_threads(cpus: float) -> int:
    """Torch threads for an actor that reserved ``cpus`` logical CPUs (at least one)."""
    return max(1, int(round(cpus)))
