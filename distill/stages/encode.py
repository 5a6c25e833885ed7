"""Stage ``encode``: Ray Data encodes texts with the student into float32 embeddings.

Texts are sorted by length before they become blocks, so batches pad little; a Ray Data model pool
(distill.raydata) of student encoders runs ``map_batches``; rows in equal embeddings out, checked by id. The corpus embeddings are
written as parquet shards (``docid``, ``embedding`` fixed-size list of float32) of
``encoding.shard_rows`` documents each. Each shard is saved as soon as all its rows are back
(distill/partial.py), so a re-run after a crash encodes only the shards that were not saved.
An actor that dies is restarted by Ray and its batch retried, at most ``ray.actor_task_retries`` times.
The forward runs at ``encoding.precision`` (distill.precision: ``auto`` is bf16 autocast where the hardware
has native bf16 and it measured faster, fp32 elsewhere); the embeddings are float32 either way, and the
manifest records which.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from distill.faults import Fault
from distill.raydata import ShardAssembler, ShardResume, blocks_of, check_rows, map_model_pool


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


def _id_text_table(ids: list[str], texts: list[str]) -> pa.Table:
    """(``id``, ``text``), longest text first: batches of similar lengths pad little."""
    order = np.argsort([-len(t) for t in texts], kind="stable")
    return pa.table({"id": [ids[i] for i in order], "text": [texts[i] for i in order]})


def encode_texts(ids: list[str], texts: list[str], model_dir: str, ray_cfg, batch_size: int, actors: int,
                 encoder_kwargs: dict | None = None, stats: dict | None = None,
                 precision: str | None = None) -> np.ndarray:
    """Embed ``texts`` on a Ray Data model pool; returns [n, dim] float32 in input order.
    ``stats`` (optional) receives when the first output batch arrived and its rows (start-up cost);
    ``precision``: the actors' (distill.precision; None: fp32)."""
    if len(set(ids)) != len(ids):
        raise ValueError("encode_texts: ids must be unique")
    got_ids: list[str] = []
    parts: list[np.ndarray] = []
    for got, emb in _embed_blocks(blocks_of(_id_text_table(ids, texts), actors * 4), model_dir, ray_cfg, batch_size,
                                  actors, encoder_kwargs, stats, precision):
        got_ids.extend(got)
        parts.append(emb)
    check_rows("encode", ids, got_ids)
    pos = {d: i for i, d in enumerate(got_ids)}
    return np.concatenate(parts)[[pos[d] for d in ids]]


