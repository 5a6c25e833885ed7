"""Stage ``evaluate``: nDCG@10, MRR@10, Recall@100 on the test qrels for every system.

Systems: BM25; the zero-shot student (the starting point); the teacher reranking the zero-shot
student's top ``rerank_depth`` (the ceiling, scored on Ray Data like training pairs); the distilled
student through the run's FAISS index. The report also gives parameter counts and encode speed
(student queries/s and passages/s in one process; a cross-encoder teacher's pairs/s, a dual-encoder
teacher's own queries/s and passages/s), each as a ratio to the teacher's.
Writes ``eval/report.json``, ``eval/report.md``, ``eval/metrics.png`` and the teacher's rerank scores
(``eval/teacher_rerank.parquet``), and every first-stage ranking's metrics per query (``eval/per_query.json``:
BM25, zero-shot, distilled; the distilled only in a sweep or later round) for paired tests between runs; the
report's ``gain_over_start`` is such a test of the distilled student against its own zero-shot start.
"""

from __future__ import annotations

import json
import time

import numpy as np
import pandas as pd

from distill.bm25 import BM25
from distill.compare import CompareError, compare
from distill.index import build_index, load_index
from distill.layout import PER_QUERY
from distill.metrics import METRICS, evaluate_run, metrics_table, per_query, to_run
from distill.models import CrossEncoder, DualEncoder, count_parameters, resolve_model
from distill.stages.encode import read_embeddings
from distill.stages.mine import zero_shot_kwargs
from distill.stages.score import score_pairs
from distill.timing import best_seconds


def _timed(fn, n: int, repeats: int = 3) -> float:
    """Items per second: ``n`` over the best of ``repeats`` timed calls after a warm-up (distill.timing)."""
    return n / best_seconds(fn, repeats)


def speed(student: DualEncoder, teacher: CrossEncoder | None, queries: list[str], docs: list[str],
          teacher_encoder: DualEncoder | None = None) -> dict:
    """Items/s, and student/teacher ratios: vs a cross-encoder's pairs/s, vs a dual encoder's own encoding."""
    out = {"student_queries_per_s": _timed(lambda: student.encode(queries, 64), len(queries)),
           "student_passages_per_s": _timed(lambda: student.encode(docs, 64), len(docs))}
    if teacher is not None:
        out["teacher_pairs_per_s"] = _timed(lambda: teacher.score(queries, docs[: len(queries)], 32), len(queries))
        out["student_query_speedup_vs_teacher_pairs"] = out["student_queries_per_s"] / out["teacher_pairs_per_s"]
        out["student_passage_speedup_vs_teacher_pairs"] = out["student_passages_per_s"] / out["teacher_pairs_per_s"]
    if teacher_encoder is not None:
        out["teacher_queries_per_s"] = _timed(lambda: teacher_encoder.encode(queries, 64), len(queries))
        out["teacher_passages_per_s"] = _timed(lambda: teacher_encoder.encode(docs, 64), len(docs))
        out["student_query_speedup_vs_teacher_encoder"] = out["student_queries_per_s"] / out["teacher_queries_per_s"]
        out["student_passage_speedup_vs_teacher_encoder"] = \
            out["student_passages_per_s"] / out["teacher_passages_per_s"]
    return out


def ensemble_member_scores(pairs: pd.DataFrame, data, teacher_dir: str, cfg, neural: list[dict]) -> pd.DataFrame:
    """``pairs`` (qid, docid) with each neural member's raw score (``teacher_member_<name>``): on the Ray
    Data actor pool for more than ``evaluation.inline_rerank_max_pairs`` pairs, else in this process."""
    import torch

    from distill import ensemble as ens
    from distill.stages.score import TeacherActor, actor_kwargs

    out = pairs[["qid", "docid"]].reset_index(drop=True).copy()
    scoring = cfg.scoring.model_copy(update={"store_embeddings": False, "store_layer_scores": False})
    if len(out) > cfg.evaluation.inline_rerank_max_pairs:
        scored = score_pairs(out, data.queries, data.doc_text, teacher_dir, cfg.teacher, scoring, cfg.ray,
                             members=neural)
        for m in neural:
            out[ens.member_column(m["name"])] = scored[ens.member_column(m["name"])].to_numpy()
        return out
    actor = TeacherActor(**actor_kwargs(teacher_dir, cfg.teacher, scoring, torch.get_num_threads(), neural))
    res = actor({"qid": out["qid"].to_numpy(), "docid": out["docid"].to_numpy(),
                 "query": [data.queries[q] for q in out["qid"]], "doc": [data.doc_text(d) for d in out["docid"]]})
    for m in neural:
        out[ens.member_column(m["name"])] = np.asarray(res[ens.member_column(m["name"])], np.float32)
    return out


