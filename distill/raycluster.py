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


# Ray Train's PlacementGroupCleaner asks the State API every second whether the train controller lives, and
# removes the training workers' placement group once it hears "no". The State API is served by a dashboard,
# which a local cluster started here does not run (a process and memory per run), and a worker that has no
# address for it auto-detects one: the newest cluster on the machine. With another Ray up (a `ray start`
# cluster serving a model, a test's head node), the cleaner asked *that* cluster, did not find the controller
# there, and removed a live run's placement group: training died a second later. So a local cluster's workers
# get a State API address that refuses at once (each poll fails, the cleaner keeps waiting, nothing is
# removed), and the cleaner's warning about it, a line a second for the whole of training, is muted. Its own
# job, freeing a crashed controller's placement group, does not arise on a cluster that dies with its driver.
PG_CLEANER_LOGGER = "ray.train.v2._internal.execution.controller.placement_group_cleaner"
NO_STATE_API = "http://127.0.0.1:1"  # TCP port 1: refused at once
DATA_PROGRESS_INTERVAL_ENV = "RAY_DATA_NON_TTY_PROGRESS_LOG_INTERVAL"


def quiet_state_api_pollers() -> None:
    """``worker_process_setup_hook`` of a local cluster without a dashboard: the PlacementGroupCleaner logs
    errors only (see PG_CLEANER_LOGGER)."""
    logging.getLogger(PG_CLEANER_LOGGER).setLevel(logging.ERROR)


def local_runtime_env(environ=None) -> dict:
    """The runtime_env of a local cluster started by ``ensure_ray``: the driver's, a State API address that
    no other cluster answers (RAY_API_SERVER_ADDRESS), and the setup hook that mutes the pollers' warnings."""
    env = driver_runtime_env(environ)
    return {"env_vars": {**env["env_vars"], "RAY_API_SERVER_ADDRESS": NO_STATE_API},
            "worker_process_setup_hook": f"{__name__}.{quiet_state_api_pollers.__name__}"}


def ensure_ray(cfg: RayConfig) -> None:
    # Ray Data logs a stage's progress every 10 s where stdout is not a terminal (a job's log): once a minute
    # is enough to see it move (set the variable to choose; it is read when Ray Data first logs progress)
    os.environ.setdefault(DATA_PROGRESS_INTERVAL_ENV, "60")
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
