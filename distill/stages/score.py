"""Stage ``score``: Ray Data shards the (query, candidate) pairs over an actor pool of teachers.

Pairs are sorted by length before they become blocks (length-bucketed batches); each actor holds one
teacher and returns its raw logit per pair (a dual-encoder teacher returns q . d). Rows in equal rows
out, checked by (qid, docid). A warning is raised when the teacher's scores make softmax(t / T) nearly
one-hot or nearly uniform at the configured temperature (soft labels would then carry little). A reader
teacher (``teacher.kind: reader``) reads each question's candidates together and returns its
cross-attention per candidate; a cross-encoder with ``teacher.signal: attention`` returns its
query->passage attention instead of its logit (both: distill.reader).

Pairs are scored in shards of ``scoring.shard_rows`` (candidate order), each saved under
``.teacher.partial/`` when all its rows are back (distill/partial.py), so a re-run after a crash scores
only the shards that were not saved, as ``encode`` does. A reader scores the stage whole (it reads each
question's candidates together).
"""

from __future__ import annotations

import logging
import math
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq

from distill.stages.encode import blocks_of, check_rows

log = logging.getLogger(__name__)


class TeacherActor:
    """Ray Data actor: scores a batch of (``query``, ``doc``) text pairs with the teacher."""

    def __init__(self, model_dir: str, kind: str, max_length: int, threads: int, batch_size: int,
                 trust_remote_code: bool = False, head: str = "linear", store_embeddings: bool = False,
                 store_layer_scores: bool = False, signal: str = "logits", attention: dict | None = None,
                 fault: dict | None = None):
        import torch

        from distill.faults import Fault
        from distill.models import CrossEncoder, DualEncoder

        torch.set_num_threads(threads)
        self.kind = kind
        self.batch_size = batch_size
        self.store_embeddings = store_embeddings
        self.store_layer_scores = store_layer_scores
        self.signal, self.attention = signal, attention  # signal "attention": distill.reader (cross-encoder)
        self.fault = Fault(fault)  # tests only: DISTILL_FAULT=score.batch@n (distill/faults.py)
        if kind == "cross-encoder":
            self.model = CrossEncoder(model_dir, max_length, trust_remote_code, head)
        else:
            self.model = DualEncoder(model_dir, max_length=max_length, trust_remote_code=trust_remote_code)
        if torch.cuda.is_available():  # Ray exposes a GPU to this actor only when ray.actor_gpus > 0
            self.model.to("cuda")
        self.model.eval()

    def __call__(self, batch: dict) -> dict:
        self.fault.hit()
        q, d = list(batch["query"]), list(batch["doc"])
        out = {"qid": batch["qid"], "docid": batch["docid"]}
        if self.signal == "attention":
            from distill.reader import cross_encoder_attention_scores

            if self.store_layer_scores:
                out["teacher_layer_scores"] = self.model.layer_scores(q, d, self.batch_size)
            out["teacher_score"] = cross_encoder_attention_scores(self.model, q, d, self.attention, self.batch_size)
            return out
        if self.kind == "cross-encoder":  # one forward gives the logits, the dual head's vectors, layer scores
            res = self.model.score_all(q, d, self.batch_size, vectors=self.store_embeddings,
                                       layers=self.store_layer_scores)
            out["teacher_score"] = res["score"]
            if self.store_embeddings:
                out["teacher_q_emb"], out["teacher_d_emb"] = res["q_emb"], res["d_emb"]
            if self.store_layer_scores:
                out["teacher_layer_scores"] = res["layer_scores"]
            return out
        if self.store_layer_scores:
            out["teacher_layer_scores"] = self.model.layer_scores(q, d, self.batch_size)
        # a dual encoder embeds each distinct text once (a query recurs across its candidates)
        uq, qi = np.unique(np.asarray(q, dtype=object), return_inverse=True)
        ud, di = np.unique(np.asarray(d, dtype=object), return_inverse=True)
        qe = self.model.encode(list(uq), self.batch_size)[qi]
        de = self.model.encode(list(ud), self.batch_size)[di]
        out["teacher_score"] = (qe * de).sum(-1).astype(np.float32)
        if self.store_embeddings:
            out["teacher_q_emb"], out["teacher_d_emb"] = qe, de
        return out