def encode_shards(shards: dict[int, list[str]], text_of, model_dir: str, ray_cfg, batch_size: int, actors: int,
                  on_shard, encoder_kwargs: dict | None = None, precision: str | None = None) -> int:
    """Embed several shards of ids in one model pool; ``on_shard(k, ids, emb)`` runs on the driver as soon
    as every row of shard ``k`` is back (rows in the shard's order). Each shard is length-sorted inside
    and the shards are queued in order, so the first shards finish first. Rows in = rows out, checked;
    returns the rows embedded."""
    assembler = ShardAssembler(shards)  # ValueError: ids must be unique
    per_shard = max(1, -(-actors * 4 // max(1, len(shards))))
    blocks = [b for ids in shards.values() for b in blocks_of(_id_text_table(ids, [text_of(d) for d in ids]),
                                                                per_shard)]
    for got, emb in _embed_blocks(blocks, model_dir, ray_cfg, batch_size, actors, encoder_kwargs, None, precision):
        for k, parts in assembler.add(got, (got, emb), lambda b, pos: ([b[0][i] for i in pos], b[1][pos])):
            pos = {d: i for i, d in enumerate(d for p in parts for d in p[0])}
            on_shard(k, shards[k], np.concatenate([p[1] for p in parts])[[pos[d] for d in shards[k]]])
    return assembler.check("encode")


def _embed_blocks(blocks: list[pa.Table], model_dir: str, ray_cfg, batch_size: int, actors: int,
                  encoder_kwargs: dict | None, stats: dict | None, precision: str | None = None):
    """Yield (ids, [n, dim] float32) per output batch of the EncoderActor pool over ``blocks`` (id, text)."""
    from distill import faults
    from distill.raycluster import actor_threads

    kwargs = {"model_dir": model_dir, "encoder_kwargs": encoder_kwargs or {},
              "threads": actor_threads(ray_cfg.actor_cpus), "batch_size": batch_size,
              "fault": faults.from_env("encode.batch"), "precision": precision or "fp32"}
    for batch in map_model_pool(blocks, EncoderActor, kwargs, batch_size, actors, ray_cfg, stats, keys=("id",)):
        yield [str(x) for x in batch["id"]], np.asarray(batch["embedding"], dtype=np.float32)


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


def run(rd, data) -> dict:
    """Stage ``encode``: the corpus embedded with the trained student, or, for an asymmetric student
    (``training.asymmetric``, EmbedDistill), with the teacher: the index then holds its document vectors."""
    if rd.config.training.asymmetric:
        from distill.layout import teacher_dir

        t = rd.config.teacher
        return encode_corpus(rd, data, teacher_dir(rd), {"max_length": t.max_length,
                                                          "trust_remote_code": t.trust_remote_code})
    return encode_corpus(rd, data, rd.stage_path("train"))


def encode_corpus(rd, data, student_dir: Path, encoder_kwargs: dict | None = None) -> dict:
    """Encode the corpus in shards of ``encoding.shard_rows`` documents (corpus order). Shards saved by an
    interrupted run with the same config, inputs and student are kept; only the others are encoded. The
    output's ``part-<k>.parquet`` is shard k; ``shards_reused`` + ``shards_encoded`` = ``shards``.
    ``student_dir`` is the trained student (loaded with DualEncoder.load), or with ``encoder_kwargs`` any
    model dir built as DualEncoder(student_dir, **encoder_kwargs): an asymmetric run encodes with the teacher."""
    from distill.partial import dir_digest
    from distill.precision import for_stage

    cfg = rd.config
    encoder = encoder_digest(rd, student_dir, encoder_kwargs)
    precision = for_stage(cfg, "encode", warn=True)  # in the stage digest too, so in the shards' fingerprint
    docids = list(data.corpus)
    if not docids:
        raise RuntimeError("encode: the corpus has no documents")
    rows = cfg.encoding.shard_rows
    shard_ids = [docids[i:i + rows] for i in range(0, len(docids), rows)]
    resume = ShardResume(rd, "encode", shard_ids,
                         lambda p: pq.read_table(p, columns=["docid"]).column("docid").to_pylist(),
                         dir_digest(student_dir), encoder_kwargs, verb="encoding")
    if resume.todo:
        encode_shards({k: shard_ids[k] for k in resume.todo}, data.doc_text, str(student_dir), cfg.ray,
                      cfg.encoding.batch_size, cfg.encoding.actors,
                      lambda k, ids, emb: resume.save(k, lambda tmp: pq.write_table(embeddings_table(ids, emb), tmp)),
                      encoder_kwargs, precision)
    final = rd.stage_path("encode")
    with rd.atomic_output("encode") as tmp:
        for k in range(len(shard_ids)):  # hard links: the shards stay in place until the output is renamed
            link_or_copy(resume.path(k), tmp / f"part-{k:05d}.parquet")
    dim = pq.read_schema(final / "part-00000.parquet").field("embedding").type.list_size
    resume.drop()
    n_out = sum(pq.read_metadata(p).num_rows for p in final.glob("part-*.parquet"))
    counts = {"docs": len(docids), "embeddings": int(n_out), "dim": int(dim),
              "shards": len(shard_ids), "shards_reused": len(resume.done), "shards_encoded": len(resume.todo)}
    rd.mark_done("encode", counts, encoded_by="teacher" if encoder_kwargs else "student", precision=precision,
                 encoder_digest=encoder)
    return counts


def encoder_digest(rd, model_dir, encoder_kwargs: dict | None = None) -> str | None:
    """The content digest (distill.manifest.content_digest of its files) of the model that encodes the
    documents, which the index records as ``encoder_digest`` so serving can check that the student it loads
    is the one the index was built with (serve.snapshot). The student's; for an asymmetric run, the
    teacher's when it is the run's own fine-tuned ``teacher_model/``, else None (a model named from
    elsewhere is not hashed: serving skips the pairing check for an index the teacher encoded)."""
    from distill.manifest import content_digest, dir_checksums

    model_dir = Path(model_dir)
    if encoder_kwargs and model_dir.resolve() != rd.stage_path("teacher").resolve():
        return None
    return content_digest(dir_checksums(model_dir)) if model_dir.is_dir() else None


def link_or_copy(src: Path, dst: Path) -> None:
    """A hard link of ``src`` at ``dst``, or a copy where the file system cannot link."""
    import os
    import shutil

    try:
        os.link(src, dst)
    except OSError:
        shutil.copy2(src, dst)
