"""distill.pair_cache: a pair the same teacher scored is read back, never scored again; another teacher,
precision or text gets its own scores."""

import pandas as pd
import pytest

from distill.config import build_config
from distill.manifest import RunDir, input_files
from distill.pair_cache import PairScoreCache, pair_key


def _pairs(rows):
    return pd.DataFrame(rows, columns=["qid", "docid"])


class Teacher:
    """Scores a pair as len(qid) + len(docid) and records every pair it was asked for."""

    def __init__(self):
        self.asked: list[tuple[str, str]] = []

    def __call__(self, todo: pd.DataFrame) -> pd.DataFrame:
        self.asked += list(zip(todo["qid"], todo["docid"]))
        return todo.assign(teacher_score=[float(len(q) + len(d)) for q, d in zip(todo["qid"], todo["docid"])])


def test_only_missing_pairs_are_scored_once_and_the_order_is_kept(tmp_path):
    teacher, cache = Teacher(), PairScoreCache(tmp_path, "k1")
    first = cache.scores(_pairs([("q1", "d1"), ("q1", "d22"), ("q2", "d1")]), ["teacher_score"], teacher)
    assert first["teacher_score"].tolist() == [4.0, 5.0, 4.0] and len(teacher.asked) == 3
    # the union of two first stages: two pairs known, one new, one asked twice in the same call
    union = _pairs([("q2", "d333"), ("q1", "d22"), ("q2", "d333"), ("q1", "d1")])
    out = cache.scores(union, ["teacher_score"], teacher)
    assert list(zip(out["qid"], out["docid"])) == list(zip(union["qid"], union["docid"]))
    assert out["teacher_score"].tolist() == [6.0, 5.0, 6.0, 4.0]
    assert teacher.asked[3:] == [("q2", "d333")]  # the new pair, once
    assert (cache.hits, cache.misses) == (2, 5)


def test_scores_persist_under_their_key_only(tmp_path):
    teacher = Teacher()
    PairScoreCache(tmp_path, "k1").scores(_pairs([("q1", "d1"), ("q2", "d2")]), ["teacher_score"], teacher)
    again = PairScoreCache(tmp_path, "k1")
    out = again.scores(_pairs([("q2", "d2"), ("q1", "d1")]), ["teacher_score"], teacher)
    assert out["teacher_score"].tolist() == [4.0, 4.0] and len(teacher.asked) == 2 and again.misses == 0
    other = PairScoreCache(tmp_path, "k2")  # another teacher: nothing to read
    other.scores(_pairs([("q1", "d1")]), ["teacher_score"], teacher)
    assert len(teacher.asked) == 3 and sorted(p.name for p in tmp_path.iterdir()) == [
        "teacher-pairs-k1.parquet", "teacher-pairs-k2.parquet"]


def test_member_columns_of_an_ensemble_are_cached_together(tmp_path):
    calls = []

    def members(todo):
        calls.append(len(todo))
        return todo.assign(teacher_member_ce=1.0, teacher_member_de=2.0)

    cache = PairScoreCache(tmp_path, "k")
    cols = ["teacher_member_ce", "teacher_member_de"]
    cache.scores(_pairs([("q", "a"), ("q", "b")]), cols, members)
    out = PairScoreCache(tmp_path, "k").scores(_pairs([("q", "b"), ("q", "c")]), cols, members)
    assert calls == [2, 1] and out[cols].to_numpy().tolist() == [[1.0, 2.0], [1.0, 2.0]]


def test_a_teacher_that_drops_pairs_is_an_error_not_a_silent_gap(tmp_path):
    with pytest.raises(RuntimeError, match="scored 1 of 2 pairs"):
        PairScoreCache(tmp_path, "k").scores(_pairs([("q", "a"), ("q", "b")]), ["teacher_score"],
                                             lambda todo: Teacher()(todo.iloc[:1]))


def test_the_key_follows_teacher_precision_and_texts_not_the_student(tmp_path):
    def rd(*overrides, corpus_sha="c1"):
        cfg = build_config({"teacher": {"model": "/t", "finetune": False}, "student": {"model": "s"}},
                           [f"runs_dir={tmp_path}", *overrides])
        r = RunDir(cfg)
        r.manifest["inputs"] = {str(input_files(cfg)["corpus"][0]): corpus_sha}
        return pair_key(r)

    base = rd()
    assert rd("student.model=other", "training.epochs=3", "evaluation.rerank_depth=50") == base
    assert rd("teacher.max_length=128") != base
    assert rd("scoring.precision=fp32") != rd("scoring.precision=bf16")
    assert rd(corpus_sha="c2") != base