def _scored_frames(pairs: pd.DataFrame, queries: dict[str, str], doc_text, teacher_dir: str, teacher_cfg,
                   scoring_cfg, ray_cfg, stats: dict | None = None):
    """Yield one DataFrame (qid, docid, teacher_score [, vectors, layer scores]) per output batch of the
    TeacherActor pool over ``pairs`` (a cross-encoder or dual-encoder teacher)."""
    import time

    t0 = time.perf_counter()
    import ray.data
    from ray.data import ActorPoolStrategy

    from distill import faults
    from distill.raycluster import actor_threads, ensure_ray

    ensure_ray(ray_cfg)
    qtext = [queries[q] for q in pairs["qid"]]
    dtext = [doc_text(d) for d in pairs["docid"]]
    order = np.argsort([-(len(a) + len(b)) for a, b in zip(qtext, dtext)], kind="stable")
    table = pa.table({"qid": pairs["qid"].to_numpy()[order], "docid": pairs["docid"].to_numpy()[order],
                      "query": [qtext[i] for i in order], "doc": [dtext[i] for i in order]})
    bs = scoring_cfg.batch_size
    ds = ray.data.from_arrow(blocks_of(table, max(1, min(scoring_cfg.actors * 4, len(pairs) // bs + 1))))
    ds = ds.map_batches(
        TeacherActor,
        fn_constructor_kwargs={"model_dir": teacher_dir, "kind": teacher_cfg.kind,
                               "max_length": teacher_cfg.max_length, "threads": actor_threads(ray_cfg.actor_cpus),
                               "batch_size": bs, "trust_remote_code": teacher_cfg.trust_remote_code,
                               "head": teacher_cfg.head, "store_embeddings": scoring_cfg.store_embeddings,
                               "store_layer_scores": scoring_cfg.store_layer_scores,
                               "signal": teacher_cfg.signal, "attention": teacher_cfg.attention.model_dump(),
                               "fault": faults.from_env("score.batch")},
        batch_size=bs, compute=ActorPoolStrategy(size=scoring_cfg.actors),
        num_cpus=ray_cfg.actor_cpus, num_gpus=ray_cfg.actor_gpus or None, batch_format="numpy",
        max_restarts=-1, max_task_retries=ray_cfg.actor_task_retries)  # a dead actor restarts; its batch retried
    for b in ds.iter_batches(batch_size=None, batch_format="numpy"):
        if stats is not None and "first_batch_s" not in stats:
            stats.update(first_batch_s=time.perf_counter() - t0, first_rows=len(b["qid"]))
        f = pd.DataFrame({"qid": b["qid"].astype(str), "docid": b["docid"].astype(str),
                          "teacher_score": b["teacher_score"]})
        for col in ("teacher_q_emb", "teacher_d_emb", "teacher_layer_scores"):
            if col in b:
                f[col] = list(np.asarray(b[col], dtype=np.float32))
        yield f


def score_pairs(pairs: pd.DataFrame, queries: dict[str, str], doc_text, teacher_dir: str, teacher_cfg,
                scoring_cfg, ray_cfg, stats: dict | None = None) -> pd.DataFrame:
    """Teacher logits for each (qid, docid) row of ``pairs``; same rows out, checked.
    ``stats`` (optional) receives when the first output batch arrived and its rows (start-up cost)."""
    if teacher_cfg.kind == "reader":  # a FiD reader reads each question's candidates together
        from distill.reader import score_pairs_reader

        return score_pairs_reader(pairs, queries, doc_text, teacher_dir, teacher_cfg, scoring_cfg, ray_cfg, stats)
    frames = list(_scored_frames(pairs, queries, doc_text, teacher_dir, teacher_cfg, scoring_cfg, ray_cfg, stats))
    out = pd.concat(frames, ignore_index=True) if frames else pd.DataFrame(columns=["qid", "docid", "teacher_score"])
    check_rows("score", list(zip(pairs["qid"], pairs["docid"])), list(zip(out["qid"], out["docid"])))
    return pairs.merge(out, on=["qid", "docid"], how="left", validate="one_to_one")


def score_shards(pairs: pd.DataFrame, shards: dict[int, tuple[int, int]], queries, doc_text, teacher_dir: str,
                 teacher_cfg, scoring_cfg, ray_cfg, on_shard) -> int:
    """Score the rows ``pairs[start:stop]`` of every shard ``k: (start, stop)`` in one actor pool;
    ``on_shard(k, frame)`` runs on the driver as soon as every row of shard k is back (the shard's row
    order). Rows in = rows out, checked; returns the rows scored."""
    todo = pd.concat([pairs.iloc[a:b].assign(_shard=k) for k, (a, b) in shards.items()], ignore_index=True)
    shard_of = dict(zip(zip(todo["qid"], todo["docid"]), todo["_shard"]))
    if len(shard_of) != len(todo):
        raise ValueError("score: (qid, docid) pairs must be unique")
    pending: dict[int, list[pd.DataFrame]] = {k: [] for k in shards}
    have = dict.fromkeys(shards, 0)
    got: list[tuple[str, str]] = []
    for f in _scored_frames(todo, queries, doc_text, teacher_dir, teacher_cfg, scoring_cfg, ray_cfg):
        keys = list(zip(f["qid"], f["docid"]))
        got += keys
        ks = np.asarray([shard_of.get(key, -1) for key in keys])
        for k in np.unique(ks):
            if k < 0 or k not in pending:
                continue  # an unknown pair or a duplicate of a saved shard: check_rows below reports it
            pending[k].append(f[ks == k])
            have[k] += int((ks == k).sum())
            a, b = shards[k]
            if have[k] == b - a:
                part = pd.concat(pending.pop(k), ignore_index=True)
                order = pairs.iloc[a:b][["qid", "docid"]].merge(part, on=["qid", "docid"], how="left",
                                                                  validate="one_to_one")
                on_shard(int(k), order)
    check_rows("score", list(shard_of), got)
    return len(got)


def softmax_spread(scores: pd.DataFrame, temperature: float) -> dict:
    """Mean normalised entropy of softmax(t / T) per query (0 = one-hot, 1 = uniform) and the logit std."""
    ents = []
    for _, g in scores.groupby("qid"):
        t = g["teacher_score"].to_numpy(np.float64) / temperature
        if len(t) < 2:
            continue
        p = np.exp(t - t.max())
        p /= p.sum()
        ents.append(float(-(p * np.log(p + 1e-12)).sum() / math.log(len(t))))
    return {"mean_norm_entropy": float(np.mean(ents)) if ents else float("nan"),
            "logit_std": float(scores["teacher_score"].std())}


def _score_with_resume(rd, cands: pd.DataFrame, data, teacher_dir: str) -> tuple[pd.DataFrame, dict]:
    """Score ``cands`` in shards of ``scoring.shard_rows`` pairs (candidate order), each saved under
    ``.teacher.partial/`` when all its rows are back (distill/partial.py): a re-run after a crash scores
    only the shards that were not saved. Returns the scored candidates and shard counts."""
    import hashlib

    from distill import faults
    from distill.manifest import stage_digest
    from distill.partial import PartialShards, dir_digest, fingerprint

    cfg = rd.config
    rows = cfg.scoring.shard_rows
    bounds = [(a, min(a + rows, len(cands))) for a in range(0, len(cands), rows)]
    keys = [f"{q}\t{d}" for q, d in zip(cands["qid"], cands["docid"])]
    shard_keys = [keys[a:b] for a, b in bounds]
    final = rd.stage_path("score")
    key = fingerprint(stage_digest(cfg, "score"), rd.manifest.get("inputs"), dir_digest(Path(teacher_dir)),
                      hashlib.sha256("\n".join(keys).encode()).hexdigest())
    partial = PartialShards(final.with_name(f".{final.name}.partial"), key)

    def read_keys(p):
        t = pq.read_table(p, columns=["qid", "docid"])
        return [f"{q}\t{d}" for q, d in zip(t.column("qid").to_pylist(), t.column("docid").to_pylist())]

    done = partial.finished(shard_keys, read_keys)
    todo = {k: bounds[k] for k in range(len(bounds)) if k not in done}
    if done:
        print(f"[score] resuming: {len(done)} of {len(bounds)} shards already saved, scoring {len(todo)}")
    fault = faults.Fault(faults.from_env("score.shard"))

    def save(k: int, frame: pd.DataFrame) -> None:
        cols = [c for c in frame.columns if c in ("qid", "docid") or c.startswith("teacher_")]
        partial.save(k, lambda tmp: pq.write_table(pa.Table.from_pandas(frame[cols], preserve_index=False), tmp))
        fault.hit()

    if todo:
        score_shards(cands, todo, data.queries, data.doc_text, teacher_dir, cfg.teacher, cfg.scoring, cfg.ray, save)
    scores = pd.concat([pq.read_table(partial.shard_path(k)).to_pandas() for k in range(len(bounds))],
                       ignore_index=True) if bounds else pd.DataFrame(columns=["qid", "docid", "teacher_score"])
    check_rows("score", list(zip(cands["qid"], cands["docid"])), list(zip(scores["qid"], scores["docid"])))
    scored = cands.merge(scores, on=["qid", "docid"], how="left", validate="one_to_one")
    return scored, {"shards": len(bounds), "shards_reused": len(done), "shards_scored": len(todo), "partial": partial}


def run(rd, data, teacher_dir: str) -> dict:
    cfg = rd.config
    cands = pq.read_table(rd.stage_path("mine") / "candidates.parquet").to_pandas()
    partial = None
    shard_counts: dict = {}
    if cfg.teacher.kind == "reader":  # a reader reads each question's candidates together: no shards
        scored = score_pairs(cands, data.queries, data.doc_text, teacher_dir, cfg.teacher, cfg.scoring, cfg.ray)
    else:
        scored, shard_counts = _score_with_resume(rd, cands, data, teacher_dir)
        partial = shard_counts.pop("partial")
    spread = softmax_spread(scored, cfg.training.teacher_temperature)
    share = cfg.scoring.min_softmax_entropy_share
    warning = None
    if spread["mean_norm_entropy"] < share:
        warning = (f"teacher soft labels are nearly one-hot at temperature {cfg.training.teacher_temperature} "
                   f"(mean normalised entropy {spread['mean_norm_entropy']:.3f}); raise training.teacher_temperature")
    elif spread["mean_norm_entropy"] > 1 - share:
        warning = (f"teacher soft labels are nearly uniform at temperature {cfg.training.teacher_temperature} "
                   f"(mean normalised entropy {spread['mean_norm_entropy']:.3f}); lower training.teacher_temperature")
    if warning:
        log.warning(warning)
        print(f"WARNING: {warning}")
    with rd.atomic_output("score") as tmp:
        pq.write_table(pa.Table.from_pandas(scored, preserve_index=False), tmp / "scores.parquet")
    if partial is not None:
        partial.drop()
    counts = {"pairs_in": len(cands), "pairs_out": len(scored), "queries": int(scored["qid"].nunique()),
              **shard_counts}
    rd.mark_done("score", counts, softmax=spread, warning=warning)
    return counts