def ensemble_rerank_scores(pairs: pd.DataFrame, data, teacher_dir: str, cfg, record: dict,
                           cache=None) -> pd.DataFrame:
    """An ensemble teacher's fused score (``record``: the score stage's ensemble.json) for each (qid, docid)
    of ``pairs``, with each member's raw score beside it (``teacher_member_<name>``); the fusion normalises
    over each query's pairs here, as it did over each query's candidates in training. The neural members'
    scores come through ``cache`` (distill.pair_cache) when given; BM25's are computed (cheap)."""
    from distill import ensemble as ens

    out = pairs.reset_index(drop=True).copy()
    neural = [m for m in record["members"] if m["kind"] != "bm25"]
    if neural:
        columns = [ens.member_column(m["name"]) for m in neural]
        score = lambda todo: ensemble_member_scores(todo, data, teacher_dir, cfg, neural)  # noqa: E731
        scored = cache.scores(out, columns, score) if cache is not None else score(out)
        for c in columns:
            out[c] = scored[c].to_numpy(np.float32)
    if any(m["kind"] == "bm25" for m in record["members"]):
        docids = list(data.corpus)
        scorer = ens.BM25PairScorer(docids, [data.doc_text(d) for d in docids])
        bm = scorer.score([data.queries[q] for q in out["qid"]], list(out["docid"]))
        for m in record["members"]:
            if m["kind"] == "bm25":
                out[ens.member_column(m["name"])] = bm
    out["teacher_score"] = ens.fused_scores(out, record)
    return out


def rerank_scores(pairs: pd.DataFrame, data, teacher_dir: str, cfg, record: dict | None = None,
                  cache=None) -> pd.DataFrame:
    """The teacher's score for each (qid, docid) of ``pairs``: on the Ray Data model pool like training
    pairs, or, for at most ``evaluation.inline_rerank_max_pairs`` pairs, with the same TeacherActor in
    this process (a cold pool's start-up, ~20 s here, would cost more than scoring a few hundred pairs).
    An ensemble teacher (``record``: its ensemble.json) goes through :func:`ensemble_rerank_scores`.
    With ``cache`` (a :class:`distill.pair_cache.PairScoreCache`), pairs it holds are not scored again
    (a reader's scores are never cached: it reads a query's passages together)."""
    if cfg.teacher.kind == "ensemble":
        return ensemble_rerank_scores(pairs, data, teacher_dir, cfg, record, cache)
    if cfg.teacher.kind == "reader":
        return _reader_scores(pairs, data, teacher_dir, cfg)
    score = lambda todo: _pair_scores(todo, data, teacher_dir, cfg)  # noqa: E731
    scored = cache.scores(pairs, ["teacher_score"], score) if cache is not None else score(pairs)
    return pairs.reset_index(drop=True).assign(teacher_score=scored["teacher_score"].to_numpy(np.float32))


def _reader_scores(pairs: pd.DataFrame, data, teacher_dir: str, cfg) -> pd.DataFrame:
    """A reader teacher's scores: the same reader code as the ReaderActor, each query's pairs together."""
    if len(pairs) > cfg.evaluation.inline_rerank_max_pairs:
        return score_pairs(pairs, data.queries, data.doc_text, teacher_dir, cfg.teacher, cfg.scoring, cfg.ray)
    from distill.reader import FiDReader, score_grouped

    t = cfg.teacher
    reader = FiDReader(teacher_dir, t.max_length, t.answer_max_length, t.trust_remote_code)
    return pairs.assign(teacher_score=score_grouped(
        reader, [data.queries[q] for q in pairs["qid"]], [data.doc_text(d) for d in pairs["docid"]],
        t.attention.model_dump(), cfg.scoring.batch_size, keys=list(pairs["qid"])))


