"""Stage ``teacher`` (optional): fine-tune a cross-encoder teacher on the train qrels, on Ray Train.

Each training group is one query with one judged positive and ``negatives_per_query`` BM25-mined
negatives (judged positives excluded); ``teacher.label_share`` keeps the queries of the label budget only
(the draw training.label_share makes at the same seed). The loss is the localised contrastive estimate

    L = -log( exp(f(q, d+)) / sum_{d in group} exp(f(q, d)) )

over the cross-encoder's logits f. With ``teacher.finetune: false`` the configured model is used as is.

A reader teacher (``teacher.kind: reader``, distill.reader) is fine-tuned on question-answer pairs
instead, with no relevance labels: each question outside the test split that has answers
(``data.answers``) is read with its top ``reader_passages`` passages (BM25, or the zero-shot student with
``teacher.reader_retriever: student``), Fusion-in-Decoder style, and
the loss is the answer's token-level cross-entropy  L = -sum_t log p(a_t | a_<t, q, p_1..p_k).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq

from distill import raytrain
from distill.bm25 import BM25
from distill.progress import Progress


def labelled_queries(qrels: dict, label_share: float | None, seed: int) -> list[str]:
    """The training queries whose qrels the teacher may read, in qrels order: every one, or with
    ``teacher.label_share`` the share of the labelled ones (a judged positive) that training.label_share
    keeps at the same seed (distill.label_budget.kept_queries)."""
    if label_share is None:
        return list(qrels)
    from distill.label_budget import kept_queries

    keep = kept_queries([q for q, rels in qrels.items() if any(r > 0 for r in rels.values())], label_share, seed)
    return [q for q in qrels if q in keep]


def build_teacher_groups(data, split: str, pool_depth: int = 30, max_queries: int | None = None,
                         label_share: float | None = None, seed: int = 0) -> pd.DataFrame:
    """One row per training query of ``split`` (the first ``max_queries``; with ``label_share``, those of
    them the label budget keeps) with a judged positive and a BM25 negative: its text, positives' and
    negatives' texts."""
    qrels = data.qrels[split]
    if max_queries:
        qrels = dict(list(qrels.items())[:max_queries])
    qids = labelled_queries(qrels, label_share, seed)
    if not qids:
        return pd.DataFrame(columns=["query", "positives", "negatives"])
    docids = list(data.corpus)
    bm25 = BM25(docids, [data.doc_text(d) for d in docids])
    ranked, _ = bm25.search([data.queries[q] for q in qids], pool_depth)
    rows = []
    for q, cands in zip(qids, ranked):
        pos = [d for d, r in qrels[q].items() if r > 0]
        neg = [d for d in cands if d not in qrels[q]]
        if pos and neg:
            rows.append({"query": data.queries[q], "positives": [data.doc_text(d) for d in pos],
                         "negatives": [data.doc_text(d) for d in neg]})
    return pd.DataFrame(rows)


