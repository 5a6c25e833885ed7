"""The scoring actor's dual-encoder path embeds each distinct text once; outputs equal per-pair encoding."""

import numpy as np

from distill.stages.score import TeacherActor
from builders import make_bow_encoder


def test_dual_encoder_teacher_dedupes_texts_without_changing_outputs(tmp_path):
    teacher = make_bow_encoder(tmp_path / "t", ["cat", "dog", "car", "bark", "animal", "loud"], hidden=16)
    actor = TeacherActor(str(teacher), "dual-encoder", 32, 1, 2, store_embeddings=True)
    q = ["cat animal", "cat animal", "dog bark", "cat animal", "dog bark"]
    d = ["cat", "car", "cat", "dog loud", "bark"]
    out = actor({"qid": np.array(["1", "1", "2", "1", "2"]), "docid": np.array(["a", "b", "a", "c", "d"]),
                 "query": q, "doc": d})
    ref_q, ref_d = actor.model.encode(q), actor.model.encode(d)
    assert out["teacher_score"].shape == (5,) and list(out["qid"]) == ["1", "1", "2", "1", "2"]
    np.testing.assert_allclose(out["teacher_q_emb"], ref_q, atol=1e-6)
    np.testing.assert_allclose(out["teacher_d_emb"], ref_d, atol=1e-6)
    np.testing.assert_allclose(out["teacher_score"], (ref_q * ref_d).sum(-1), atol=1e-6)


def test_dual_head_cross_encoder_teacher_stores_vectors_and_layer_scores_from_one_pass(tmp_path):
    from builders import make_tiny_bert

    vocab = ["cat", "dog", "car", "bark", "animal", "loud"]
    make_tiny_bert(tmp_path / "ce", vocab, hidden=16, layers=2, cross_encoder=True)
    actor = TeacherActor(str(tmp_path / "ce"), "cross-encoder", 32, 2, 2, head="dual", store_embeddings=True,
                         store_layer_scores=True)
    q, d = ["cat animal", "dog bark", "cat"], ["cat", "dog loud", "car bark animal"]
    out = actor({"qid": np.array(["1", "2", "3"]), "docid": np.array(["a", "b", "c"]), "query": q, "doc": d})
    ref = actor.model.score(q, d)
    np.testing.assert_allclose(out["teacher_score"], ref, atol=1e-5)
    assert out["teacher_q_emb"].shape == (3, 16) and out["teacher_layer_scores"].shape == (3, 2)
    np.testing.assert_allclose((out["teacher_q_emb"] * out["teacher_d_emb"]).sum(-1), out["teacher_layer_scores"][:, -1],
                               atol=1e-5)
    plain = TeacherActor(str(tmp_path / "ce"), "cross-encoder", 32, 2, 2, head="dual")
    assert set(plain({"qid": np.array(["1"]), "docid": np.array(["a"]), "query": q[:1], "doc": d[:1]})) == {
        "qid", "docid", "teacher_score"}