def _pair_scores(pairs: pd.DataFrame, data, teacher_dir: str, cfg) -> pd.DataFrame:
    """A cross-encoder's or dual encoder's score per pair: the model pool, or the TeacherActor inline."""
    if len(pairs) > cfg.evaluation.inline_rerank_max_pairs:
        return score_pairs(pairs, data.queries, data.doc_text, teacher_dir, cfg.teacher, cfg.scoring, cfg.ray)
    import torch

    from distill.precision import for_stage
    from distill.stages.score import TeacherActor

    t = cfg.teacher
    actor = TeacherActor(teacher_dir, t.kind, t.max_length, torch.get_num_threads(), cfg.scoring.batch_size,
                         t.trust_remote_code, t.head, signal=t.signal, attention=t.attention.model_dump(),
                         precision=for_stage(cfg, "score"))
    out = actor({"qid": pairs["qid"].to_numpy(), "docid": pairs["docid"].to_numpy(),
                 "query": [data.queries[q] for q in pairs["qid"]], "doc": [data.doc_text(d) for d in pairs["docid"]]})
    if len(out["teacher_score"]) != len(pairs):
        raise RuntimeError(f"evaluate: the teacher scored {len(out['teacher_score'])} of {len(pairs)} rerank pairs")
    return pairs.assign(teacher_score=np.asarray(out["teacher_score"], np.float32))


def reranked_run(qids: list[str], first_stage: list[list[str]], scored: pd.DataFrame, depth: int) -> dict:
    """The teacher's order over each query's first-stage top ``depth`` (``scored``: qid, docid, teacher_score),
    then the rest of the first-stage list in its own order below them: the usual rerank pipeline, so
    Recall@100 is the first stage's and only the top ``depth`` is reordered."""
    by_q: dict[str, dict[str, float]] = {q: {} for q in qids}
    for q, d, s in scored[["qid", "docid", "teacher_score"]].itertuples(index=False):
        by_q[q][d] = float(s)
    run: dict[str, dict[str, float]] = {}
    for q, ids in zip(qids, first_stage):
        top = by_q[q]
        floor = min(top.values(), default=0.0) - 1.0
        rest = [d for d in ids[depth:] if d not in top]
        run[q] = {**top, **{d: floor - i for i, d in enumerate(rest)}}
    return run


def run(rd, data) -> dict:
    """Stage ``evaluate``: every system (:func:`evaluate_all`); in round r > 1 of an iterative run
    (distill.stages.rounds) or in a sweep run (distill.sweep) only the run's own student
    (:func:`evaluate_student`: the other rows are round 1's / the base run's)."""
    if rd.round > 1:
        return evaluate_student(rd, data, f"round {rd.round}")
    if rd.shared_with is not None:
        return evaluate_student(rd, data, f"sweep run {rd.config.name}")
    from distill.layout import teacher_dir

    return evaluate_all(rd, data, teacher_dir(rd))


class _Phases:
    """Seconds per phase of the evaluation (``lap(name)`` closes the phase that just ended)."""

    def __init__(self):
        self.seconds: dict[str, float] = {}
        self._t = time.perf_counter()

    def lap(self, name: str) -> None:
        now = time.perf_counter()
        self.seconds[name] = round(now - self._t, 1)
        self._t = now


def reported_queries(cfg, data) -> tuple[list[str], dict, list[str]]:
    """(qids, qrels, query texts) of the reported split, at most ``data.max_test_queries`` of them."""
    qrels = data.qrels[cfg.data.test_split]
    qids = list(qrels)[: cfg.data.max_test_queries] if cfg.data.max_test_queries else list(qrels)
    return qids, {q: qrels[q] for q in qids}, [data.queries[q] for q in qids]


def _zero_shot(rd, qtexts: list[str], depth: int):
    """(zero-shot encoder, its corpus ids and embeddings from ``mine``, each query's ranked ids and scores)."""
    cfg = rd.config
    base = DualEncoder(resolve_model(cfg.mining_encoder.model), **zero_shot_kwargs(cfg.mining_encoder))
    zs_ids, zs_emb = read_embeddings(rd.stage_path("mine") / "zeroshot")
    zs_scores, zs_idx = build_index(zs_emb).search(base.encode(qtexts), min(depth, len(zs_ids)))
    return base, zs_ids, zs_emb, [[zs_ids[j] for j in row] for row in zs_idx], zs_scores


