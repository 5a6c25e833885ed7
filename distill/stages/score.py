"""Stage ``score``: Ray Data shards the (query, candidate) pairs over a model pool of teachers.

Pairs are sorted by length before they become blocks (length-bucketed batches); each actor holds one
teacher and returns its raw logit per pair (a dual-encoder teacher returns q . d). Rows in equal rows
out, checked by (qid, docid). A warning is raised when the teacher's scores make softmax(t / T) nearly
one-hot or nearly uniform at the configured temperature (soft labels would then carry little). A reader
teacher (``teacher.kind: reader``) reads each question's candidates together and returns its
cross-attention per candidate; a cross-encoder with ``teacher.signal: attention`` returns its
query->passage attention instead of its logit (distill.reader_scoring and distill.cross_encoder_attention;
the attention maths: distill.attention).

Pairs are scored in shards of ``scoring.shard_rows`` (candidate order), each saved under
``.teacher.partial/`` when all its rows are back (distill/partial.py), so a re-run after a crash scores
only the shards that were not saved, as ``encode`` does. A reader scores the stage whole (it reads each
question's candidates together).

The teacher's forward runs at ``scoring.precision`` (distill.precision: ``auto`` is bf16 autocast where the
hardware has native bf16 and it measured faster, fp32 elsewhere; attention scores stay fp32); scores are
float32 either way, and the manifest records which precision was used.
"""

from __future__ import annotations

import json
import logging
import math
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq

from distill import layout
from distill.raydata import ShardAssembler, ShardResume, blocks_of, check_rows, map_model_pool

log = logging.getLogger(__name__)


class TeacherActor:
    """Ray Data actor: scores a batch of (``query``, ``doc``) text pairs with the teacher."""

    def __init__(self, model_dir: str, kind: str, max_length: int, threads: int, batch_size: int,
                 trust_remote_code: bool = False, head: str = "linear", store_embeddings: bool = False,
                 store_layer_scores: bool = False, signal: str = "logits", attention: dict | None = None,
                 fault: dict | None = None, members: list[dict] | None = None, vector_member: str | None = None,
                 precision: str = "fp32"):
        """``precision`` (distill.precision): fp32, or bf16 autocast for the logits / embeddings (scores come
        back float32 either way); auto: this actor's device's choice. Attention scores are always fp32."""
        import torch

        from distill.faults import Fault
        from distill.models import CrossEncoder, DualEncoder
        from distill.precision import resolve

        torch.set_num_threads(threads)
        self.kind = kind
        if kind == "ensemble":  # one actor holds every neural member: one start-up, one pass over the pairs;
            self.fault = Fault(fault)  # BM25 members are scored on the driver (distill.ensemble)
            self.members = [(m["name"], TeacherActor(
                m["path"], m["kind"], m["max_length"], threads, batch_size, m["trust_remote_code"], m["head"],
                store_embeddings=store_embeddings and m["name"] == vector_member,
                store_layer_scores=store_layer_scores and m["name"] == vector_member, precision=precision))
                for m in members or [] if m["kind"] != "bm25"]
            return
        self.batch_size = batch_size
        self.store_embeddings = store_embeddings
        self.store_layer_scores = store_layer_scores
        self.signal, self.attention = signal, attention  # signal "attention": distill.cross_encoder_attention
        self.fault = Fault(fault)  # tests only: DISTILL_FAULT=score.batch@n (distill/faults.py)
        if kind == "cross-encoder":
            self.model = CrossEncoder(model_dir, max_length, trust_remote_code, head)
        else:
            self.model = DualEncoder(model_dir, max_length=max_length, trust_remote_code=trust_remote_code)
        if torch.cuda.is_available():  # Ray exposes a GPU to this actor only when ray.actor_gpus > 0
            self.model.to("cuda")
        self.model.eval()
        self.precision = resolve(precision, next(self.model.parameters()).device)

    def __call__(self, batch: dict) -> dict:
        self.fault.hit()
        if self.kind == "ensemble":  # each member's raw score as teacher_member_<name> (+ the vector member's extras)
            from distill.ensemble import member_column

            out = {"qid": batch["qid"], "docid": batch["docid"]}
            for name, member in self.members:
                res = member(batch)
                out[member_column(name)] = res.pop("teacher_score")
                out.update({k: v for k, v in res.items() if k.startswith("teacher_")})
            return out
        q, d = list(batch["query"]), list(batch["doc"])
        out = {"qid": batch["qid"], "docid": batch["docid"]}
        if self.signal == "attention":
            from distill.cross_encoder_attention import cross_encoder_attention_scores

            if self.store_layer_scores:
                out["teacher_layer_scores"] = self.model.layer_scores(q, d, self.batch_size)
            out["teacher_score"] = cross_encoder_attention_scores(self.model, q, d, self.attention, self.batch_size)
            return out
        if self.kind == "cross-encoder":  # one forward gives the logits, the dual head's vectors, layer scores
            res = self.model.score_all(q, d, self.batch_size, vectors=self.store_embeddings,
                                       layers=self.store_layer_scores, precision=self.precision)
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
        qe = self.model.encode(list(uq), self.batch_size, self.precision)[qi]
        de = self.model.encode(list(ud), self.batch_size, self.precision)[di]
        out["teacher_score"] = (qe * de).sum(-1).astype(np.float32)
        if self.store_embeddings:
            out["teacher_q_emb"], out["teacher_d_emb"] = qe, de
        return out


