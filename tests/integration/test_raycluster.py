"""distill.raycluster on a local Ray cluster: the cluster ``ensure_ray`` starts runs its setup hook in every
worker process, detached actors included (Ray Train's PlacementGroupCleaner is one), so the cleaner's
once-a-second "State API may be temporarily unavailable" warnings never reach the driver's log."""

import logging

import pytest
import ray

from distill.config import RayConfig
from distill.raycluster import PG_CLEANER_LOGGER, ensure_ray

pytestmark = pytest.mark.ray


@ray.remote(num_cpus=0)
class LoggerLevel:
    def level(self) -> int:
        return logging.getLogger(PG_CLEANER_LOGGER).getEffectiveLevel()


@pytest.mark.timeout(120)
def test_the_local_cluster_mutes_the_pg_cleaner_in_detached_actors_and_tasks():
    if ray.is_initialized():
        ray.shutdown()
    ensure_ray(RayConfig(num_cpus=1, object_store_memory=100 * 1024 * 1024))
    try:
        detached = LoggerLevel.options(lifetime="detached", name="level-probe").remote()
        assert ray.get(detached.level.remote(), timeout=60) == logging.ERROR
        ray.kill(detached)
        task = ray.remote(num_cpus=0)(lambda: logging.getLogger(PG_CLEANER_LOGGER).getEffectiveLevel())
        assert ray.get(task.remote(), timeout=60) == logging.ERROR
    finally:
        ray.shutdown()