def _teacher_rows(rd, data, teacher_dir: str, qids, qrels, bm25_ids, zs_ranked, systems: dict):
    """The teacher reranking the zero-shot top ``rerank_depth`` (an ensemble also ranking the union of BM25's
    and the zero-shot top k) into ``systems``; returns (the rerank scores, the ensemble record or None)."""
    cfg = rd.config
    rerank = cfg.evaluation.rerank_depth
    record = None
    if cfg.teacher.kind == "ensemble":
        from distill.ensemble import read_ensemble

        record = read_ensemble(rd.stage_path("score"))
    cache = teacher_pair_cache(rd)
    pairs = pd.DataFrame([(q, d) for q, ids in zip(qids, zs_ranked) for d in ids[:rerank]], columns=["qid", "docid"])
    scored = rerank_scores(pairs, data, teacher_dir, cfg, record, cache)
    systems[f"teacher_rerank@{rerank}"] = evaluate_run(qrels, reranked_run(qids, zs_ranked, scored, rerank))
    if record is not None:  # the ensemble as a retriever: it ranks the union of BM25's and the zero-shot top k
        union = [list(dict.fromkeys(b[:rerank] + z[:rerank])) for b, z in zip(bm25_ids, zs_ranked)]
        upairs = pd.DataFrame([(q, d) for q, u in zip(qids, union) for d in u], columns=["qid", "docid"])
        uscored = rerank_scores(upairs, data, teacher_dir, cfg, record, cache)
        systems[f"teacher_ensemble_union@{rerank}"] = evaluate_run(
            qrels, {q: {} for q in qids} | {q: dict(zip(g["docid"], g["teacher_score"].astype(float)))
                                           for q, g in uscored.groupby("qid")})
    if cache is not None:
        print(f"[evaluate] teacher pair scores: {cache.hits} cached, {cache.misses} scored ({cache.path})",
              flush=True)
    return scored, record


def teacher_pair_cache(rd):
    """The run's cache of teacher pair scores (distill.pair_cache; ``runs/<name>/cache/``, shared by every
    round), or None for a reader teacher, whose scores are not per pair."""
    if rd.config.teacher.kind == "reader":
        return None
    from distill import layout
    from distill.pair_cache import PairScoreCache, pair_key

    return PairScoreCache(rd.manifest_path.parent / layout.CACHE, pair_key(rd))


def _student_rows(rd, data, teacher_dir: str, qids, qrels, qtexts, zero_shot, systems: dict):
    """The distilled student through the run's index (and an asymmetric run's teacher queries through the same
    index) into ``systems``; the dev split's zero-shot and distilled rows. Returns (student, index, dev, the
    student's ranking of the reported queries)."""
    cfg = rd.config
    depth = cfg.evaluation.first_stage_depth
    student, index, ranking = student_ranking(rd, qids, qtexts)
    systems["student_distilled"] = evaluate_run(qrels, ranking)
    if index.meta.get("documents_encoded_by") == "teacher":  # asymmetric: the teacher's own retrieval, same index
        t_enc = DualEncoder(teacher_dir, max_length=cfg.teacher.max_length,
                            trust_remote_code=cfg.teacher.trust_remote_code)
        t_ids, t_scores = index.search(t_enc.encode(qtexts), depth)
        systems["teacher_retrieval"] = evaluate_run(qrels, to_run(qids, t_ids, t_scores))
    dev_qrels = dev_split(rd, data)  # for choosing settings (sweeps): never the reported split
    dev = None
    if dev_qrels:
        base, zs_ids, zs_emb = zero_shot
        zs_index = build_index(zs_emb)

        def zs_search(v, k):
            sc_, ix_ = zs_index.search(v, min(k, len(zs_ids)))
            return [[zs_ids[j] for j in row] for row in ix_], sc_

        dev = {"queries": len(dev_qrels), "metrics": {
            "student_zero_shot": search_metrics(base, zs_search, dev_qrels, data, depth),
            "student_distilled": search_metrics(student, index.search, dev_qrels, data, depth)}}
    return student, index, dev, ranking


