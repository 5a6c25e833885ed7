"""Stage ``evaluate``: nDCG@10, MRR@10, Recall@100 on the test qrels for every system.

Systems: BM25; the zero-shot student (the starting point); the teacher reranking the zero-shot
student's top ``rerank_depth`` (the ceiling, scored on Ray Data like training pairs); the distilled
student through the run's FAISS index. The report also gives parameter counts and encode speed
(student queries/s and passages/s in one process, teacher pairs/s), as ratios to the teacher.
Writes ``eval/report.json``, ``eval/report.md`` and ``eval/metrics.png``.
"""

from __future__ import annotations

import json
import time

import numpy as np
import pandas as pd

from distill.bm25 import BM25
from distill.index import build_index, load_index
from distill.metrics import METRICS, evaluate_run, to_run
from distill.models import CrossEncoder, DualEncoder, count_parameters, resolve_model
from distill.stages.encode import read_embeddings
from distill.stages.mine import zero_shot_kwargs
from distill.stages.score import score_pairs


def _timed(fn, n: int, repeats: int = 3) -> float:
    """Items per second: best of ``repeats`` timed calls after a warm-up (the least disturbed run)."""
    fn()
    best = float("inf")
    for _ in range(repeats):
        t0 = time.perf_counter()
        fn()
        best = min(best, time.perf_counter() - t0)
    return n / best


def speed(student: DualEncoder, teacher: CrossEncoder | None, queries: list[str], docs: list[str]) -> dict:
    out = {"student_queries_per_s": _timed(lambda: student.encode(queries, 64), len(queries)),
           "student_passages_per_s": _timed(lambda: student.encode(docs, 64), len(docs))}
    if teacher is not None:
        out["teacher_pairs_per_s"] = _timed(lambda: teacher.score(queries, docs[: len(queries)], 32), len(queries))
    return out


def run(rd, data, teacher_dir: str) -> dict:
    import torch

    cfg = rd.config
    torch.set_num_threads(max(1, torch.get_num_threads()))
    qrels = data.qrels[cfg.data.test_split]
    qids = list(qrels)[: cfg.data.max_test_queries] if cfg.data.max_test_queries else list(qrels)
    qrels = {q: qrels[q] for q in qids}
    qtexts = [data.queries[q] for q in qids]
    depth = cfg.evaluation.first_stage_depth
    systems: dict[str, dict] = {}

    docids = list(data.corpus)
    dtexts = [data.doc_text(d) for d in docids]
    ids, sc = BM25(docids, dtexts).search(qtexts, depth)
    systems["bm25"] = evaluate_run(qrels, to_run(qids, ids, sc))

    base = DualEncoder(resolve_model(cfg.student.model), **zero_shot_kwargs(cfg.student))
    zs_ids, zs_emb = read_embeddings(rd.stage_path("mine") / "zeroshot")
    zs_scores, zs_idx = build_index(zs_emb).search(base.encode(qtexts), min(depth, len(zs_ids)))
    zs_ranked = [[zs_ids[j] for j in row] for row in zs_idx]
    zs_run = to_run(qids, zs_ranked, zs_scores)
    systems["student_zero_shot"] = evaluate_run(qrels, zs_run)

    rerank = cfg.evaluation.rerank_depth
    pairs = pd.DataFrame([(q, d) for q, ids in zip(qids, zs_ranked) for d in ids[:rerank]], columns=["qid", "docid"])
    scored = score_pairs(pairs, data.queries, data.doc_text, teacher_dir, cfg.teacher, cfg.scoring, cfg.ray)
    t_run: dict[str, dict[str, float]] = {q: {} for q in qids}
    for q, d, s in scored[["qid", "docid", "teacher_score"]].itertuples(index=False):
        t_run[q][d] = float(s)
    systems[f"teacher_rerank@{rerank}"] = evaluate_run(qrels, t_run)

    student = DualEncoder.load(rd.stage_path("train"))
    index = load_index(rd.stage_path("index"), nprobe=cfg.index.nprobe, ef_search=cfg.index.ef_search)
    s_ids, s_scores = index.search(student.encode(qtexts), depth)
    systems["student_distilled"] = evaluate_run(qrels, to_run(qids, s_ids, s_scores))

    teacher = CrossEncoder(teacher_dir, cfg.teacher.max_length, head=cfg.teacher.head) if cfg.teacher.kind == "cross-encoder" else None
    n = cfg.evaluation.speed_sample
    sample_q = (qtexts * (n // max(1, len(qtexts)) + 1))[:n]
    sample_d = (dtexts * (n // max(1, len(dtexts)) + 1))[:n]
    spd = speed(student, teacher, sample_q, sample_d)
    t_params = teacher.num_parameters if teacher else count_parameters(DualEncoder(teacher_dir).backbone)
    s_params = count_parameters(student.backbone)
    sizes = {"student_parameters": s_params, "teacher_parameters": t_params,
             "teacher_to_student_size": t_params / s_params}
    if "teacher_pairs_per_s" in spd:
        spd["student_passage_speedup_vs_teacher_pairs"] = spd["student_passages_per_s"] / spd["teacher_pairs_per_s"]
    report = {"run": cfg.name, "split": cfg.data.test_split, "queries": len(qids), "metrics": systems,
              "sizes": sizes, "speed": spd, "first_stage_depth": depth, "rerank_depth": rerank,
              "index": index.meta}
    with rd.atomic_output("evaluate") as tmp:
        (tmp / "report.json").write_text(json.dumps(report, indent=2))
        (tmp / "report.md").write_text(render_markdown(report))
        plot(systems, tmp / "metrics.png")
    rd.mark_done("evaluate", {"queries": len(qids), "systems": len(systems)})
    return report


def render_markdown(report: dict) -> str:
    lines = [f"# Evaluation: run `{report['run']}`, split `{report['split']}` ({report['queries']} queries)", "",
             "| system | " + " | ".join(METRICS) + " |", "|---|" + "---|" * len(METRICS)]
    for name, m in report["metrics"].items():
        lines.append(f"| {name} | " + " | ".join(f"{m[k]:.4f}" for k in METRICS) + " |")
    s, sp = report["sizes"], report["speed"]
    lines += ["", "| | student | teacher | ratio |", "|---|---|---|---|",
              f"| parameters | {s['student_parameters']:,} | {s['teacher_parameters']:,} | "
              f"{s['teacher_to_student_size']:.1f}x smaller |"]
    if "teacher_pairs_per_s" in sp:
        lines.append(f"| passages/s (student encode vs teacher pair scoring) | {sp['student_passages_per_s']:.1f} | "
                     f"{sp['teacher_pairs_per_s']:.1f} | {sp['student_passage_speedup_vs_teacher_pairs']:.1f}x |")
    lines.append(f"| queries/s (student encode) | {sp['student_queries_per_s']:.1f} | | |")
    lines += ["", f"Teacher row: the teacher reranks the zero-shot student's top {report['rerank_depth']}. "
              f"Index: `{report['index'].get('factory')}`, version `{report['index'].get('version')}`.", ""]
    return "\n".join(lines)


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