def fit_steps(config: dict, model, optim, per_step: int, n_groups: int, rank: int, world: int, batch_loss):
    """The teacher loops' shared steps: ``epochs`` passes over ``n_groups`` rows, ``per_step`` rows per worker
    and step (distill.raytrain.step_indices), ``batch_loss(rows, rng)`` on each step's rows with the step's
    generator, AdamW steps with gradients clipped at norm 1 and the warmup-decay schedule (warmup: a tenth
    of the steps). Returns (last loss, steps)."""
    import torch

    steps_per_epoch = raytrain.epoch_steps(n_groups, per_step, world)
    total = steps_per_epoch * config["epochs"]
    sched = raytrain.warmup_decay_lr(optim, total, max(1, total // 10))
    model.train()
    loss = torch.tensor(0.0)
    progress = Progress("teacher", total, rank)
    for step in range(total):
        idx = raytrain.step_indices(n_groups, step, steps_per_epoch, per_step, world, rank, config["seed"])
        loss = batch_loss(idx, np.random.default_rng([config["seed"], step, rank]))
        optim.zero_grad()
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        optim.step()
        sched.step()
        progress.step(step + 1, float(loss.detach()))
    return loss, total


def teacher_loop(config: dict) -> None:
    import torch
    from ray.train.torch import prepare_model

    from distill.models import CrossEncoder

    rank, world = raytrain.start_worker(config["threads"], config["seed"])
    groups = pq.read_table(config["groups_path"]).to_pandas()
    n_neg = config["negatives"]
    per_step = max(1, config["batch_size"] // (n_neg + 1))
    ce = CrossEncoder(config["model"], config["max_length"], config["trust_remote_code"], config["head"])
    model = prepare_model(ce)
    # a fresh scoring head learns at its own (higher) rate; the pretrained body at the configured one
    head = ce.head_parameters()
    head_ids = {id(p) for p in head}
    body = [p for p in ce.parameters() if id(p) not in head_ids]
    optim = torch.optim.AdamW([{"params": body, "lr": config["lr"]},
                               {"params": head, "lr": config["head_lr"]}], weight_decay=0.01)
    device = next(model.parameters()).device

    def batch_loss(idx, rng):
        """Localised contrastive estimation: the positive (column 0) against its sampled negatives."""
        qs, ds = [], []
        for i in idx:
            g = groups.iloc[i]
            negs = list(g["negatives"])
            chosen = [g["positives"][rng.integers(len(g["positives"]))]]
            chosen += [negs[j] for j in rng.choice(len(negs), size=n_neg, replace=len(negs) < n_neg)]
            qs += [g["query"]] * len(chosen)
            ds += chosen
        inputs = {k: v.to(device) for k, v in ce.tokenize(qs, ds).items()}
        logits = model(**inputs).view(len(idx), n_neg + 1)
        return torch.nn.functional.cross_entropy(logits, torch.zeros(len(idx), dtype=torch.long, device=device))

    loss, total = fit_steps(config, model, optim, per_step, len(groups), rank, world, batch_loss)
    raytrain.report_export({"loss": float(loss.detach()), "steps": total}, rank, ce.save, total)


def teacher_path(rd) -> str:
    """Where scoring and evaluation load the teacher from."""
    from distill.models import resolve_model

    cfg = rd.config
    if cfg.teacher.finetunes:
        return str(rd.stage_path("teacher").resolve())
    if cfg.teacher.kind == "ensemble":  # no model of its own: its members (distill.ensemble.member_specs)
        return ""
    return resolve_model(cfg.teacher.model)


def run(rd, data) -> dict:
    from distill.models import resolve_model
    from distill.raycluster import ensure_ray

    cfg = rd.config
    t = cfg.teacher
    if not t.finetunes:
        rd.stage_path("teacher").mkdir(exist_ok=True)
        rd.mark_done("teacher", {"finetuned": 0}, model=resolve_model(t.model) if t.model else None)
        return {"finetuned": 0}
    if t.kind == "reader":
        return run_reader(rd, data)
    ensure_ray(cfg.ray)
    groups = build_teacher_groups(data, cfg.data.train_split, max_queries=cfg.data.max_train_queries,
                                  label_share=t.label_share, seed=cfg.seed)
    if len(groups) == 0:
        raise RuntimeError(f"teacher: no training query to fine-tune on (teacher.label_share={t.label_share} "
                           "keeps none with a judged positive and a BM25 negative)")
    work = rd.path / "teacher_work"
    work.mkdir(exist_ok=True)
    pq.write_table(pa.Table.from_pandas(groups, preserve_index=False), work / "groups.parquet")
    loop_cfg = {"groups_path": str((work / "groups.parquet").resolve()), "model": resolve_model(t.model),
                "max_length": t.max_length, "trust_remote_code": t.trust_remote_code, "head": t.head,
                "threads": max(1, int(t.cpus_per_worker)), "seed": t.seed, "epochs": t.epochs, "lr": t.learning_rate,
                "head_lr": t.head_learning_rate, "batch_size": t.batch_size, "negatives": t.negatives_per_query}
    steps = _fit_and_export(rd, teacher_loop, loop_cfg, "teacher")
    counts = {"groups": len(groups), "steps": steps["steps"]}
    rd.mark_done("teacher", counts, final_loss=steps["loss"])
    return counts


def _fit_and_export(rd, loop, loop_cfg: dict, name: str) -> dict:
    """Fine-tune on Ray Train (DDP, ``teacher.num_workers``) and copy the exported model into the stage's
    output; returns {"steps", "loss"}."""
    cfg = rd.config
    t = cfg.teacher
    trainer = raytrain.make_trainer(loop, loop_cfg, name=name, storage=rd.path / "teacher_work" / "checkpoints",
                                    num_workers=t.num_workers, cpus_per_worker=t.cpus_per_worker,
                                    use_gpu=cfg.training.use_gpu)
    result = trainer.fit()
    with rd.atomic_output("teacher") as tmp:
        state = raytrain.copy_export(result, tmp)
    return {"steps": state["steps"], "loss": (result.metrics or {}).get("loss")}


# ---- a FiD reader on question-answer pairs ---------------------------------------------------------------
def build_reader_groups(data, answers: dict[str, list[str]], test_split: str, passages: int,
                        max_queries: int | None = None, retrieve=None) -> pd.DataFrame:
    """One row per answered question outside the test split: its text, top passages, answers.
    ``retrieve(question_texts, k)`` gives each question's top k docids (default: BM25)."""
    test = set(data.qrels.get(test_split, {}))
    qids = [q for q in answers if q not in test][:max_queries] if max_queries else [q for q in answers if q not in test]
    if not qids:
        return pd.DataFrame(columns=["qid", "query", "passages", "answers"])
    docids = list(data.corpus)
    if retrieve is None:
        bm25 = BM25(docids, [data.doc_text(d) for d in docids])
        retrieve = lambda texts, k: bm25.search(texts, k)[0]  # noqa: E731
    ranked = retrieve([data.queries[q] for q in qids], min(passages, len(docids)))
    return pd.DataFrame([{"qid": q, "query": data.queries[q], "passages": [data.doc_text(d) for d in ids],
                          "answers": answers[q]} for q, ids in zip(qids, ranked)])


def dense_retriever(cfg, data):
    """``retrieve(texts, k)`` with the zero-shot student (``mining.encoder`` when set) over the corpus:
    corpus and questions embedded on a Ray Data model pool, exact inner-product search."""
    from distill.index import build_index
    from distill.models import resolve_model
    from distill.stages.encode import encode_texts
    from distill.stages.mine import zero_shot_kwargs

    enc = cfg.mining_encoder
    model, kw = resolve_model(enc.model), zero_shot_kwargs(enc)
    docids = list(data.corpus)

    def retrieve(texts: list[str], k: int) -> list[list[str]]:
        keys = [f"d:{d}" for d in docids] + [f"q:{i}" for i in range(len(texts))]
        emb = encode_texts(keys, [data.doc_text(d) for d in docids] + list(texts), model, cfg.ray,
                           cfg.encoding.batch_size, cfg.encoding.actors, kw)
        _, idx = build_index(emb[: len(docids)]).search(emb[len(docids):], k)
        return [[docids[j] for j in row] for row in idx]

    return retrieve


def reader_loop(config: dict) -> None:
    import torch
    from ray.train.torch import prepare_model

    from distill.reader import FiDReader

    rank, world = raytrain.start_worker(config["threads"], config["seed"])
    groups = pq.read_table(config["groups_path"]).to_pandas()
    per_step = max(1, config["batch_size"] // config["passages"])  # questions per worker and step
    reader = FiDReader(config["model"], config["max_length"], config["answer_max_length"], config["trust_remote_code"])
    model = prepare_model(reader)
    optim = torch.optim.AdamW(model.parameters(), lr=config["lr"], weight_decay=0.01)
    device = next(model.parameters()).device

    def batch_loss(idx, rng):
        """The answers' token cross-entropy, each question read with its top passages (FiD)."""
        rows = [groups.iloc[i] for i in idx]
        k = min(len(r["passages"]) for r in rows)
        ids, mask = reader.tokenize([r["query"] for r in rows], [list(r["passages"])[:k] for r in rows])
        labels = reader.tokenize_answers([r["answers"][rng.integers(len(r["answers"]))] for r in rows])
        return model(ids.to(device), mask.to(device), labels.to(device))

    loss, total = fit_steps(config, model, optim, per_step, len(groups), rank, world, batch_loss)
    raytrain.report_export({"loss": float(loss.detach()), "steps": total}, rank, reader.save, total)


def run_reader(rd, data) -> dict:
    """Fine-tune the reader on Ray Train (TorchTrainer, DDP) and export it as the run's teacher."""
    from distill.data import DataError
    from distill.models import resolve_model
    from distill.raycluster import ensure_ray
    from distill.answers import read_answers

    cfg = rd.config
    t = cfg.teacher
    answers, acounts = read_answers(Path(cfg.data.dir) / cfg.data.answers, data.queries, data.rejects)
    data.rejects.write(rd.path / "rejects.jsonl")
    rd.manifest.setdefault("data", {})["answers"] = acounts
    rd.save()
    if acounts["rows"] and acounts["rejected"] / acounts["rows"] > cfg.data.max_reject_share:
        raise DataError(f"{cfg.data.answers}: {acounts['rejected']} of {acounts['rows']} rows rejected, over the "
                        f"configured max_reject_share {cfg.data.max_reject_share:.1%}; see the rejects file")
    ensure_ray(cfg.ray)
    groups = build_reader_groups(data, answers, cfg.data.test_split, t.reader_passages, cfg.data.max_train_queries,
                                 dense_retriever(cfg, data) if t.reader_retriever == "student" else None)
    if len(groups) == 0:
        raise DataError(f"{cfg.data.answers}: no question outside the test split has answers to fine-tune the reader on")
    work = rd.path / "teacher_work"
    work.mkdir(exist_ok=True)
    pq.write_table(pa.Table.from_pandas(groups, preserve_index=False), work / "reader_groups.parquet")
    loop_cfg = {"groups_path": str((work / "reader_groups.parquet").resolve()), "model": resolve_model(t.model),
                "max_length": t.max_length, "answer_max_length": t.answer_max_length,
                "trust_remote_code": t.trust_remote_code, "threads": max(1, int(t.cpus_per_worker)), "seed": t.seed,
                "epochs": t.epochs, "lr": t.learning_rate, "batch_size": t.batch_size, "passages": t.reader_passages}
    steps = _fit_and_export(rd, reader_loop, loop_cfg, "reader")
    counts = {"questions": len(groups), "steps": steps["steps"]}
    rd.mark_done("teacher", counts, answers=acounts, final_loss=steps["loss"])
    return counts
