"""distill.raycluster: what the driver adds to the runtime_env, and actor threads (no cluster started)."""

from __future__ import annotations

import importlib
import json
import logging
import os

from distill import raycluster
from distill.raycluster import (PG_CLEANER_LOGGER, actor_threads, driver_runtime_env, local_runtime_env,
                                quiet_state_api_pollers)


def test_the_driver_adds_its_variables_unless_the_job_sets_them():
    assert driver_runtime_env({"HF_HUB_OFFLINE": "1"}) == {"env_vars": {
        "TOKENIZERS_PARALLELISM": "false", "HF_HUB_OFFLINE": "1", "RAY_TRAIN_ENABLE_PRINT_PATCH": "0"}}
    job = {"runtime_env": {"env_vars": {"HF_HUB_OFFLINE": "0", "RAY_TRAIN_ENABLE_PRINT_PATCH": "1"}}}
    assert driver_runtime_env({"RAY_JOB_CONFIG_JSON_ENV_VAR": json.dumps(job)}) == {
        "env_vars": {"TOKENIZERS_PARALLELISM": "false"}}
    assert driver_runtime_env({})["env_vars"]["HF_HUB_OFFLINE"] == "0"


def test_actor_threads_round_the_reserved_cpus_and_never_drop_below_one():
    assert [actor_threads(c) for c in (0.25, 1, 1.6, 4)] == [1, 1, 2, 4]


def test_a_local_cluster_points_the_state_api_nowhere_and_mutes_the_pg_cleaners_warnings_only():
    env = local_runtime_env({"HF_HUB_OFFLINE": "1"})
    assert env["env_vars"] == {**driver_runtime_env({"HF_HUB_OFFLINE": "1"})["env_vars"],
                               "RAY_API_SERVER_ADDRESS": "http://127.0.0.1:1"}
    module, _, name = env["worker_process_setup_hook"].rpartition(".")
    hook = getattr(importlib.import_module(module), name)
    assert hook is quiet_state_api_pollers
    logger = logging.getLogger(PG_CLEANER_LOGGER)
    before = logger.level
    try:
        hook()
        assert not logger.isEnabledFor(logging.WARNING) and logger.isEnabledFor(logging.ERROR)
    finally:
        logger.setLevel(before)


def test_the_state_api_address_of_a_local_cluster_fails_fast_as_a_state_api_error(monkeypatch):
    """What the PlacementGroupCleaner sees on each poll: a RayStateApiException (it keeps waiting), never an
    answer from another cluster."""
    import pytest
    from ray.train.v2._internal.state.util import is_actor_alive
    from ray.util.state.exception import RayStateApiException

    monkeypatch.setenv("RAY_API_SERVER_ADDRESS", local_runtime_env({})["env_vars"]["RAY_API_SERVER_ADDRESS"])
    with pytest.raises(RayStateApiException):
        is_actor_alive("ff" * 16, timeout=5)


def test_ray_data_logs_progress_once_a_minute_unless_the_user_says_otherwise(monkeypatch):
    monkeypatch.setattr(raycluster.ray, "is_initialized", lambda: True)  # no cluster started
    monkeypatch.delenv(raycluster.DATA_PROGRESS_INTERVAL_ENV, raising=False)
    raycluster.ensure_ray(None)
    assert os.environ[raycluster.DATA_PROGRESS_INTERVAL_ENV] == "60"
    monkeypatch.setenv(raycluster.DATA_PROGRESS_INTERVAL_ENV, "5")
    raycluster.ensure_ray(None)
    assert os.environ[raycluster.DATA_PROGRESS_INTERVAL_ENV] == "5"
