"""Ray Data helpers every data stage uses: blocks, the model pool, rows-in = rows-out, resumable shards.

A stage (``score``, ``encode``, a reader teacher) is one chain: rows sorted by length and cut into blocks
on the driver (:func:`blocks_of`) -> :func:`map_model_pool` (a model class mapped over the blocks by a pool
of Ray workers; a worker that dies has its batch retried, at most ``ray.actor_task_retries`` times) ->
each output batch handed to a :class:`ShardAssembler`, which gives back a shard as soon as every row of
it is back -> the shard saved by :class:`ShardResume` under ``.<output>.partial/`` (distill.partial), so a
re-run after a crash computes only the shards that were not saved. :func:`check_rows` holds every stage to
rows in = rows out.

The pool (``ray.stage_pool``, :func:`pool_kind`) is one of two:

- ``tasks`` (the default on CPUs): Ray tasks on the job's reused worker processes, each keeping its models
  loaded (distill.worker_models), so torch's import and a model's load are paid once per process per run,
  not once per stage: the second stage that needs a model starts at full speed;
- ``actors`` (the default with ``ray.actor_gpus`` > 0: a GPU process must keep the device it started
  with): a fresh actor pool per stage, which loads its model again. Every actor pool holds a lease
  (:class:`PoolLease`, a key in Ray's GCS) while the driver reads it; each actor watches its pool's lease
  and ends itself, without restart, once the lease is gone. Ray Data releases a finished or failed pool's
  actors by dropping its handles, which misses one case: an actor lost with its node and restarted by Ray
  elsewhere after its pool had already failed holds its CPU for as long as the driver lives (seen on the
  multi-node tests). The lease makes every pool's actors end with the pool.
"""

from __future__ import annotations

import hashlib
import threading
import time
import uuid
import warnings
from collections.abc import Callable, Iterator
from pathlib import Path

import pyarrow as pa


