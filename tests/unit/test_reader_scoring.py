"""The score stage's reader path (distill.reader_scoring): the ReaderActor called directly, and
score_pairs_reader with the actor pool replaced by an in-process loop (no Ray): candidates grouped per
question, read together, rows in = rows out."""

import numpy as np
import pandas as pd
import pytest

from distill import raydata
from distill.reader import FiDReader
from distill.reader_scoring import ReaderActor, score_pairs_reader
from builders import make_tiny_t5

VOCAB = ["alpha", "beta", "gamma", "delta", "river", "stone", "paris", "london", "capital", "city", "of",
         "the", "what", "is", "france", "england"]
DOCS = {"d1": "paris is the capital of france", "d2": "london is the capital of england", "d3": "river stone",
        "d4": "the city of alpha beta gamma delta river"}
QUERIES = {"q1": "what is the capital of france", "q2": "river stone city"}


@pytest.fixture(scope="module")
def t5_dir(tmp_path_factory):
    return make_tiny_t5(tmp_path_factory.mktemp("t5") / "reader", VOCAB, d_model=32, layers=2, heads=4)


def test_reader_actor_scores_each_question_s_candidates_together(t5_dir):
    actor = ReaderActor(str(t5_dir), 24, 3, {}, threads=1, batch_size=8)
    out = actor({"qid": np.array(["q1", "q2"], dtype=object),
                 "query": np.array([QUERIES["q1"], QUERIES["q2"]], dtype=object),
                 "docids": [["d1", "d2", "d3"], ["d4"]],
                 "docs": [[DOCS["d1"], DOCS["d2"], DOCS["d3"]], [DOCS["d4"]]]})
    assert list(out["qid"]) == ["q1", "q1", "q1", "q2"] and list(out["docid"]) == ["d1", "d2", "d3", "d4"]
    reader = FiDReader(str(t5_dir), 24, 3)
    np.testing.assert_allclose(out["teacher_score"][:3],
                               reader.passage_scores(QUERIES["q1"], [DOCS["d1"], DOCS["d2"], DOCS["d3"]]), atol=1e-5)
    assert out["teacher_score"][3] == pytest.approx(1.0, abs=1e-5)  # a lone candidate gets all the attention
    empty = actor({"qid": [], "query": [], "docids": [], "docs": []})
    assert len(empty["qid"]) == 0 and empty["teacher_score"].dtype == np.float32


def _in_process_pool(blocks, actor, kwargs, batch_size, actors, ray_cfg, stats=None, started=None, keys=None):
    """map_model_pool without Ray: one actor, the blocks' rows in batches of ``batch_size``."""
    a = actor(**kwargs)
    for block in blocks:
        for i in range(0, block.num_rows, batch_size):
            yield a(block.slice(i, batch_size).to_pydict())


def test_score_pairs_reader_groups_pairs_per_question_rows_in_equal_rows_out(t5_dir, monkeypatch):
    from distill.config import build_config

    monkeypatch.setattr(raydata, "map_model_pool", _in_process_pool)
    cfg = build_config({"teacher": {"model": str(t5_dir), "kind": "reader", "finetune": False, "max_length": 24,
                                    "answer_max_length": 3},
                        "student": {"model": "s"}, "scoring": {"batch_size": 4, "actors": 1}})
    pairs = pd.DataFrame({"qid": ["q1", "q2", "q1", "q2", "q1"], "docid": ["d1", "d3", "d2", "d4", "d3"]})
    out = score_pairs_reader(pairs, QUERIES, DOCS.__getitem__, str(t5_dir), cfg.teacher, cfg.scoring, cfg.ray)
    assert list(zip(out["qid"], out["docid"])) == list(zip(pairs["qid"], pairs["docid"]))  # the input's order
    assert out["teacher_score"].dtype == np.float32 and np.isfinite(out["teacher_score"]).all()
    reader = FiDReader(str(t5_dir), 24, 3)
    for qid, group in out.groupby("qid"):  # each question's candidates were read together
        expected = reader.passage_scores(QUERIES[qid], [DOCS[d] for d in group["docid"]], cfg.teacher.attention)
        np.testing.assert_allclose(group["teacher_score"].to_numpy(), expected, atol=1e-5)
        assert group["teacher_score"].sum() == pytest.approx(1.0, abs=1e-5)