def actor_kwargs(teacher_dir: str, teacher_cfg, scoring_cfg, threads: int, members: list[dict] | None = None,
                 device: str = "cpu") -> dict:
    """TeacherActor's constructor arguments for this teacher (an ensemble's ``members``: member_specs);
    ``scoring.precision`` resolved here for ``device`` (the actors'), so the run records what they use."""
    from distill.precision import resolve

    vm = teacher_cfg.vector_member() if teacher_cfg.kind == "ensemble" else None
    return {"model_dir": teacher_dir, "kind": teacher_cfg.kind, "max_length": teacher_cfg.max_length,
            "threads": threads, "batch_size": scoring_cfg.batch_size,
            "trust_remote_code": teacher_cfg.trust_remote_code, "head": teacher_cfg.head,
            "store_embeddings": scoring_cfg.store_embeddings, "store_layer_scores": scoring_cfg.store_layer_scores,
            "signal": teacher_cfg.signal, "attention": teacher_cfg.attention.model_dump(),
            "members": members, "vector_member": vm.name if vm else None,
            "precision": resolve(scoring_cfg.precision, device)}


def _pair_table(pairs: pd.DataFrame, queries: dict[str, str], doc_text) -> pa.Table:
    """(qid, docid, query, doc) of ``pairs``, the longest pair first (length-bucketed batches)."""
    qtext = [queries[q] for q in pairs["qid"]]
    dtext = [doc_text(d) for d in pairs["docid"]]
    order = np.argsort([-(len(a) + len(b)) for a, b in zip(qtext, dtext)], kind="stable")
    return pa.table({"qid": pairs["qid"].to_numpy()[order], "docid": pairs["docid"].to_numpy()[order],
                     "query": [qtext[i] for i in order], "doc": [dtext[i] for i in order]})