def blocks_of(table: pa.Table, n: int, max_rows: int = 256) -> list[pa.Table]:
    """Split a (length-sorted) table into at least ``n`` contiguous blocks of at most ``max_rows`` rows.
    Made on the driver, so no Ray task is needed before the actor pool starts (tasks could starve behind
    actors holding every CPU); small blocks keep every actor busy until the end and stream results."""
    size = max(1, min(max_rows, -(-table.num_rows // max(1, n))))
    return [table.slice(i, size) for i in range(0, table.num_rows, size)] or [table]


def check_rows(stage: str, expected: list, got: list) -> None:
    """Rows in must equal rows out: same count, no id missing, none duplicated."""
    missing = len(set(expected) - set(got))
    dup = len(got) - len(set(got))
    if len(got) != len(expected) or missing or dup:
        raise RuntimeError(f"{stage}: {len(expected)} rows in but {len(got)} out "
                           f"({missing} missing, {dup} duplicated)")


def _system_errors() -> tuple[type, ...]:
    """Ray errors that say a node, an actor or an object went away (not that the model code failed)."""
    import ray.exceptions as rex

    return tuple(getattr(rex, n) for n in ("RayActorError", "NodeDiedError", "ObjectLostError",
                                           "WorkerCrashedError") if hasattr(rex, n))


def map_model_pool(blocks: list[pa.Table], actor: type, actor_kwargs: dict, batch_size: int, actors: int, ray_cfg,
                   stats: dict | None = None, started: float | None = None,
                   keys: tuple[str, ...] | None = None) -> Iterator[dict]:
    """Yield each output batch (numpy columns) of ``actor(**actor_kwargs)`` mapped over ``blocks`` in batches
    of ``batch_size`` rows by ``actors`` workers at a time, each with ``ray.actor_cpus`` CPUs (and
    ``ray.actor_gpus`` GPUs), on the pool :func:`pool_kind` picks: ``tasks`` (reused worker processes that
    keep the model loaded across stages) or ``actors`` (a fresh actor per worker; a dead one is restarted).
    A batch whose worker died is retried (``ray.actor_task_retries``). ``stats`` (optional) receives when
    the first output batch arrived, counted from ``started`` (default: now), and its rows: the pool's
    start-up cost.

    ``keys``: columns that identify an input row and come back in its output rows. With them, a Ray system
    failure that ends the dataset (a node lost with its actors and object store: the actor's batch retries
    run out before Ray has restarted it elsewhere) starts a new pool over the rows not yet yielded, at
    most ``ray.pool_restarts`` times: no row is lost, and none is yielded twice."""
    t0 = time.perf_counter() if started is None else started
    from distill.raycluster import ensure_ray

    ensure_ray(ray_cfg)
    pool = _task_batches if pool_kind(ray_cfg) == "tasks" else _pool_batches
    if not keys:
        yield from pool(blocks, actor, actor_kwargs, batch_size, actors, ray_cfg, stats, t0)
        return
    done: set = set()
    for attempt in range(ray_cfg.pool_restarts + 1):
        try:
            for batch in pool(blocks, actor, actor_kwargs, batch_size, actors, ray_cfg, stats, t0):
                done.update(zip(*(batch[k].tolist() for k in keys)))
                yield batch
            return
        except _system_errors() as err:
            if attempt == ray_cfg.pool_restarts:
                raise
            blocks = _rows_not_in(blocks, keys, done)
            print(f"[ray data] {type(err).__name__} ended the {actor.__name__} pool ({str(err)[:160]}); "
                  f"a new pool takes the {sum(b.num_rows for b in blocks)} rows not yet back "
                  f"(restart {attempt + 1} of {ray_cfg.pool_restarts})", flush=True)
            if not blocks:
                return
            time.sleep(ray_cfg.pool_restart_wait_s)  # let Ray see the node gone before placing new actors


def _rows_not_in(blocks: list[pa.Table], keys: tuple[str, ...], done: set) -> list[pa.Table]:
    """The rows of ``blocks`` whose ``keys`` values are not in ``done``, in the same blocks (empty ones dropped)."""
    out = []
    for b in blocks:
        cols = [b.column(k).to_pylist() for k in keys]
        keep = [i for i, key in enumerate(zip(*cols)) if key not in done]
        if keep:
            out.append(b.take(pa.array(keep, pa.int64())) if len(keep) < b.num_rows else b)
    return out


def pool_kind(ray_cfg) -> str:
    """``ray.stage_pool``, with ``auto`` resolved: ``actors`` where the stage's workers hold GPUs (a reused
    process keeps the first device it saw), ``tasks`` elsewhere."""
    kind = getattr(ray_cfg, "stage_pool", "auto")
    if kind == "auto":
        return "actors" if ray_cfg.actor_gpus else "tasks"
    return kind


def _first_batch(stats: dict | None, t0: float, batch: dict) -> None:
    if stats is not None and "first_batch_s" not in stats:
        stats.update(first_batch_s=time.perf_counter() - t0, first_rows=len(next(iter(batch.values()))))


def _task_batches(blocks, actor, actor_kwargs, batch_size, actors, ray_cfg, stats, t0) -> Iterator[dict]:
    """The ``tasks`` pool: distill.worker_models.apply (named after ``actor``) as a Ray Data task function, at
    most ``actors`` at once; a task whose process died is retried ``ray.actor_task_retries`` times (an exception
    raised by the model is not retried: it fails the stage at once)."""
    import ray.data
    from ray.data import TaskPoolStrategy

    from distill import worker_models

    retries = ray_cfg.actor_task_retries
    with warnings.catch_warnings():  # Ray 2.60 deprecates both ways to set max_retries and names no third
        warnings.filterwarnings("ignore", message="`ray_remote_args_fn` is deprecated")
        ds = ray.data.from_blocks(blocks).map_batches(
            worker_models.task_fn(actor), fn_kwargs={"cls": actor, "kwargs": actor_kwargs,
                                            "key": worker_models.model_key(actor, actor_kwargs)},
            batch_size=batch_size, compute=TaskPoolStrategy(size=actors), num_cpus=ray_cfg.actor_cpus,
            batch_format="numpy", ray_remote_args_fn=lambda: {"max_retries": retries})
    for batch in ds.iter_batches(batch_size=None, batch_format="numpy"):
        _first_batch(stats, t0, batch)
        yield batch


def _pool_batches(blocks, actor, actor_kwargs, batch_size, actors, ray_cfg, stats, t0) -> Iterator[dict]:
    """The ``actors`` pool: a fresh Ray Data actor pool, held by a :class:`PoolLease`."""
    import ray.data
    from ray.data import ActorPoolStrategy

    with PoolLease() as lease:
        # from_blocks: the blocks as they are, metadata computed here (from_arrow runs a Ray task per block for
        # it, which needs worker processes of its own before the pool can start)
        ds = ray.data.from_blocks(blocks)
        ds = ds.map_batches(
            leased(actor), fn_constructor_kwargs={"lease": lease.key, **actor_kwargs}, batch_size=batch_size,
            compute=ActorPoolStrategy(size=actors), num_cpus=ray_cfg.actor_cpus,
            num_gpus=ray_cfg.actor_gpus or None, batch_format="numpy",
            max_restarts=-1, max_task_retries=ray_cfg.actor_task_retries)  # a dead actor restarts; batch retried
        for batch in ds.iter_batches(batch_size=None, batch_format="numpy"):
            _first_batch(stats, t0, batch)
            yield batch


class PoolLease:
    """A key in Ray's GCS key-value store that exists while the driver reads one actor pool (``with``).
    The GCS outlives any worker node, so an actor restarted anywhere can still see whether its pool is open."""

    NAMESPACE = "distill_pools"

    def __init__(self):
        self.key = f"pool-{uuid.uuid4().hex}"

    def __enter__(self) -> PoolLease:
        from ray.experimental import internal_kv

        internal_kv._internal_kv_put(self.key, b"open", namespace=self.NAMESPACE)
        return self

    def __exit__(self, *exc) -> None:
        from ray.experimental import internal_kv

        internal_kv._internal_kv_del(self.key, namespace=self.NAMESPACE)

    @classmethod
    def is_open(cls, key: str) -> bool:
        from ray.experimental import internal_kv

        return bool(internal_kv._internal_kv_exists(key, namespace=cls.NAMESPACE))


class LeasedActor:
    """The pool's actor class around the model class ``inner``: builds ``inner(**kwargs)`` and hands it every
    batch; a daemon thread checks the pool's lease every ``check_s`` seconds and, once it is gone, kills this
    actor with ``no_restart`` (a plain exit would be restarted: the pool asks for ``max_restarts=-1``)."""

    inner: type
    check_s = 2.0

    def __init__(self, lease: str, **kwargs):
        threading.Thread(target=self._watch, args=(lease,), name="pool-lease", daemon=True).start()
        self.model = self.inner(**kwargs)

    def __call__(self, batch):
        return self.model(batch)

    def _watch(self, lease: str) -> None:
        import ray

        while True:
            time.sleep(self.check_s)
            try:
                if PoolLease.is_open(lease):
                    continue
            except Exception:  # the GCS briefly unreachable: ask again next time
                continue
            ray.kill(ray.get_runtime_context().current_actor, no_restart=True)
            return


def leased(actor: type) -> type:
    """A :class:`LeasedActor` around ``actor``, named as ``actor`` (Ray Data names the pool after it)."""
    return type(actor.__name__, (LeasedActor,), {"inner": actor, "__qualname__": actor.__name__,
                                                 "__doc__": actor.__doc__})


class ShardAssembler:
    """Rows come back from an actor pool in any order; a shard is complete once every one of its rows is.

    ``shards``: {k: the row keys of shard k, in the shard's order}; keys are unique across shards. Each
    output batch goes to :meth:`add`, which returns the shards it completed. A row with an unknown key, or
    one that already came back, is not handed on (:meth:`check` reports it)."""

    def __init__(self, shards: dict[int, list]):
        self.shards = shards
        self.shard_of = {key: k for k, keys in shards.items() for key in keys}
        if len(self.shard_of) != sum(len(keys) for keys in shards.values()):
            raise ValueError("row keys must be unique")
        self._seen: dict[int, set] = {k: set() for k in shards}
        self._parts: dict[int, list] = {k: [] for k in shards}
        self.got: list = []

    def add(self, keys: list, batch, take: Callable) -> list[tuple[int, list]]:
        """``batch``'s rows have ``keys``; ``take(batch, positions)`` is the part of it at those positions.
        Returns (k, the parts of shard k in arrival order) for every shard this batch completed, by k."""
        self.got.extend(keys)
        rows: dict[int, list[int]] = {}
        for i, key in enumerate(keys):
            k = self.shard_of.get(key)
            if k is None or k not in self._seen or key in self._seen[k]:
                continue  # unknown, of a finished shard, or a duplicate: check() reports it
            self._seen[k].add(key)
            rows.setdefault(k, []).append(i)
        done = []
        for k in sorted(rows):
            self._parts[k].append(take(batch, rows[k]))
            if len(self._seen[k]) == len(self.shards[k]):
                del self._seen[k]
                done.append((k, self._parts.pop(k)))
        return done

    def check(self, stage: str) -> int:
        """Rows in = rows out over every shard (:func:`check_rows`); returns the rows that came back."""
        check_rows(stage, list(self.shard_of), self.got)
        return len(self.got)


class ShardResume:
    """The shards of stage ``stage`` saved so far under ``.<output>.partial/`` (distill.partial).

    ``shard_keys``: each shard's row keys (strings); ``read_keys(path)``: the keys a saved shard holds;
    ``depends_on``: what else the shards depend on besides the stage's digest, the run's inputs and the keys
    (the model's files, its arguments). Shards saved by an interrupted run with the same fingerprint and
    exactly the expected keys are kept (:attr:`done`); :attr:`todo` are the others. :meth:`save` writes one
    (the fault point ``<stage>.shard`` fires after each save: distill/faults.py)."""

    def __init__(self, rd, stage: str, shard_keys: list[list[str]], read_keys: Callable[[Path], list[str]],
                 *depends_on, verb: str = "computing"):
        from distill import faults
        from distill.manifest import stage_digest
        from distill.partial import PartialShards, fingerprint

        keys_digest = hashlib.sha256("\n".join(k for keys in shard_keys for k in keys).encode()).hexdigest()
        key = fingerprint(stage_digest(rd.config, stage), rd.manifest.get("inputs"), *depends_on, keys_digest)
        final = rd.stage_path(stage)
        self.partial = PartialShards(final.with_name(f".{final.name}.partial"), key)
        self.shards = len(shard_keys)
        self.done = self.partial.finished(shard_keys, read_keys)
        self.todo = [k for k in range(len(shard_keys)) if k not in self.done]
        if self.done:
            print(f"[{stage}] resuming: {len(self.done)} of {len(shard_keys)} shards already saved, "
                  f"{verb} {len(self.todo)}")
        self._fault = faults.Fault(faults.from_env(f"{stage}.shard"))

    def save(self, k: int, write: Callable[[Path], None]) -> None:
        self.partial.save(k, write)
        self._fault.hit()

    def path(self, k: int) -> Path:
        return self.partial.shard_path(k)

    def drop(self) -> None:
        self.partial.drop()
