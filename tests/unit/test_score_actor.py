"""The scoring actor's dual-encoder path embeds each distinct text once; outputs equal per-pair encoding."""

import numpy as np

from distill.stages.score import TeacherActor
from distill.testing import make_bow_encoder


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
