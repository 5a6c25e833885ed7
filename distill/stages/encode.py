"""Stage ``encode``: Ray Data encodes texts with the student into float32 embeddings.

Texts are sorted by length before they become blocks, so batches pad little; an actor pool of student
encoders runs ``map_batches``; rows in equal embeddings out, checked by id. The corpus embeddings are
written as parquet shards (``docid``, ``embedding`` fixed-size list of float32) of
``encoding.shard_rows`` documents each. Each shard is saved as soon as all its rows are back
(distill/partial.py), so a re-run after a crash encodes only the shards that were not saved.
An actor that dies is restarted by Ray and its batch retried, at most ``ray.actor_task_retries`` times.
The forward runs at ``encoding.precision`` (distill.precision: ``auto`` is bf16 autocast where the hardware
has native bf16, fp32 elsewhere); the embeddings are float32 either way, and the manifest records which.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from distill.faults import Fault


class EncoderActor:
    """Ray Data actor: holds one student encoder, embeds a batch of ``text`` into ``embedding``."""

    def __init__(self, model_dir: str, encoder_kwargs: dict, threads: int, batch_size: int,
                 fault: dict | None = None, precision: str = "fp32"):
        import torch

        from distill.models import DualEncoder
        from distill.precision import resolve

        torch.set_num_threads(threads)
        if encoder_kwargs:
            self.encoder = DualEncoder(model_dir, **encoder_kwargs)
        else:
            self.encoder = DualEncoder.load(model_dir)
        if torch.cuda.is_available():  # Ray exposes a GPU to this actor only when ray.actor_gpus > 0
            self.encoder.to("cuda")
        self.precision = resolve(precision, self.encoder.device)  # fp32 | bf16 (bf16 autocast); auto: this device's
        self.batch_size = batch_size
        self.fault = Fault(fault)

    def __call__(self, batch: dict) -> dict:
        self.fault.hit()
        emb = self.encoder.encode(list(batch["text"]), batch_size=self.batch_size, precision=self.precision)
        return {"id": batch["id"], "embedding": emb}


def encode_texts(ids: list[str], texts: list[str], model_dir: str, ray_cfg, batch_size: int, actors: int,
                 encoder_kwargs: dict | None = None, stats: dict | None = None,
                 precision: str | None = None) -> np.ndarray:
    """Embed ``texts`` on a Ray Data actor pool; returns [n, dim] float32 in input order.
    ``stats`` (optional) receives when the first output batch arrived and its rows (start-up cost);
    ``precision``: the actors' (distill.precision; None: fp32)."""
    if len(set(ids)) != len(ids):
        raise ValueError("encode_texts: ids must be unique")
    order = np.argsort([-len(t) for t in texts], kind="stable")
    table = pa.table({"id": [ids[i] for i in order], "text": [texts[i] for i in order]})
    got_ids: list[str] = []
    parts: list[np.ndarray] = []
    for got, emb in _embed_blocks(blocks_of(table, actors * 4), model_dir, ray_cfg, batch_size, actors,
                                  encoder_kwargs, stats, precision):
        got_ids.extend(got)
        parts.append(emb)
    check_rows("encode", ids, got_ids)
    pos = {d: i for i, d in enumerate(got_ids)}
    return np.concatenate(parts)[[pos[d] for d in ids]]


