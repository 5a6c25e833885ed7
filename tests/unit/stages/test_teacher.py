"""distill/stages/teacher.py without Ray: the teacher's training groups, the reader's, where the teacher
loads from, and the steps both teacher loops share (fit_steps)."""

from types import SimpleNamespace

import numpy as np
import torch

from distill.stages import teacher


def _data():
    corpus = {f"d{i}": {"title": "", "text": t} for i, t in enumerate(
        ["apple pie recipe", "apple tree care", "car engine repair", "engine oil change", "pie crust"])}
    queries = {"q1": "apple pie", "q2": "engine repair", "q3": "nothing here"}
    return SimpleNamespace(corpus=corpus, queries=queries, qrels={"train": {"q1": {"d0": 1}, "q2": {"d2": 1, "d3": 0}},
                                                                   "test": {"q3": {"d4": 1}}},
                           doc_text=lambda d: corpus[d]["text"])


def test_teacher_groups_take_judged_positives_and_unjudged_bm25_negatives():
    g = teacher.build_teacher_groups(_data(), "train", pool_depth=5)
    assert g["query"].tolist() == ["apple pie", "engine repair"]
    assert g.iloc[0]["positives"] == ["apple pie recipe"] and "apple pie recipe" not in g.iloc[0]["negatives"]
    # a judged non-relevant document (d3, score 0) is neither positive nor negative
    assert g.iloc[1]["positives"] == ["car engine repair"] and "engine oil change" not in g.iloc[1]["negatives"]
    assert len(teacher.build_teacher_groups(_data(), "train", pool_depth=5, max_queries=1)) == 1


def test_teacher_groups_keep_the_label_budget_only():
    kept = teacher.labelled_queries(_data().qrels["train"], 0.5, seed=3)  # one of the two labelled queries
    g = teacher.build_teacher_groups(_data(), "train", pool_depth=5, label_share=0.5, seed=3)
    assert len(kept) == 1 and g["query"].tolist() == [_data().queries[kept[0]]]
    assert len(teacher.build_teacher_groups(_data(), "train", pool_depth=5, label_share=0.0)) == 0
    assert len(teacher.build_teacher_groups(_data(), "train", pool_depth=5, label_share=1.0)) == 2


def test_reader_groups_skip_the_test_split():
    data = _data()
    g = teacher.build_reader_groups(data, {"q1": ["pie"], "q3": ["x"]}, "test", passages=2,
                                    retrieve=lambda texts, k: [["d0", "d4"][:k] for _ in texts])
    assert g["qid"].tolist() == ["q1"] and g.iloc[0]["passages"] == ["apple pie recipe", "pie crust"]
    empty = teacher.build_reader_groups(data, {"q3": ["x"]}, "test", passages=2)
    assert len(empty) == 0 and list(empty.columns) == ["qid", "query", "passages", "answers"]


def test_teacher_path(tmp_path):
    cfg = SimpleNamespace(teacher=SimpleNamespace(finetunes=False, kind="cross-encoder", model="/m/ce"))
    rd = SimpleNamespace(config=cfg, stage_path=lambda s: tmp_path / "teacher_model")
    assert teacher.teacher_path(rd) == "/m/ce"
    cfg.teacher.kind = "ensemble"
    assert teacher.teacher_path(rd) == ""
    cfg.teacher.finetunes = True
    assert teacher.teacher_path(rd) == str((tmp_path / "teacher_model").resolve())


def test_fit_steps_walks_the_epochs_with_warmup_decay_and_clipping():
    torch.manual_seed(0)
    model = torch.nn.Linear(2, 1)
    optim = torch.optim.SGD(model.parameters(), lr=1.0)
    seen, lrs = [], []

    def batch_loss(idx, rng):
        seen.append(sorted(idx.tolist()))
        lrs.append(optim.param_groups[0]["lr"])
        assert isinstance(rng, np.random.Generator)
        return (model(torch.ones(len(idx), 2)) ** 2).sum() * 100

    loss, total = teacher.fit_steps({"epochs": 2, "seed": 3}, model, optim, per_step=2, n_groups=5, rank=0, world=1,
                                    batch_loss=batch_loss)
    assert total == 4 and len(seen) == 4  # 5 rows, 2 per step: 2 steps per epoch
    assert len(set(map(tuple, seen[:2]))) == 2 and not set(seen[0]) & set(seen[1])  # disjoint within an epoch
    assert lrs == [1.0, 1.0, 2 / 3, 1 / 3]  # warmup max(1, 4 // 10) = 1 step; then (4 - s) / 3
    assert np.isfinite(float(loss)) and model.weight.grad.norm() <= 1.0 + 1e-6  # clipped at 1
