"""Connecting to Ray: a cluster named by config or ``RAY_ADDRESS`` (as under ``ray job submit``), else a
local one started in-process and sized by the config."""

from __future__ import annotations

import json
import os

import ray

from distill.config import RayConfig


def driver_runtime_env(environ=None) -> dict:
    """What the driver adds to the runtime_env: TOKENIZERS_PARALLELISM=false and HF_HUB_OFFLINE as the driver
    has it, minus the variables that a submitted job's own runtime_env already sets (under ``ray job submit
    --runtime-env``, Ray refuses to merge two runtime_envs that name the same variable)."""
    environ = os.environ if environ is None else environ
    job = json.loads(environ.get("RAY_JOB_CONFIG_JSON_ENV_VAR") or "{}")
    taken = set(((job.get("runtime_env") or {}).get("env_vars") or {}))
    wanted = {"TOKENIZERS_PARALLELISM": "false", "HF_HUB_OFFLINE": environ.get("HF_HUB_OFFLINE", "0")}
    return {"env_vars": {k: v for k, v in wanted.items() if k not in taken}}


def ensure_ray(cfg: RayConfig) -> None:
    if ray.is_initialized():
        return
    env = driver_runtime_env()
    if cfg.address or os.environ.get("RAY_ADDRESS"):
        ray.init(address=cfg.address or os.environ["RAY_ADDRESS"], runtime_env=env, log_to_driver=True)
        return
    # address="local": start a fresh in-process cluster, never attach to a stale one left on the machine
    ray.init(address="local", num_cpus=cfg.num_cpus, object_store_memory=cfg.object_store_memory,
             include_dashboard=False, runtime_env=env, log_to_driver=True)


def actor_threads(cpus: float) -> int:
    """Torch threads for an actor that reserved ``cpus`` logical CPUs (at least one)."""
    return max(1, int(round(cpus)))