def encode_shards(shards: dict[int, list[str]], text_of, model_dir: str, ray_cfg, batch_size: int, actors: int,
                  on_shard, encoder_kwargs: dict | None = None, precision: str | None = None) -> int:
    """Embed several shards of ids in one actor pool; ``on_shard(k, ids, emb)`` runs on the driver as soon
    as every row of shard ``k`` is back (rows in the shard's order). Each shard is length-sorted inside
    and the shards are queued in order, so the first shards finish first. Rows in = rows out, checked;
    returns the rows embedded."""
    shard_of = {d: k for k, ids in shards.items() for d in ids}
    if len(shard_of) != sum(len(ids) for ids in shards.values()):
        raise ValueError("encode_shards: ids must be unique")
    per_shard = max(1, -(-actors * 4 // max(1, len(shards))))
    blocks = []
    for ids in shards.values():
        texts = [text_of(d) for d in ids]
        order = np.argsort([-len(t) for t in texts], kind="stable")
        blocks += blocks_of(pa.table({"id": [ids[i] for i in order], "text": [texts[i] for i in order]}), per_shard)
    pending: dict[int, dict[str, np.ndarray]] = {k: {} for k in shards}
    got_ids: list[str] = []
    for got, emb in _embed_blocks(blocks, model_dir, ray_cfg, batch_size, actors, encoder_kwargs, None, precision):
        got_ids.extend(got)
        for d, e in zip(got, emb):
            k = shard_of.get(d)
            if k is None or k not in pending:
                continue  # unknown id, or a duplicate of a saved shard: check_rows below reports it
            pending[k][d] = e
            if len(pending[k]) == len(shards[k]):
                done = pending.pop(k)
                on_shard(k, shards[k], np.stack([done[x] for x in shards[k]]))
    check_rows("encode", list(shard_of), got_ids)
    return len(got_ids)


def _embed_blocks(blocks: list[pa.Table], model_dir: str, ray_cfg, batch_size: int, actors: int,
                  encoder_kwargs: dict | None, stats: dict | None, precision: str | None = None):
    """Yield (ids, [n, dim] float32) per output batch of the EncoderActor pool over ``blocks`` (id, text)."""
    import time

    t0 = time.perf_counter()
    import ray.data
    from ray.data import ActorPoolStrategy

    from distill import faults
    from distill.raycluster import actor_threads, ensure_ray

    ensure_ray(ray_cfg)
    ds = ray.data.from_arrow(blocks)
    ds = ds.map_batches(
        EncoderActor,
        fn_constructor_kwargs={"model_dir": model_dir, "encoder_kwargs": encoder_kwargs or {},
                               "threads": actor_threads(ray_cfg.actor_cpus), "batch_size": batch_size,
                               "fault": faults.from_env("encode.batch"), "precision": precision or "fp32"},
        batch_size=batch_size, compute=ActorPoolStrategy(size=actors),
        num_cpus=ray_cfg.actor_cpus, num_gpus=ray_cfg.actor_gpus or None, batch_format="numpy",
        max_restarts=-1, max_task_retries=ray_cfg.actor_task_retries)
    for batch in ds.iter_batches(batch_size=None, batch_format="numpy"):
        if stats is not None and "first_batch_s" not in stats:
            stats.update(first_batch_s=time.perf_counter() - t0, first_rows=len(batch["id"]))
        yield [str(x) for x in batch["id"]], np.asarray(batch["embedding"], dtype=np.float32)


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


def embeddings_table(docids: list[str], emb: np.ndarray) -> pa.Table:
    """(``docid``, ``embedding`` fixed-size list of float32)."""
    chunk = np.ascontiguousarray(emb, dtype=np.float32)
    col = pa.FixedSizeListArray.from_arrays(pa.array(chunk.reshape(-1), pa.float32()), emb.shape[1])
    return pa.table({"docid": docids, "embedding": col})


def write_embeddings(path: Path, docids: list[str], emb: np.ndarray, shard_rows: int = 100_000) -> int:
    """Write parquet shards ``part-00000.parquet``...; returns the number of shards."""
    path.mkdir(parents=True, exist_ok=True)
    n = 0
    for n, start in enumerate(range(0, len(docids), shard_rows)):
        pq.write_table(embeddings_table(docids[start:start + shard_rows], emb[start:start + shard_rows]),
                       path / f"part-{n:05d}.parquet")
    return n + 1


def read_embeddings(path: Path) -> tuple[list[str], np.ndarray]:
    table = pq.read_table(sorted(Path(path).glob("part-*.parquet")))
    dim = table.schema.field("embedding").type.list_size
    flat = table.column("embedding").combine_chunks().flatten().to_numpy(zero_copy_only=False)
    return table.column("docid").to_pylist(), flat.reshape(-1, dim).astype(np.float32)


def run(rd, data, student_dir: Path, encoder_kwargs: dict | None = None) -> dict:
    """Encode the corpus in shards of ``encoding.shard_rows`` documents (corpus order). Shards saved by an
    interrupted run with the same config, inputs and student are kept; only the others are encoded. The
    output's ``part-<k>.parquet`` is shard k; ``shards_reused`` + ``shards_encoded`` = ``shards``.
    ``student_dir`` is the trained student (loaded with DualEncoder.load), or with ``encoder_kwargs`` any
    model dir built as DualEncoder(student_dir, **encoder_kwargs): an asymmetric run encodes with the teacher."""
    import hashlib
    import os
    import shutil

    from distill import faults
    from distill.manifest import stage_digest
    from distill.partial import PartialShards, dir_digest, fingerprint
    from distill.precision import for_stage

    cfg = rd.config
    precision = for_stage(cfg, "encode", warn=True)  # in the stage digest too, so in the shards' fingerprint
    docids = list(data.corpus)
    if not docids:
        raise RuntimeError("encode: the corpus has no documents")
    rows = cfg.encoding.shard_rows
    shard_ids = [docids[i:i + rows] for i in range(0, len(docids), rows)]
    final = rd.stage_path("encode")
    key = fingerprint(stage_digest(cfg, "encode"), rd.manifest.get("inputs"), dir_digest(student_dir), encoder_kwargs,
                      hashlib.sha256("\n".join(docids).encode()).hexdigest())  # what the saved shards depend on
    partial = PartialShards(final.with_name(f".{final.name}.partial"), key)
    done = partial.finished(shard_ids, lambda p: pq.read_table(p, columns=["docid"]).column("docid").to_pylist())
    todo = {k: ids for k, ids in enumerate(shard_ids) if k not in done}
    if done:
        print(f"[encode] resuming: {len(done)} of {len(shard_ids)} shards already saved, encoding {len(todo)}")
    fault = faults.Fault(faults.from_env("encode.shard"))

    def save(k: int, ids: list[str], emb: np.ndarray) -> None:
        partial.save(k, lambda tmp: pq.write_table(embeddings_table(ids, emb), tmp))
        fault.hit()

    if todo:
        encode_shards(todo, data.doc_text, str(student_dir), cfg.ray, cfg.encoding.batch_size, cfg.encoding.actors,
                      save, encoder_kwargs, precision)
    with rd.atomic_output("encode") as tmp:
        for k in range(len(shard_ids)):  # hard links: the shards stay in place until the output is renamed
            src, dst = partial.shard_path(k), tmp / f"part-{k:05d}.parquet"
            try:
                os.link(src, dst)
            except OSError:
                shutil.copy2(src, dst)
    dim = pq.read_schema(final / "part-00000.parquet").field("embedding").type.list_size
    partial.drop()
    n_out = sum(pq.read_metadata(p).num_rows for p in final.glob("part-*.parquet"))
    counts = {"docs": len(docids), "embeddings": int(n_out), "dim": int(dim),
              "shards": len(shard_ids), "shards_reused": len(done), "shards_encoded": len(todo)}
    rd.mark_done("encode", counts, encoded_by="teacher" if encoder_kwargs else "student", precision=precision)
    return counts


