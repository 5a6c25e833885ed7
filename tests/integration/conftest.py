"""The integration tier's shared fixture: one local Ray cluster per test module."""

import pytest
import ray

from builders import start_local_ray


@pytest.fixture(scope="module")
def ray_session():
    """A local Ray cluster for the module (one already running is reused), shut down after it."""
    if not ray.is_initialized():
        start_local_ray()
    yield
    ray.shutdown()