def _scored_frames(pairs: pd.DataFrame, queries: dict[str, str], doc_text, teacher_dir: str, teacher_cfg,
                   scoring_cfg, ray_cfg, stats: dict | None = None, members: list[dict] | None = None):
    """Yield one DataFrame (qid, docid, teacher_score or an ensemble's teacher_member_<name> columns
    [, vectors, layer scores]) per output batch of the TeacherActor pool over ``pairs``."""
    import time

    from distill import faults
    from distill.raycluster import actor_threads

    t0 = time.perf_counter()
    bs = scoring_cfg.batch_size
    blocks = blocks_of(_pair_table(pairs, queries, doc_text), max(1, min(scoring_cfg.actors * 4, len(pairs) // bs + 1)))
    kwargs = {**actor_kwargs(teacher_dir, teacher_cfg, scoring_cfg, actor_threads(ray_cfg.actor_cpus), members,
                             "cuda" if ray_cfg.actor_gpus else "cpu"),
              "fault": faults.from_env("score.batch")}
    for b in map_model_pool(blocks, TeacherActor, kwargs, bs, scoring_cfg.actors, ray_cfg, stats, started=t0,
                            keys=("qid", "docid")):
        f = pd.DataFrame({"qid": b["qid"].astype(str), "docid": b["docid"].astype(str)})
        for col in b:
            if col.startswith("teacher_"):
                v = np.asarray(b[col], dtype=np.float32)
                f[col] = list(v) if v.ndim > 1 else v
        yield f


def score_pairs(pairs: pd.DataFrame, queries: dict[str, str], doc_text, teacher_dir: str, teacher_cfg,
                scoring_cfg, ray_cfg, stats: dict | None = None, members: list[dict] | None = None) -> pd.DataFrame:
    """Teacher logits for each (qid, docid) row of ``pairs``; same rows out, checked.
    ``stats`` (optional) receives when the first output batch arrived and its rows (start-up cost)."""
    if teacher_cfg.kind == "reader":  # a FiD reader reads each question's candidates together
        from distill.reader_scoring import score_pairs_reader

        return score_pairs_reader(pairs, queries, doc_text, teacher_dir, teacher_cfg, scoring_cfg, ray_cfg, stats)
    frames = list(_scored_frames(pairs, queries, doc_text, teacher_dir, teacher_cfg, scoring_cfg, ray_cfg, stats,
                                 members))
    out = pd.concat(frames, ignore_index=True) if frames else pd.DataFrame(columns=["qid", "docid", "teacher_score"])
    check_rows("score", list(zip(pairs["qid"], pairs["docid"])), list(zip(out["qid"], out["docid"])))
    return pairs.merge(out, on=["qid", "docid"], how="left", validate="one_to_one")


def score_shards(pairs: pd.DataFrame, shards: dict[int, tuple[int, int]], queries, doc_text, teacher_dir: str,
                 teacher_cfg, scoring_cfg, ray_cfg, on_shard, members: list[dict] | None = None) -> int:
    """Score the rows ``pairs[start:stop]`` of every shard ``k: (start, stop)`` in one model pool;
    ``on_shard(k, frame)`` runs on the driver as soon as every row of shard k is back (the shard's row
    order). Rows in = rows out, checked; returns the rows scored."""
    todo = pd.concat([pairs.iloc[a:b] for a, b in shards.values()], ignore_index=True)
    try:
        assembler = ShardAssembler({k: list(zip(pairs["qid"].iloc[a:b], pairs["docid"].iloc[a:b]))
                                    for k, (a, b) in shards.items()})
    except ValueError:
        raise ValueError("score: (qid, docid) pairs must be unique") from None
    for f in _scored_frames(todo, queries, doc_text, teacher_dir, teacher_cfg, scoring_cfg, ray_cfg,
                            members=members):
        for k, parts in assembler.add(list(zip(f["qid"], f["docid"])), f, lambda b, pos: b.iloc[pos]):
            a, b = shards[k]
            on_shard(int(k), pairs.iloc[a:b][["qid", "docid"]].merge(
                pd.concat(parts, ignore_index=True), on=["qid", "docid"], how="left", validate="one_to_one"))
    return assembler.check("score")


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


def _score_with_resume(rd, cands: pd.DataFrame, data, teacher_dir: str,
                       members: list[dict] | None = None) -> tuple[pd.DataFrame, dict]:
    """Score ``cands`` in shards of ``scoring.shard_rows`` pairs (candidate order), each saved under
    ``.teacher.partial/`` when all its rows are back (distill.raydata.ShardResume): a re-run after a crash
    scores only the shards that were not saved. Returns the scored candidates and shard counts."""
    from distill.partial import dir_digest

    cfg = rd.config
    rows = cfg.scoring.shard_rows
    bounds = [(a, min(a + rows, len(cands))) for a in range(0, len(cands), rows)]
    keys = [f"{q}\t{d}" for q, d in zip(cands["qid"], cands["docid"])]
    models = [dir_digest(Path(m["path"])) if m["path"] and Path(m["path"]).is_dir() else m["path"] or m["kind"]
              for m in members] if members is not None else dir_digest(Path(teacher_dir))

    def read_keys(p):
        t = pq.read_table(p, columns=["qid", "docid"])
        return [f"{q}\t{d}" for q, d in zip(t.column("qid").to_pylist(), t.column("docid").to_pylist())]

    resume = ShardResume(rd, "score", [keys[a:b] for a, b in bounds], read_keys, models, verb="scoring")

    def save(k: int, frame: pd.DataFrame) -> None:
        cols = [c for c in frame.columns if c in ("qid", "docid") or c.startswith("teacher_")]
        resume.save(k, lambda tmp: pq.write_table(pa.Table.from_pandas(frame[cols], preserve_index=False), tmp))

    if resume.todo:
        score_shards(cands, {k: bounds[k] for k in resume.todo}, data.queries, data.doc_text, teacher_dir,
                     cfg.teacher, cfg.scoring, cfg.ray, save, members)
    scores = pd.concat([pq.read_table(resume.path(k)).to_pandas() for k in range(len(bounds))],
                       ignore_index=True) if bounds else pd.DataFrame(columns=["qid", "docid", "teacher_score"])
    check_rows("score", list(zip(cands["qid"], cands["docid"])), list(zip(scores["qid"], scores["docid"])))
    scored = cands.merge(scores, on=["qid", "docid"], how="left", validate="one_to_one")
    return scored, {"shards": len(bounds), "shards_reused": len(resume.done), "shards_scored": len(resume.todo),
                    "partial": resume}


def dev_candidates(rd, data) -> pd.DataFrame:
    """Candidates of the held-out dev queries for fitting an ensemble's weights: each one's BM25 top
    ``mining.depth`` and the mining encoder's (zero-shot) top ``mining.depth``, merged as ``mine`` merges
    them, with the dev labels; judged positives are *not* added (the pool must not know the answers)."""
    from distill.bm25 import BM25
    from distill.index import build_index
    from distill.models import DualEncoder, resolve_model
    from distill.stages.encode import read_embeddings
    from distill.stages.mine import merge_candidates, zero_shot_kwargs

    cfg = rd.config
    qrels = data.qrels["dev"]
    qids = list(qrels)
    qtexts = [data.queries[q] for q in qids]
    docids = list(data.corpus)
    depth = min(cfg.mining.depth, len(docids))
    ranked = {"bm25": BM25(docids, [data.doc_text(d) for d in docids]).search(qtexts, depth)}
    zs_ids, zs_emb = read_embeddings(rd.stage_path("mine") / "zeroshot")
    enc = DualEncoder(resolve_model(cfg.mining_encoder.model), **zero_shot_kwargs(cfg.mining_encoder))
    sc, idx = build_index(zs_emb).search(enc.encode(qtexts, cfg.encoding.batch_size), depth)
    ranked["student"] = ([[zs_ids[j] for j in row] for row in idx], sc)
    merged = merge_candidates(qids, ranked, {})  # no positives appended
    merged["label"] = [int(qrels[q].get(d, 0) > 0) for q, d in zip(merged["qid"], merged["docid"])]
    merged["source"] = "dev:" + merged["source"]
    return merged


def dual_member_scores(pairs: pd.DataFrame, data, member: dict, cfg, vectors: bool) -> dict:
    """A dual-encoder member's q . d for every (qid, docid) row, each distinct query and document embedded
    once on a Ray Data model pool (candidate lists repeat documents many times over); with ``vectors``
    also the per-row query and document vectors (EmbedDistill targets)."""
    from distill.ensemble import member_column
    from distill.precision import for_stage
    from distill.stages.encode import encode_texts

    uq, qi = np.unique(pairs["qid"].to_numpy().astype(str), return_inverse=True)
    ud, di = np.unique(pairs["docid"].to_numpy().astype(str), return_inverse=True)
    keys = [f"q:{q}" for q in uq] + [f"d:{d}" for d in ud]
    texts = [data.queries[q] for q in uq] + [data.doc_text(d) for d in ud]
    emb = encode_texts(keys, texts, member["path"], cfg.ray, cfg.encoding.batch_size, cfg.scoring.actors,
                       {"max_length": member["max_length"], "trust_remote_code": member["trust_remote_code"]},
                       precision=for_stage(cfg, "score"))
    qe, de = emb[: len(uq)][qi.reshape(-1)], emb[len(uq):][di.reshape(-1)]
    out = {member_column(member["name"]): (qe * de).sum(-1).astype(np.float32)}
    if vectors:
        out["teacher_q_emb"], out["teacher_d_emb"] = list(qe), list(de)
    return out


def _score_ensemble(rd, cands: pd.DataFrame, data, teacher_dir: str) -> tuple[pd.DataFrame, dict, dict]:
    """Every member's raw score for the candidates (+ the dev pool when the weights are fitted), the weights
    (fitted on dev, or the config's), and the fused ``teacher_score`` (distill.ensemble). Neural members share
    one actor pool; BM25 members are scored here from the corpus statistics."""
    from distill import ensemble as ens

    cfg = rd.config
    t = cfg.teacher
    members = ens.member_specs(t, teacher_dir or None)
    later_round = getattr(rd, "round", 1) > 1  # the teacher, and so its weights, are round 1's
    fit = t.fit_weights and not later_round
    dev = dev_candidates(rd, data) if fit else cands.iloc[:0]
    pool = pd.concat([cands, dev], ignore_index=True)
    counts: dict = {}
    vm = t.vector_member()
    pooled = [m for m in members if m["kind"] == "cross-encoder"
              or (m["kind"] == "dual-encoder" and cfg.scoring.store_layer_scores and vm and m["name"] == vm.name)]
    if pooled:  # cross-encoders (and a dual encoder whose layer scores LEAD needs) read each pair
        pool, counts = _score_with_resume(rd, pool, data, teacher_dir, pooled)
    for m in members:
        if m["kind"] == "dual-encoder" and m not in pooled:
            vectors = cfg.scoring.store_embeddings and vm is not None and m["name"] == vm.name
            for col, v in dual_member_scores(pool, data, m, cfg, vectors).items():
                pool[col] = v
        if m["kind"] == "bm25":
            docids = list(data.corpus)
            scorer = ens.BM25PairScorer(docids, [data.doc_text(d) for d in docids])
            pool[ens.member_column(m["name"])] = scorer.score([data.queries[q] for q in pool["qid"]],
                                                              list(pool["docid"]))
    names = [m["name"] for m in members]
    record = {"members": [{k: v for k, v in m.items() if k != "weight"} for m in members], "fusion": t.fusion,
              "rrf_k": t.rrf_k}
    if fit:
        is_dev = pool["qid"].isin(set(data.qrels["dev"]))
        dev_scored, pool = pool[is_dev], pool[~is_dev].reset_index(drop=True)
        result = ens.fit_weights(dev_scored, names, data.qrels["dev"], t.weight_grid_step, t.fusion, t.rrf_k)
        record.update(weights=result.pop("weights"), chosen_on="dev", dev=result)
        print(f"[score] ensemble weights fitted on {result['queries']} dev queries: {record['weights']} "
              f"(dev nDCG@10 {result['ndcg@10']:.4f}; members alone {result['members_alone']})")
    elif later_round:
        from distill.ensemble import read_ensemble

        record = read_ensemble(rd.base.stage_path("score"))
    else:
        record.update(weights={m["name"]: m["weight"] for m in members}, chosen_on="config")
    pool["teacher_score"] = ens.fused_scores(pool, record)
    return pool, counts, record


def run(rd, data) -> dict:
    """Stage ``score``: the teacher (distill.stages.teacher.teacher_path) scores the mined candidates; the
    generated training queries ``mine`` kept are made visible first."""
    from distill.stages.mine import add_generated_queries
    from distill.layout import teacher_dir

    add_generated_queries(rd, data)
    return score_candidates(rd, data, teacher_dir(rd))


def score_candidates(rd, data, teacher_dir: str) -> dict:
    """Score the mined candidates with the teacher in ``teacher_dir``, write ``teacher/scores.parquet``."""
    cfg = rd.config
    cands = pq.read_table(rd.stage_path("mine") / "candidates.parquet").to_pandas()
    partial = None
    shard_counts: dict = {}
    record = None
    imported = None
    if cfg.scoring.import_path:  # teacher scores computed elsewhere: read and checked, no teacher runs
        from distill.sources import import_scores

        scored, shard_counts, import_rejects = import_scores(
            cfg.scoring.import_path, cands, data, cfg.data.max_reject_share, cfg.scoring.import_missing,
            rejects_path=rd.path / layout.SCORE_IMPORT_REJECTS)
        imported = {"path": str(cfg.scoring.import_path), "rejects": import_rejects}
    elif cfg.teacher.kind == "reader":  # a reader reads each question's candidates together: no shards
        scored = score_pairs(cands, data.queries, data.doc_text, teacher_dir, cfg.teacher, cfg.scoring, cfg.ray)
    elif cfg.teacher.kind == "ensemble":
        scored, shard_counts, record = _score_ensemble(rd, cands, data, teacher_dir)
        partial = shard_counts.pop("partial", None)
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
        if record is not None:
            from distill.ensemble import ENSEMBLE_FILE

            (tmp / ENSEMBLE_FILE).write_text(json.dumps(record, indent=2))
    if partial is not None:
        partial.drop()
    counts = {"pairs_in": len(cands), "pairs_out": len(scored), "queries": int(scored["qid"].nunique()),
              **shard_counts}
    extra = {"ensemble": {k: v for k, v in record.items() if k != "dev"} | (
        {"dev_ndcg@10": record["dev"]["ndcg@10"], "dev_members_alone": record["dev"]["members_alone"]}
        if "dev" in record else {})} if record is not None else {}
    from distill.precision import for_stage

    if imported is not None:
        extra["imported"] = imported
    rd.mark_done("score", counts, softmax=spread, warning=warning, precision=for_stage(cfg, "score"), **extra)
    return counts
