"""distill.raydata on a local Ray cluster: the ``tasks`` pool builds each model once per worker process
across stages (and again when its files change); a pool's actors end with the pool's lease, whatever holds them.

Ray Data releases a pool's actors by dropping its handles; an actor that something still holds (as Ray Data's
own bookkeeping did with one lost with its node and restarted elsewhere, tests/integration/test_multinode.py)
would keep its CPU. Here the test itself holds the handle, the actor is killed once (Ray restarts it, as it
would after a node loss), and the lease is closed: the actor ends, is not restarted, and its CPU comes back.
"""

import os
import signal
import sys
import time
import warnings

import pyarrow as pa
import pytest
import ray

from distill.config import RayConfig
from distill.raydata import PoolLease, leased, map_model_pool

pytestmark = pytest.mark.ray
ray.cloudpickle.register_pickle_by_value(sys.modules[__name__])  # Echo travels by value: workers cannot import tests


class Echo:
    """Answers each batch with its process id, the tag it was built with and which instance answered."""

    def __init__(self, tag: str, model_dir: str | None = None):
        self.tag = tag

    def __call__(self, batch):
        n = len(next(iter(batch.values()))) if batch else 1
        return {"pid": [os.getpid()] * n, "tag": [self.tag] * n, "instance": [id(self)] * n}


@pytest.fixture(scope="module")
def ray_session():
    if ray.is_initialized():
        ray.shutdown()
    ray.init(address="local", num_cpus=2, include_dashboard=False, object_store_memory=150 * 1024 * 1024)
    yield
    ray.shutdown()


def _wait(predicate, timeout: float = 30.0) -> bool:
    deadline = time.time() + timeout
    while time.time() < deadline:
        if predicate():
            return True
        time.sleep(0.25)
    return predicate()


def _state(actor) -> dict:
    return ray._private.state.actors(actor._actor_id.hex())


@pytest.mark.timeout(120)
def test_an_actor_held_and_restarted_ends_once_its_pool_lease_closes(ray_session):
    lease = PoolLease().__enter__()
    cls = leased(Echo)
    assert cls.__name__ == "Echo" and cls.inner is Echo  # Ray Data names the pool after the model class
    actor = ray.remote(cls).options(num_cpus=1, max_restarts=-1, max_task_retries=-1).remote(lease=lease.key,
                                                                                            tag="x")
    pid = ray.get(actor.__call__.remote({}))["pid"][0]
    os.kill(pid, signal.SIGKILL)  # Ray restarts it (max_restarts=-1): the state of one lost with its node
    assert ray.get(actor.__call__.remote({}))["tag"] == ["x"]
    assert _state(actor)["NumRestarts"] == 1 and PoolLease.is_open(lease.key)
    time.sleep(2 * cls.check_s)
    assert _state(actor)["State"] == "ALIVE"  # an open lease keeps it

    lease.__exit__(None, None, None)
    assert not PoolLease.is_open(lease.key)
    assert _wait(lambda: _state(actor)["State"] == "DEAD")  # while this test still holds its handle
    assert _state(actor)["NumRestarts"] == 1  # killed for good, not restarted
    assert _wait(lambda: ray.available_resources().get("CPU", 0) == 2)


@pytest.mark.timeout(120)
def test_a_pool_returns_every_row_and_leaves_no_actor_or_lease_behind(ray_session):
    from ray.experimental import internal_kv

    ray_cfg = RayConfig(num_cpus=2, actor_cpus=1, stage_pool="actors")
    blocks = [pa.table({"id": [f"r{i}" for i in range(j, j + 5)]}) for j in range(0, 20, 5)]
    got = [b for b in map_model_pool(blocks, Echo, {"tag": "y"}, batch_size=5, actors=2, ray_cfg=ray_cfg)]
    assert sum(len(b["tag"]) for b in got) == 20 and {t for b in got for t in b["tag"]} == {"y"}
    assert internal_kv._internal_kv_list("pool-", namespace=PoolLease.NAMESPACE) == []
    assert _wait(lambda: ray.available_resources().get("CPU", 0) == 2)


def _stage(tag: str, model_dir: str, rows: int = 40) -> dict[int, set[int]]:
    """One stage on the default (tasks) pool: {pid: the Echo instances that answered there}; every row back."""
    blocks = [pa.table({"id": [f"r{i}" for i in range(j, j + 5)]}) for j in range(0, rows, 5)]
    got = list(map_model_pool(blocks, Echo, {"tag": tag, "model_dir": model_dir}, batch_size=5, actors=2,
                              ray_cfg=RayConfig(num_cpus=2, actor_cpus=1)))
    assert sum(len(b["tag"]) for b in got) == rows and {t for b in got for t in b["tag"]} == {tag}
    out: dict[int, set[int]] = {}
    for b in got:
        for pid, inst in zip(b["pid"].tolist(), b["instance"].tolist()):
            out.setdefault(pid, set()).add(inst)
    return out


@pytest.mark.timeout(120)
def test_tasks_pool_builds_a_model_once_per_process_across_stages_and_again_when_its_files_change(
        ray_session, tmp_path):
    model = tmp_path / "model"
    model.mkdir()
    (model / "weights.bin").write_bytes(b"v1")
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        first = _stage("a", str(model))
    assert not [w for w in caught if "deprecated" in str(w.message)]  # nothing for a user to wonder about
    second = _stage("a", str(model))
    assert set(second) <= set(first)  # the second stage ran in the processes the first one started
    for pid in second:  # ... on the model instance the first stage built there: built once per process
        assert second[pid] == first[pid] and len(first[pid]) == 1
    (model / "weights.bin").write_bytes(b"v2, saved again")  # e.g. a student trained further and saved
    third = _stage("a", str(model))
    assert all(not (third[pid] & first.get(pid, set())) for pid in third)  # loaded again, never stale
    other = _stage("b", str(model))  # other arguments, another model
    assert all(not (other[pid] & third.get(pid, set())) for pid in other)
