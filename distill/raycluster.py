"""Connecting to Ray: a cluster named by config or ``RAY_ADDRESS`` (as under ``ray job submit``), else a
local one started in-process and sized by the config."""

from __future__ import annotations

import json
import logging
import os

import ray

from distill.config import RayConfig


def driver_runtime_env(environ=None) -> dict:
    """What the driver adds to the runtime_env: TOKENIZERS_PARALLELISM=false, HF_HUB_OFFLINE as the driver has
    it and RAY_TRAIN_ENABLE_PRINT_PATCH=0, minus the variables that a submitted job's own runtime_env already
    sets (under ``ray job submit --runtime-env``, Ray refuses to merge two runtime_envs that name the same
    variable).

    Ray Train's print patch sends a training worker's ``print`` to the root logger *and*, because Ray has
    wrapped the worker's stdout, to stdout as well: every progress line reached the driver's log twice."""
    environ = os.environ if environ is None else environ
    job = json.loads(environ.get("RAY_JOB_CONFIG_JSON_ENV_VAR") or "{}")
    taken = set(((job.get("runtime_env") or {}).get("env_vars") or {}))
    wanted = {"TOKENIZERS_PARALLELISM": "false", "HF_HUB_OFFLINE": environ.get("HF_HUB_OFFLINE", "0"),
              "RAY_TRAIN_ENABLE_PRINT_PATCH": "0"}
    return {"env_vars": {k: v for k, v in wanted.items() if k not in taken}}


# Ray Train's PlacementGroupCleaner asks the State API every second whether the train controller lives. The
# State API is served by the dashboard, which a local cluster started here does not run (it would cost a process
# and memory per run), so each poll fails and logs a warning: a line a second for the whole of training. The
# cleaner's job, freeing a crashed controller's placement group, does not arise on a cluster that dies with its
# driver, so on such a cluster its warnings are muted; errors still show.
PG_CLEANER_LOGGER = "ray.train.v2._internal.execution.controller.placement_group_cleaner"


def quiet_state_api_pollers() -> None:
    """``worker_process_setup_hook`` of a local cluster without a dashboard: the PlacementGroupCleaner logs
    errors only (see PG_CLEANER_LOGGER)."""
    logging.getLogger(PG_CLEANER_LOGGER).setLevel(logging.ERROR)


def local_runtime_env(environ=None) -> dict:
    """The runtime_env of a local cluster started by ``ensure_ray``: the driver's, plus the setup hook that
    mutes the State API pollers that cannot reach a dashboard."""
    return {**driver_runtime_env(environ),
            "worker_process_setup_hook": f"{__name__}.{quiet_state_api_pollers.__name__}"}


def ensure_ray(cfg: RayConfig) -> None:
    if ray.is_initialized():
        return
    if cfg.address or os.environ.get("RAY_ADDRESS"):
        ray.init(address=cfg.address or os.environ["RAY_ADDRESS"], runtime_env=driver_runtime_env(),
                 log_to_driver=True)
        return
    # address="local": start a fresh in-process cluster, never attach to a stale one left on the machine
    ray.init(address="local", num_cpus=cfg.num_cpus, object_store_memory=cfg.object_store_memory,
             include_dashboard=False, runtime_env=local_runtime_env(), log_to_driver=True)


def actor_threads(cpus: float) -> int:
    """Torch threads for an actor that reserved ``cpus`` logical CPUs (at least one)."""
    return max(1, int(round(cpus)))
