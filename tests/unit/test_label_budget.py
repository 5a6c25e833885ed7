"""training.label_share and training.unlabelled: judgements withheld from a share of the training queries,
which stay training queries that the teacher alone labels (the label-budget curve)."""

import pandas as pd
import pytest

from distill.config import build_config
from distill.stages.train import build_groups, unlabelled_policy, withhold_labels


def _candidates(n=10):
    rows = []
    for i in range(n):  # each query: 2 mined candidates (the first judged), and one positive only the qrels added
        rows += [(f"q{i}", f"a{i}", "bm25", 1, 0.5), (f"q{i}", f"b{i}", "bm25", 0, 0.1),
                 (f"q{i}", f"p{i}", "qrels", 1, 0.9)]
    rows += [("gen:0", "a0", "bm25", 1, 0.2), ("gen:0", "b0", "student", 0, 0.3)]
    return pd.DataFrame(rows, columns=["qid", "docid", "source", "label", "teacher_score"])


def test_withhold_labels_keeps_the_share_and_strips_the_rest():
    scores = _candidates(10)
    out, gone = withhold_labels(scores, 0.3, seed=13)
    assert len(gone) == 7 and "gen:0" not in gone  # generated queries keep their (free) labels
    unl = out[out["qid"].isin(gone)]
    assert unl["label"].sum() == 0 and not (unl["source"] == "qrels").any()
    assert len(unl) == 7 * 2  # the qrels-only positive removed, the mined candidates kept
    kept = out[~out["qid"].isin(gone)]
    assert len(kept) == 3 * 3 + 2 and kept["label"].sum() == 3 * 2 + 1
    assert withhold_labels(_candidates(10), 0.3, seed=13)[1] == gone  # deterministic in the seed
    assert withhold_labels(scores, 1.0, seed=13)[1] == [] and len(withhold_labels(scores, 0.0, 1)[1]) == 10


def _scores():
    rows = [("q1", "a", 0.1, 1), ("q1", "b", 0.9, 0), ("q1", "c", 0.5, 0),   # labelled
            ("q2", "a", 0.2, 0), ("q2", "b", 0.3, 0), ("q2", "c", 2.0, 0)]   # no judged positive
    return pd.DataFrame(rows, columns=["qid", "docid", "teacher_score", "label"])


def test_unlabelled_queries_are_dropped_or_take_the_teachers_top():
    q = {"q1": "x", "q2": "y"}
    dropped = build_groups(_scores(), q, lambda d: d, "drop")
    assert list(dropped["qid"]) == ["q1"] and not dropped["pseudo"].any()
    kept = build_groups(_scores(), q, lambda d: d, "teacher_top")
    assert list(kept["qid"]) == ["q1", "q2"] and list(kept["pseudo"]) == [False, True]
    assert kept.iloc[1]["labels"] == [0, 0, 1]  # the teacher's argmax is the positive slot
    assert kept.iloc[0]["labels"] == [1, 0, 0]  # a labelled query keeps its judgement


@pytest.mark.parametrize("losses,policy", [({"kl": 1.0}, "teacher_top"), ({"kl": 0.0, "infonce": 1.0}, "drop"),
                                           ({"kl": 0.0, "margin_mse": 1.0}, "teacher_top")])
def test_auto_policy_follows_the_losses(losses, policy):
    cfg = build_config({"teacher": {"model": "t"}, "student": {"model": "s"}, "training": {"losses": losses}})
    assert unlabelled_policy(cfg.training) == policy
    fixed = build_config({"teacher": {"model": "t"}, "student": {"model": "s"},
                          "training": {"losses": losses, "unlabelled": "drop"}})
    assert unlabelled_policy(fixed.training) == "drop"


def test_teacher_label_share_reads_the_queries_the_student_keeps():
    """teacher.label_share and training.label_share at one share and seed: the same labelled queries."""
    from distill.stages.teacher import labelled_queries

    scores = _candidates(10)
    _, gone = withhold_labels(scores, 0.3, seed=13)
    qrels = {f"q{i}": {f"a{i}": 1, f"p{i}": 1} for i in reversed(range(10))}  # another order, same ids
    qrels["q_unjudged"] = {"a0": 0}  # no judged positive: never drawn
    kept = labelled_queries(qrels, 0.3, seed=13)
    assert sorted(kept) == sorted({f"q{i}" for i in range(10)} - set(gone)) and len(kept) == 3
    assert kept == [q for q in qrels if q in kept]  # in qrels order
    assert labelled_queries(qrels, None, seed=13) == list(qrels)  # unset: every query
    assert labelled_queries(qrels, 0.0, seed=13) == []


def test_teacher_label_share_needs_a_teacher_fine_tuned_on_the_qrels():
    cfg = build_config({"teacher": {"model": "t", "label_share": 0.1}, "student": {"model": "s"}})
    assert cfg.teacher.label_share == 0.1
    for teacher in ({"model": "t", "finetune": False, "label_share": 0.1},
                    {"kind": "reader", "model": "t", "label_share": 0.1},
                    {"kind": "ensemble", "members": [{"name": "bm25", "kind": "bm25"}], "label_share": 0.1}):
        with pytest.raises(Exception, match="teacher.label_share applies to a teacher"):
            build_config({"teacher": teacher, "student": {"model": "s"}})
    with pytest.raises(Exception, match="label_share"):
        build_config({"teacher": {"model": "t", "label_share": 1.5}, "student": {"model": "s"}})


def test_teacher_label_share_set_changes_the_teachers_digest_and_unset_leaves_it():
    from distill.manifest import stage_digest

    base = {"teacher": {"model": "t"}, "student": {"model": "s"}}
    a, b = build_config(base), build_config({**base, "teacher": {"model": "t", "label_share": 0.1}})
    assert a.teacher.label_share is None
    assert stage_digest(a, "teacher") != stage_digest(b, "teacher")
    assert stage_digest(a, "teacher") == stage_digest(build_config(base, ["teacher.label_share=null"]), "teacher")
