"""Stage ``encode``: Ray Data encodes texts with the student into float32 embeddings.

Texts are sorted by length before they become blocks, so batches pad little; an actor pool of student
encoders runs ``map_batches``; rows in equal embeddings out, checked by id. The corpus embeddings are
written as parquet shards (``docid``, ``embedding`` fixed-size list of float32).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq


class EncoderActor:
    """Ray Data actor: holds one student encoder, embeds a batch of ``text`` into ``embedding``."""

    def __init__(self, model_dir: str, encoder_kwargs: dict, threads: int, batch_size: int):
        import torch

        from distill.models import DualEncoder

        torch.set_num_threads(threads)
        if encoder_kwargs:
            self.encoder = DualEncoder(model_dir, **encoder_kwargs)
        else:
            self.encoder = DualEncoder.load(model_dir)
        self.batch_size = batch_size

    def __call__(self, batch: dict) -> dict:
        emb = self.encoder.encode(list(batch["text"]), batch_size=self.batch_size)
        return {"id": batch["id"], "embedding": emb}


def encode_texts(ids: list[str], texts: list[str], model_dir: str, ray_cfg, batch_size: int, actors: int,
                 encoder_kwargs: dict | None = None, stats: dict | None = None) -> np.ndarray:
    """Embed ``texts`` on a Ray Data actor pool; returns [n, dim] float32 in input order.
    ``stats`` (optional) receives when the first output batch arrived and its rows (start-up cost)."""
    import time

    t0 = time.perf_counter()
    import ray.data
    from ray.data import ActorPoolStrategy

    from distill.raycluster import actor_threads, ensure_ray

    ensure_ray(ray_cfg)
    if len(set(ids)) != len(ids):
        raise ValueError("encode_texts: ids must be unique")
    order = np.argsort([-len(t) for t in texts], kind="stable")
    table = pa.table({"id": [ids[i] for i in order], "text": [texts[i] for i in order]})
    ds = ray.data.from_arrow(blocks_of(table, actors * 4))
    ds = ds.map_batches(
        EncoderActor,
        fn_constructor_kwargs={"model_dir": model_dir, "encoder_kwargs": encoder_kwargs or {},
                               "threads": actor_threads(ray_cfg.actor_cpus), "batch_size": batch_size},
        batch_size=batch_size, compute=ActorPoolStrategy(size=actors),
        num_cpus=ray_cfg.actor_cpus, num_gpus=ray_cfg.actor_gpus or None, batch_format="numpy")
    got_ids: list[str] = []
    parts: list[np.ndarray] = []
    for batch in ds.iter_batches(batch_size=None, batch_format="numpy"):
        if stats is not None and "first_batch_s" not in stats:
            stats.update(first_batch_s=time.perf_counter() - t0, first_rows=len(batch["id"]))
        got_ids.extend(str(x) for x in batch["id"])
        parts.append(np.asarray(batch["embedding"], dtype=np.float32))
    check_rows("encode", ids, got_ids)
    pos = {d: i for i, d in enumerate(got_ids)}
    return np.concatenate(parts)[[pos[d] for d in ids]]


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


def write_embeddings(path: Path, docids: list[str], emb: np.ndarray, shard_rows: int = 100_000) -> int:
    """Write parquet shards ``part-00000.parquet``...; returns the number of shards."""
    path.mkdir(parents=True, exist_ok=True)
    dim = emb.shape[1]
    n = 0
    for n, start in enumerate(range(0, len(docids), shard_rows)):
        chunk = emb[start:start + shard_rows].astype(np.float32)
        col = pa.FixedSizeListArray.from_arrays(pa.array(chunk.reshape(-1), pa.float32()), dim)
        pq.write_table(pa.table({"docid": docids[start:start + shard_rows], "embedding": col}),
                       path / f"part-{n:05d}.parquet")
    return n + 1


def read_embeddings(path: Path) -> tuple[list[str], np.ndarray]:
    table = pq.read_table(sorted(Path(path).glob("part-*.parquet")))
    dim = table.schema.field("embedding").type.list_size
    flat = table.column("embedding").combine_chunks().flatten().to_numpy(zero_copy_only=False)
    return table.column("docid").to_pylist(), flat.reshape(-1, dim).astype(np.float32)


def run(rd, data, student_dir: Path) -> dict:
    cfg = rd.config
    docids = list(data.corpus)
    texts = [data.doc_text(d) for d in docids]
    emb = encode_texts(docids, texts, str(student_dir), cfg.ray, cfg.encoding.batch_size, cfg.encoding.actors)
    with rd.atomic_output("encode") as tmp:
        shards = write_embeddings(tmp, docids, emb)
    counts = {"docs": len(docids), "embeddings": int(emb.shape[0]), "dim": int(emb.shape[1]), "shards": shards}
    rd.mark_done("encode", counts)
    return counts


