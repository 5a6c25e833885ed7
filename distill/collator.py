"""Batch assembly for the student's training step (the collator).

For each query row of the training groups (distill.stages.train.build_groups) ``sample_group`` draws a
positive and up to K-1 negatives; ``Collator`` turns B such rows into the step's inputs: tokenized
queries and documents and the teacher's targets (scores, mask, EmbedDistill vectors, LEAD layer scores
and the layer pairs drawn for the step). ``assemble`` joins them with the student's outputs into the
``StepBatch`` every loss reads. All draws come from one ``numpy`` generator per (seed, step, rank), in a
fixed order: the groups' samples, then the LEAD layer pairs.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np


def sample_group(row, k: int, rng: np.random.Generator):
    """(docs, teacher scores, mask, chosen candidate indices): a random positive first, then up to k-1
    random negatives; short lists are padded with masked slots (index -1)."""
    labels = np.asarray(row["labels"])
    pos = np.flatnonzero(labels > 0)
    neg = np.flatnonzero(labels == 0)
    chosen = [int(rng.choice(pos))] + rng.choice(neg, size=min(k - 1, len(neg)), replace=False).tolist()
    docs = [row["docs"][i] for i in chosen]
    scores = [row["scores"][i] for i in chosen]
    mask = [True] * len(chosen)
    while len(docs) < k:  # pad short lists; padded slots are masked out of every loss
        docs.append("")
        scores.append(0.0)
        mask.append(False)
        chosen.append(-1)
    return docs, scores, mask, chosen


@dataclass
class Features:
    """One step's inputs on the device: ``q_in``/``d_in`` tokenizer outputs (``d_in`` None for an asymmetric
    student), ``teacher_scores`` [B, K], ``mask`` [B, K], ``teacher_q`` [B, d_t] and ``teacher_d``
    [B*K, d_t] (embedding targets; zero rows for padding), ``teacher_layers`` [B, K, L_t] and
    ``layer_pairs`` (LEAD)."""

    q_in: dict
    d_in: dict | None
    teacher_scores: object
    mask: object
    teacher_q: object = None
    teacher_d: object = None
    teacher_layers: object = None
    layer_pairs: list | None = None


class Collator:
    """Builds a step's ``Features`` from rows of ``groups``: ``group_size`` candidates per query, tokenized
    by ``tokenize``; embedding targets when ``embeddings``, layer scores and ``pairs_per_step`` pairs of
    ``layer_map`` when ``layer_map`` is given; no document tokens when ``asymmetric``."""

    def __init__(self, groups, group_size: int, tokenize, *, embeddings: bool = False, asymmetric: bool = False,
                 layer_map: list[tuple[int, int]] | None = None, pairs_per_step: int = 0, device="cpu"):
        self.groups, self.k, self.tokenize = groups, group_size, tokenize
        self.embeddings, self.asymmetric, self.device = embeddings, asymmetric, device
        self.layer_map, self.pairs_per_step = layer_map, pairs_per_step

    def sample(self, idx, rng: np.random.Generator) -> dict:
        """The rows' candidates and targets as lists (the generator's draws: one group after another)."""
        out = {"docs": [], "scores": [], "masks": [], "t_q": [], "t_d": [], "t_layers": []}
        for i in idx:
            row = self.groups.iloc[i]
            d, s, m, chosen = sample_group(row, self.k, rng)
            out["docs"] += d
            out["scores"].append(s)
            out["masks"].append(m)
            if self.layer_map:
                n_l = len(row["layer_scores"][0])
                out["t_layers"].append([row["layer_scores"][c] if c >= 0 else [0.0] * n_l for c in chosen])
            if self.embeddings:
                out["t_q"].append(row["q_embs"][chosen[0]])  # the query's vector from its positive pair
                out["t_d"] += [row["d_embs"][c] if c >= 0 else np.zeros(len(row["d_embs"][0]), np.float32)
                               for c in chosen]
        return out

    def pick_layer_pairs(self, rng: np.random.Generator) -> list[tuple[int, int]]:
        """The LEAD layer pairs of this step: ``pairs_per_step`` of ``layer_map`` without replacement."""
        n_pick = min(self.pairs_per_step, len(self.layer_map))
        return [self.layer_map[j] for j in rng.choice(len(self.layer_map), size=n_pick, replace=False)]

    def __call__(self, idx, rng: np.random.Generator) -> Features:
        import torch

        dev = self.device
        s = self.sample(idx, rng)
        q_in = {k: v.to(dev) for k, v in self.tokenize(self.groups["query"].iloc[idx].tolist()).items()}
        d_in = None if self.asymmetric else {k: v.to(dev) for k, v in self.tokenize(s["docs"]).items()}
        f = Features(q_in, d_in, torch.tensor(s["scores"], dtype=torch.float32, device=dev),
                     torch.tensor(s["masks"], dtype=torch.bool, device=dev))
        if self.embeddings:
            f.teacher_q = torch.tensor(np.asarray(s["t_q"], np.float32), device=dev)
            f.teacher_d = torch.tensor(np.asarray(s["t_d"], np.float32), device=dev)
        if self.layer_map:
            f.layer_pairs = self.pick_layer_pairs(rng)
            f.teacher_layers = torch.tensor(np.asarray(s["t_layers"], np.float32), device=dev)
        return f


def assemble(outputs, f: Features, projection=None, asymmetric: bool = False):
    """The ``StepBatch`` of a step: the student's ``outputs`` (PairModel's, with per-layer vectors when
    ``f.layer_pairs`` is set) and the teacher's targets in ``f``. An asymmetric student's documents are
    the teacher's fixed vectors (no gradient reaches a document side)."""
    from distill.losses.batch import StepBatch, pair_scores

    q_layers = d_layers = None
    if f.layer_pairs is not None:
        (q, q_layers), (d, d_layers) = outputs
    else:
        q, d = outputs
    if asymmetric:
        d = f.teacher_d
    q, d = q.float(), d.float()  # fp32 for the losses, also after a bf16 (autocast) forward
    if q_layers is not None and any(x.dtype != q.dtype for x in (*q_layers, *d_layers)):  # after a bf16 forward
        q_layers, d_layers = [x.float() for x in q_layers], [x.float() for x in d_layers]
    k = f.teacher_scores.shape[1]
    return StepBatch(scores=pair_scores(q, d, k), teacher_scores=f.teacher_scores, mask=f.mask, queries=q, docs=d,
                     teacher_queries=f.teacher_q, teacher_docs=f.teacher_d, projection=projection,
                     asymmetric=asymmetric, query_layers=q_layers, doc_layers=d_layers,
                     teacher_layers=f.teacher_layers, layer_pairs=f.layer_pairs)
