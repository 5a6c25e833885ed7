"""Training batches: groups, sampling and the step -> rows map that makes resume exact."""

import numpy as np
import pandas as pd

from distill.stages.mine import merge_candidates
from distill.stages.train import build_groups, sample_group, step_indices


def test_step_indices_partition_each_epoch_across_workers():
    n, batch, world, spe = 40, 4, 2, 5
    for epoch in range(2):
        seen = []
        for step in range(epoch * spe, (epoch + 1) * spe):
            for rank in range(world):
                seen += step_indices(n, step, spe, batch, world, rank, seed=3).tolist()
        assert sorted(seen) == list(range(n))  # every row once per epoch, no overlap between workers
    # a pure function of (seed, step, rank): a resumed run sees the same batches
    assert (step_indices(n, 7, spe, batch, world, 1, 3) == step_indices(n, 7, spe, batch, world, 1, 3)).all()


def test_sample_group_positive_first_and_padding_masked():
    row = {"docs": ["p", "n1", "n2"], "scores": [3.0, 1.0, 0.5], "labels": [1, 0, 0]}
    docs, scores, mask, chosen = sample_group(row, 5, np.random.default_rng(0))
    assert docs[0] == "p" and scores[0] == 3.0
    assert sorted(docs[1:3]) == ["n1", "n2"] and docs[3:] == ["", ""]
    assert mask == [True, True, True, False, False]
    assert chosen[0] == 0 and sorted(chosen[1:3]) == [1, 2] and chosen[3:] == [-1, -1]


def test_build_groups_skips_queries_without_positive_or_negative():
    scores = pd.DataFrame({"qid": ["a", "a", "b", "c", "c"], "docid": ["1", "2", "1", "1", "2"],
                           "teacher_score": [1.0, 0.0, 2.0, 0.5, 0.1], "label": [1, 0, 1, 0, 0]})
    g = build_groups(scores, {"a": "qa", "b": "qb", "c": "qc"}, lambda d: f"doc{d}")
    assert g["qid"].tolist() == ["a"]
    assert g.iloc[0]["docs"] == ["doc1", "doc2"] and g.iloc[0]["labels"] == [1, 0]


def test_merge_candidates_dedups_and_keeps_every_positive():
    ranked = {"bm25": ([["d1", "d2"]], [[5.0, 4.0]]), "student": ([["d2", "d3"]], [[0.9, 0.8]])}
    c = merge_candidates(["q"], ranked, {"q": {"d3": 1, "d9": 1, "d1": 0}})
    assert c["docid"].tolist() == ["d1", "d2", "d3", "d9"]
    assert c["source"].tolist() == ["bm25", "bm25", "student", "qrels"]
    assert c["label"].tolist() == [0, 0, 1, 1] and c["rank"].tolist() == [0, 1, 2, 3]