def _speed_and_sizes(cfg, student, teacher_dir: str, record, qtexts: list[str], dtexts: list[str]):
    """(the speed rows, the sizes) of the student against the teacher."""
    teacher, teacher_de, t_params = teacher_models(cfg, teacher_dir, record)
    n = cfg.evaluation.speed_sample
    sample_q = (qtexts * (n // max(1, len(qtexts)) + 1))[:n]
    sample_d = (dtexts * (n // max(1, len(dtexts)) + 1))[:n]
    spd = speed(student, teacher, sample_q, sample_d, teacher_de)
    spd["student_query_latency_ms"] = query_latency_ms(student, qtexts, n)
    if teacher_de is not None:
        spd["teacher_query_latency_ms"] = query_latency_ms(teacher_de, qtexts, n)
    s_params = count_parameters(student.backbone)
    return spd, {"student_parameters": s_params, "teacher_parameters": t_params,
                 "teacher_to_student_size": t_params / s_params}


def _precision_record(rd) -> dict:
    """What each stage computed at, and this machine's CPU (distill.precision)."""
    from distill.precision import describe, for_stage

    machine = describe("auto")
    return {**{s: (rd.stages.get(s) or {}).get("precision") for s in ("score", "train", "encode")},
            "teacher_rerank": for_stage(rd.config, "score"), "queries": "fp32",
            "machine": {k: machine.get(k) for k in ("cpu_model", "cpu_capability", "native_bf16", "bf16_speedup")}}


def evaluate_all(rd, data, teacher_dir: str) -> dict:
    """Every system's metrics on the test split, sizes and speed; writes ``eval/`` and the model card."""
    import torch

    cfg = rd.config
    phases = _Phases()
    torch.set_num_threads(max(1, torch.get_num_threads()))
    qids, qrels, qtexts = reported_queries(cfg, data)
    depth = cfg.evaluation.first_stage_depth
    systems: dict[str, dict] = {}

    docids = list(data.corpus)
    dtexts = [data.doc_text(d) for d in docids]
    ids, sc = BM25(docids, dtexts).search(qtexts, depth)
    rankings = {"bm25": to_run(qids, ids, sc)}
    systems["bm25"] = evaluate_run(qrels, rankings["bm25"])
    phases.lap("bm25")
    base, zs_ids, zs_emb, zs_ranked, zs_scores = _zero_shot(rd, qtexts, depth)
    # the mining encoder's corpus embeddings: the student before training unless mining.encoder says otherwise
    zs_name = "student_zero_shot" if cfg.mining.encoder is None else "mining_encoder_zero_shot"
    rankings[zs_name] = to_run(qids, zs_ranked, zs_scores)
    systems[zs_name] = evaluate_run(qrels, rankings[zs_name])
    phases.lap("zero_shot")
    scored, record = _teacher_rows(rd, data, teacher_dir, qids, qrels, ids, zs_ranked, systems)
    phases.lap("teacher_rerank")
    student, index, dev, rankings["student_distilled"] = _student_rows(rd, data, teacher_dir, qids, qrels, qtexts,
                                                                       (base, zs_ids, zs_emb), systems)
    phases.lap("distilled")
    spd, sizes = _speed_and_sizes(cfg, student, teacher_dir, record, qtexts, dtexts)
    phases.lap("speed")
    print(f"[evaluate] seconds per phase: {phases.seconds}", flush=True)
    report = {"run": cfg.name, "split": cfg.data.test_split, "queries": len(qids), "metrics": systems,
              "sizes": sizes, "speed": spd, "first_stage_depth": depth, "rerank_depth": cfg.evaluation.rerank_depth,
              "index": index.meta, "seconds": phases.seconds}
    if record is not None:
        report["ensemble"] = {"weights": record["weights"], "chosen_on": record["chosen_on"],
                              "fusion": record["fusion"], "members": [m["name"] for m in record["members"]]}
    if dev:
        report["dev"] = dev
    report["precision"] = _precision_record(rd)
    values = per_query_values(qrels, rankings)
    gain = gain_over_start(values, zs_name)
    if gain:
        report["gain_over_start"] = gain
    with rd.atomic_output("evaluate") as tmp:
        (tmp / "report.json").write_text(json.dumps(report, indent=2))
        (tmp / "report.md").write_text(render_markdown(report))
        write_per_query(tmp, values)
        plot(systems, tmp / "metrics.png")
        scored[["qid", "docid", "teacher_score"]].to_parquet(tmp / "teacher_rerank.parquet", index=False)
    rd.mark_done("evaluate", {"queries": len(qids), "systems": len(systems)})
    from distill.export import write_model_card

    write_model_card(rd, report=report)  # the student's model card, now with this table
    return report


def teacher_models(cfg, teacher_dir: str, record: dict | None):
    """(pair scorer or None, dual encoder or None, parameters) of the teacher, for the speed and size rows.
    An ensemble: its first cross-encoder member (its cost per pair bounds the ensemble's from below), else
    its first dual encoder; parameters are every neural member's together."""
    t = cfg.teacher
    if record is not None:
        neural = [m for m in record["members"] if m["kind"] != "bm25"]
        ce = next((m for m in neural if m["kind"] == "cross-encoder"), None)
        de = next((m for m in neural if m["kind"] == "dual-encoder"), None)
        models = [CrossEncoder(m["path"], m["max_length"], m["trust_remote_code"], m["head"]) if m["kind"] ==
                  "cross-encoder" else DualEncoder(m["path"], max_length=m["max_length"],
                                                   trust_remote_code=m["trust_remote_code"]) for m in neural]
        params = sum(m.num_parameters if isinstance(m, CrossEncoder) else count_parameters(m.backbone)
                     for m in models)
        scorer = models[neural.index(ce)] if ce else None
        encoder = models[neural.index(de)] if de and not ce else None
        return scorer, encoder, max(params, 1)
    teacher = CrossEncoder(teacher_dir, t.max_length, head=t.head) if t.kind == "cross-encoder" else None
    if t.kind == "reader":  # scores (query, passage) pairs too (distill.reader), for speed and size
        from distill.reader import FiDReader

        teacher = FiDReader(teacher_dir, t.max_length, t.answer_max_length)
    if teacher is not None:
        return teacher, None, teacher.num_parameters
    de = DualEncoder(teacher_dir, max_length=t.max_length, trust_remote_code=t.trust_remote_code)
    return None, de, count_parameters(de.backbone)


def dev_split(rd, data) -> dict[str, dict[str, int]] | None:
    """The held-out ``dev`` split's qrels (``data.dev_queries``), unless it is the split being reported."""
    if rd.config.data.test_split == "dev" or not data.qrels.get("dev"):
        return None
    return data.qrels["dev"]


def search_metrics(encoder: DualEncoder, search, qrels: dict, data, depth: int) -> dict[str, float]:
    """nDCG@10, MRR@10, Recall@100 of ``encoder``'s queries through ``search(vectors, k) -> (ids, scores)``."""
    qids = list(qrels)
    ids, scores = search(encoder.encode([data.queries[q] for q in qids]), depth)
    return evaluate_run(qrels, to_run(qids, ids, scores))


def query_latency_ms(encoder: DualEncoder, queries: list[str], n: int = 32) -> float:
    """Median milliseconds to encode one query on its own (batch of 1), over up to ``n`` queries."""
    sample = queries[:n]
    encoder.encode(sample[:1], 1)
    times = []
    for q in sample:
        t0 = time.perf_counter()
        encoder.encode([q], 1)
        times.append(time.perf_counter() - t0)
    return float(np.median(times) * 1000)


def evaluate_student(rd, data, label: str) -> dict:
    """Stage ``evaluate`` when only the student changed (round r > 1 of an iterative run, a sweep variant):
    nDCG@10, MRR@10, Recall@100 of this run's student through this run's index, its parameter count and its
    one-query encode latency, and with a ``dev`` split its metrics there too. The BM25, zero-shot and
    teacher rows are the first round's / base run's."""
    cfg = rd.config
    qids, qrels, qtexts = reported_queries(cfg, data)
    student, index, ranking = student_ranking(rd, qids, qtexts)
    metrics = evaluate_run(qrels, ranking)
    report = {"run": cfg.name, "label": label, "round": rd.round, "split": cfg.data.test_split,
              "queries": len(qids), "metrics": {"student_distilled": metrics},
              "sizes": {"student_parameters": count_parameters(student.backbone)},
              "speed": {"student_query_latency_ms": query_latency_ms(student, qtexts, cfg.evaluation.speed_sample)},
              "first_stage_depth": cfg.evaluation.first_stage_depth, "index": index.meta}
    dev_qrels = dev_split(rd, data)
    if dev_qrels:  # for choosing settings (sweeps): never the reported split
        report["dev"] = {"queries": len(dev_qrels), "metrics": {"student_distilled": search_metrics(
            student, index.search, dev_qrels, data, cfg.evaluation.first_stage_depth)}}
    with rd.atomic_output("evaluate") as tmp:
        (tmp / "report.json").write_text(json.dumps(report, indent=2))
        write_per_query(tmp, per_query_values(qrels, {"student_distilled": ranking}))
        (tmp / "report.md").write_text(
            f"# Evaluation: run `{cfg.name}`, {label}, split `{cfg.data.test_split}` ({len(qids)} queries)\n\n"
            + "\n".join(metrics_table([("student_distilled", metrics)])) + "\n")
    rd.mark_done("evaluate", {"queries": len(qids), "systems": 1})
    return report


def student_ranking(rd, qids: list[str], qtexts: list[str]):
    """(the run's student, its index, the student's top ``first_stage_depth`` of each query as a run)."""
    cfg = rd.config
    student = DualEncoder.load(rd.stage_path("train"))
    index = load_index(rd.stage_path("index"), nprobe=cfg.index.nprobe, ef_search=cfg.index.ef_search)
    ids, scores = index.search(student.encode(qtexts), cfg.evaluation.first_stage_depth)
    return student, index, to_run(qids, ids, scores)


def per_query_values(qrels: dict, rankings: dict[str, dict]) -> dict[str, dict[str, dict[str, float]]]:
    """``{system: {metric: {qid: value}}}``: each ranking's metrics per judged query of the reported split."""
    return {name: per_query(qrels, run) for name, run in rankings.items()}


def write_per_query(out_dir, values: dict) -> None:
    """``eval/per_query.json``: :func:`per_query_values`, for paired tests between runs (distill.compare,
    benchmarks/significance_scifact.py)."""
    (out_dir / PER_QUERY).write_text(json.dumps(values))


def gain_over_start(values: dict, start: str) -> dict | None:
    """The distilled student against its own zero-shot start over the same queries: distill.compare's paired
    randomization test and bootstrap interval per metric, ``{control, treatment, tests: {metric: {...}}}``;
    None where either ranking is missing or there is no judged query."""
    if start not in values or "student_distilled" not in values:
        return None
    try:
        tests = compare([values[start]], [values["student_distilled"]])
    except CompareError:
        return None
    return {"control": start, "treatment": "student_distilled", "tests": tests}


def render_markdown(report: dict) -> str:
    lines = [f"# Evaluation: run `{report['run']}`, split `{report['split']}` ({report['queries']} queries)", "",
             *metrics_table(report["metrics"].items())]
    s, sp = report["sizes"], report["speed"]
    lines += ["", "| | student | teacher | ratio |", "|---|---|---|---|",
              f"| parameters | {s['student_parameters']:,} | {s['teacher_parameters']:,} | "
              f"{s['teacher_to_student_size']:.1f}x smaller |"]
    if "teacher_pairs_per_s" in sp:
        lines.append(f"| passages/s (student encode vs teacher pair scoring) | {sp['student_passages_per_s']:.1f} | "
                     f"{sp['teacher_pairs_per_s']:.1f} | {sp['student_passage_speedup_vs_teacher_pairs']:.1f}x |")
        lines.append(f"| queries/s (student encode vs teacher pair scoring) | {sp['student_queries_per_s']:.1f} | "
                     f"{sp['teacher_pairs_per_s']:.1f} | {sp['student_query_speedup_vs_teacher_pairs']:.1f}x |")
    if "teacher_passages_per_s" in sp:
        for kind, key in (("queries", "query"), ("passages", "passage")):
            lines.append(f"| {kind}/s (student vs teacher dual encoder) | {sp[f'student_{kind}_per_s']:.1f} | "
                         f"{sp[f'teacher_{kind}_per_s']:.1f} | {sp[f'student_{key}_speedup_vs_teacher_encoder']:.1f}x |")
    if report.get("dev"):
        lines += ["", f"Dev split ({report['dev']['queries']} held-out training queries, for choosing settings; "
                  "never the reported split):", "", *metrics_table(report["dev"]["metrics"].items())]
    tail = f" (the rest of its top {report['first_stage_depth']} follows in its order)" \
        if report.get("first_stage_depth") else ""
    lines += ["", f"Teacher row: the teacher reranks the zero-shot student's top {report['rerank_depth']}{tail}. "
              f"Index: `{report['index'].get('factory')}`, version `{report['index'].get('version')}`."]
    if report.get("ensemble"):
        e = report["ensemble"]
        lines.append(f"Ensemble teacher ({e['fusion']} fusion), weights chosen on {e['chosen_on']}: "
                     + ", ".join(f"{k} {v:.2f}" for k, v in e["weights"].items())
                     + f"; `teacher_ensemble_union@{report['rerank_depth']}`: it ranks the union of BM25's and "
                     f"the zero-shot student's top {report['rerank_depth']} on its own.")
    if report.get("precision"):  # what each stage computed at (distill.precision)
        p, m = report["precision"], report["precision"]["machine"]
        lines.append("Precision: " + ", ".join(f"{s} {p[s] or 'unrecorded'}" for s in ("score", "train", "encode"))
                     + f", teacher rerank {p['teacher_rerank']}, queries {p['queries']}; {m['cpu_model']} (torch CPU "
                     f"capability {m['cpu_capability']}, {'' if m['native_bf16'] else 'no '}native bf16"
                     + (f", bf16 matmul {m['bf16_speedup']:.2f}x fp32" if m.get("bf16_speedup") else "") + ").")
    lines += ["", *payoff_lines(report), ""]
    return "\n".join(lines)


def payoff_lines(report: dict) -> list[str]:
    """The demo's point in three lines: teacher vs the student's start, distilled vs its start, and the
    student's size and one-query speed against the teacher's."""
    m, s, sp = report["metrics"], report["sizes"], report["speed"]
    zs = m.get("student_zero_shot", {}).get("ndcg@10")
    dist = m.get("student_distilled", {}).get("ndcg@10")
    teacher = next((v["ndcg@10"] for k, v in m.items() if k.startswith("teacher_rerank")), None)
    if zs is None or dist is None or teacher is None:
        return []
    out = [f"Distillation on this split (nDCG@10): teacher {teacher:.4f} vs the student's zero-shot start "
           f"{zs:.4f} ({teacher - zs:+.4f}); distilled student {dist:.4f} ({dist - zs:+.4f} over its start, "
           f"{dist / teacher:.1%} of the teacher)."]
    t = report.get("gain_over_start", {}).get("tests", {}).get("ndcg@10")
    if t:
        out.append(f"Paired over the {t['queries']} queries, distilled vs its start: {t['diff']:+.4f} nDCG@10 "
                   f"(95% CI [{t['ci95'][0]:+.4f}, {t['ci95'][1]:+.4f}], randomization p {t['p']:.4f}); better on "
                   f"{t['wins']} queries, worse on {t['losses']}, level on {t['ties']}.")
    speed = ""
    if "teacher_query_latency_ms" in sp:
        speed = (f"; one query encodes in {sp['student_query_latency_ms']:.1f} ms vs the teacher's "
                 f"{sp['teacher_query_latency_ms']:.1f} ms "
                 f"({sp['teacher_query_latency_ms'] / sp['student_query_latency_ms']:.1f}x faster)")
    elif "student_query_speedup_vs_teacher_pairs" in sp:
        speed = (f"; it encodes {sp['student_query_speedup_vs_teacher_pairs']:.1f}x more queries per second than "
                 "the teacher scores (query, passage) pairs")
    out.append(f"Student: {s['student_parameters']:,} parameters, {s['teacher_to_student_size']:.1f}x fewer than "
               f"the teacher's {s['teacher_parameters']:,}{speed}.")
    return out


def plot(systems: dict, path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    names = list(systems)
    x = np.arange(len(METRICS))
    w = 0.8 / len(names)
    fig, ax = plt.subplots(figsize=(8, 4))
    for i, n in enumerate(names):
        ax.bar(x + i * w, [systems[n][m] for m in METRICS], w, label=n)
    ax.set_xticks(x + 0.4 - w / 2, METRICS)
    ax.set_ylim(0, 1)
    ax.legend(fontsize=8)
    ax.set_title("Test-split retrieval quality")
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)
