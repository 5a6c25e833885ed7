"""Stage ``score`` for a reader teacher: Ray Data reads each question's candidates together (FiD).

Contract: :func:`score_pairs_reader` takes the stage's (qid, docid) pairs and returns them with a float32
``teacher_score`` column, rows in = rows out (checked); the pairs are grouped per question (one row per
question: ``qid``, ``query``, ``docids``, ``docs``), longest questions first, and sent to a pool of
:class:`ReaderActor` (distill.raydata.map_model_pool), each holding one :class:`distill.reader.FiDReader`
that scores a question's candidates by its cross-attention (distill.attention). distill.stages.score
calls it for ``teacher.kind: reader``; the module imports no Ray at module level.
"""

from __future__ import annotations

import math

import numpy as np
import torch

from distill.reader import FiDReader


class ReaderActor:
    """Ray Data actor: for each question row (``qid``, ``query``, ``docids``, ``docs``) the reader's
    attention score of every candidate; returns one row per (qid, docid)."""

    def __init__(self, model_dir: str, max_length: int, answer_max_length: int, attention: dict, threads: int,
                 batch_size: int, trust_remote_code: bool = False):
        torch.set_num_threads(threads)
        self.reader = FiDReader(model_dir, max_length, answer_max_length, trust_remote_code)
        if torch.cuda.is_available():  # the pool asked for a GPU (ray.actor_gpus)
            self.reader.to("cuda")
        self.attention = attention
        self.batch_size = batch_size

    def __call__(self, batch: dict) -> dict:
        qids, docids, scores = [], [], []
        for qid, query, ids, docs in zip(batch["qid"], batch["query"], batch["docids"], batch["docs"]):
            s = self.reader.passage_scores(str(query), [str(d) for d in docs], self.attention, self.batch_size)
            qids += [str(qid)] * len(ids)
            docids += [str(d) for d in ids]
            scores.append(s)
        return {"qid": np.array(qids, dtype=object), "docid": np.array(docids, dtype=object),
                "teacher_score": np.concatenate(scores) if scores else np.zeros(0, np.float32)}


def score_pairs_reader(pairs, queries: dict[str, str], doc_text, teacher_dir: str, teacher_cfg, scoring_cfg,
                       ray_cfg, stats: dict | None = None):
    """The reader's attention score for each (qid, docid) row of ``pairs``; a question's candidates are
    read together (FiD), so rows are grouped per question before they become blocks. Rows in = rows out,
    checked."""
    import time

    t0 = time.perf_counter()
    import pandas as pd
    import pyarrow as pa

    from distill.raycluster import actor_threads
    from distill.raydata import blocks_of, check_rows, map_model_pool

    groups = [(q, g["docid"].astype(str).tolist()) for q, g in pairs.groupby("qid", sort=False)]
    docs = [[doc_text(d) for d in ids] for _, ids in groups]
    order = np.argsort([-sum(len(t) for t in ds) for ds in docs], kind="stable")
    table = pa.table({"qid": [str(groups[i][0]) for i in order], "query": [queries[groups[i][0]] for i in order],
                      "docids": [groups[i][1] for i in order], "docs": [docs[i] for i in order]})
    per_q = max(1, math.ceil(len(pairs) / max(1, len(groups))))
    q_batch = max(1, scoring_cfg.batch_size // per_q)
    kwargs = {"model_dir": teacher_dir, "max_length": teacher_cfg.max_length,
              "answer_max_length": teacher_cfg.answer_max_length, "attention": teacher_cfg.attention.model_dump(),
              "threads": actor_threads(ray_cfg.actor_cpus), "batch_size": scoring_cfg.batch_size,
              "trust_remote_code": teacher_cfg.trust_remote_code}
    frames = [pd.DataFrame({"qid": b["qid"].astype(str), "docid": b["docid"].astype(str),
                            "teacher_score": np.asarray(b["teacher_score"], np.float32)})
              for b in map_model_pool(blocks_of(table, max(1, min(scoring_cfg.actors * 4, len(groups)))), ReaderActor,
                                      kwargs, q_batch, scoring_cfg.actors, ray_cfg, stats, started=t0, keys=("qid",))]
    out = pd.concat(frames, ignore_index=True) if frames else pd.DataFrame(columns=["qid", "docid", "teacher_score"])
    check_rows("score", list(zip(pairs["qid"], pairs["docid"])), list(zip(out["qid"], out["docid"])))
    return pairs.merge(out, on=["qid", "docid"], how="left", validate="one_to_one")
