"""EmbedDistill's asymmetric student, the parts that need no Ray: the query encoder's projection into the
teacher's width (saved as a sentence-transformers Dense module) and the config rules."""

import numpy as np
import pytest
import torch

from distill.config import ConfigError, build_config
from distill.models import DENSE_DIR, DualEncoder
from builders import make_tiny_bert

VOCAB = ["alpha", "beta", "gamma", "delta", "query", "passage", "about"]
TEXTS = ["alpha beta query", "gamma delta passage about alpha", "beta"]


@pytest.fixture(scope="module")
def tiny(tmp_path_factory):
    return make_tiny_bert(tmp_path_factory.mktemp("asym") / "student", VOCAB, hidden=32, layers=2)


def test_projection_maps_into_the_teacher_width_and_round_trips(tiny, tmp_path):
    enc = DualEncoder(str(tiny), output_dim=48)
    assert enc.dim == 48 and enc.projection.weight.shape == (48, 32)
    with torch.no_grad():
        enc.projection.weight.add_(0.1 * torch.randn(48, 32, generator=torch.Generator().manual_seed(1)))
    emb = enc.encode(TEXTS)
    assert emb.shape == (3, 48)
    np.testing.assert_allclose(np.linalg.norm(emb, axis=1), 1.0, atol=1e-5)
    enc.save(tmp_path / "s")
    assert (tmp_path / "s" / DENSE_DIR / "model.safetensors").is_file()
    assert not list((tmp_path / "s").rglob("*.bin")) and not list((tmp_path / "s").rglob("*.pt"))
    again = DualEncoder.load(tmp_path / "s")
    assert again.dim == 48
    np.testing.assert_allclose(again.encode(TEXTS), emb, atol=1e-6)


def test_projection_export_loads_in_sentence_transformers(tiny, tmp_path):
    st_mod = pytest.importorskip("sentence_transformers")
    enc = DualEncoder(str(tiny), output_dim=24)
    enc.save(tmp_path / "s")
    st = st_mod.SentenceTransformer(str(tmp_path / "s"), device="cpu")
    np.testing.assert_allclose(st.encode(TEXTS), enc.encode(TEXTS), atol=1e-5)


def test_equal_width_projection_starts_as_identity(tiny):
    plain, projected = DualEncoder(str(tiny)), DualEncoder(str(tiny), output_dim=32)
    np.testing.assert_allclose(projected.encode(TEXTS), plain.encode(TEXTS), atol=1e-6)


def test_saved_projection_of_the_wrong_shape_is_refused(tiny, tmp_path):
    DualEncoder(str(tiny), output_dim=16).save(tmp_path / "s")
    with pytest.raises(ValueError, match="projection"):
        DualEncoder(str(tmp_path / "s"), output_dim=20)


def _tree(**training):
    return {"teacher": {"kind": "dual-encoder", "model": "t"}, "student": {"model": "s"},
            "scoring": {"store_embeddings": True}, "training": {"asymmetric": True, **training}}


def test_asymmetric_config_rules():
    assert build_config(_tree()).training.asymmetric
    bad_teacher = _tree()
    bad_teacher["teacher"] = {"kind": "cross-encoder", "head": "dual", "model": "t"}
    with pytest.raises(ConfigError, match="dual-encoder"):
        build_config(bad_teacher)
    no_emb = _tree()
    no_emb["scoring"] = {}
    with pytest.raises(ConfigError, match="store_embeddings"):
        build_config(no_emb)
    with pytest.raises(ConfigError, match="LEAD"):
        build_config(_tree(losses={"kl": 1.0, "lead": 0.5}), ["scoring.store_layer_scores=true"])
    # a transformer student may now carry output_dim (its projection); cnn-only fields still may not
    assert build_config(_tree(), ["student.output_dim=64"]).student.output_dim == 64
    with pytest.raises(ConfigError, match="kernel_size"):
        build_config(_tree(), ["student.kernel_size=3"])
