"""distill/models.py on tiny random BERTs (no download, no Ray): model resolution, pooling, the length
order batches follow, the optional projection, DualEncoder (shapes, normalisation, input order, layers,
projection, save/load) and CrossEncoder (linear and dual heads, scores in input order, save/load).
Truncated and CNN/BiLSTM students: test_small_encoders.py; export formats: test_export.py; CrossEncoder.score_all
against score and score_with_vectors: test_teacher_score_all.py."""

from __future__ import annotations

import json
import sys
import types

import numpy as np
import pytest
import torch

from builders import make_tiny_bert
from distill.models import (CROSS_META, DENSE_DIR, ENCODER_META, CrossEncoder, DualEncoder, _projection,
                            count_parameters, length_order, pool, resolve_model)

VOCAB = ["alpha", "beta", "gamma", "delta", "study", "report", "note", "river", "stone"]
TEXTS = ["alpha beta", "gamma", "delta study report note river stone alpha", "stone river"]


@pytest.fixture(scope="module")
def models(tmp_path_factory):
    root = tmp_path_factory.mktemp("models")
    return {"enc": make_tiny_bert(root / "enc", VOCAB, hidden=32, layers=2),
            "ce": make_tiny_bert(root / "ce", VOCAB, hidden=32, layers=2, cross_encoder=True,
                                 initializer_range=0.1)}


# ---- helpers ----------------------------------------------------------------------------------------------
def test_resolve_model_names_a_path_a_python_package_or_a_hub_id(monkeypatch, tmp_path):
    mod = types.ModuleType("fake_weights_pkg")
    mod.get_model_path = lambda: tmp_path / "weights"
    monkeypatch.setitem(sys.modules, "fake_weights_pkg", mod)
    assert resolve_model("python:fake_weights_pkg") == str(tmp_path / "weights")
    assert resolve_model("org/model") == "org/model" and resolve_model("/some/dir") == "/some/dir"
    with pytest.raises(ModuleNotFoundError):
        resolve_model("python:no_such_module_here")


def test_resolve_model_makes_an_existing_relative_directory_absolute(monkeypatch, tmp_path):
    (tmp_path / "runs" / "student").mkdir(parents=True)
    monkeypatch.chdir(tmp_path)
    assert resolve_model("runs/student") == str(tmp_path / "runs" / "student")
    assert resolve_model("org-model") == "org-model"  # not a directory here: a hub id, left alone
    # A path that is not there fails here, in the driver, naming it (not as a bad hub id inside a Ray actor).
    for missing in ("runs/scifact/teacher_model", "./model", "../model"):
        with pytest.raises(FileNotFoundError, match="no such directory"):
            resolve_model(missing)


def test_pool_mean_over_real_tokens_or_the_first():
    h = torch.tensor([[[1.0, 2.0], [3.0, 4.0], [100.0, 100.0]]])
    mask = torch.tensor([[1, 1, 0]])
    torch.testing.assert_close(pool(h, mask, "mean"), torch.tensor([[2.0, 3.0]]))
    torch.testing.assert_close(pool(h, mask, "cls"), torch.tensor([[1.0, 2.0]]))
    torch.testing.assert_close(pool(h, torch.zeros(1, 3), "mean"), torch.zeros(1, 2))  # no token: zeros, no NaN


def test_length_order_is_longest_first_and_stable():
    assert length_order(["a", "ccc", "bb", "ddd", ""]).tolist() == [1, 3, 2, 0, 4]
    assert length_order([]).tolist() == []


def test_count_parameters():
    assert count_parameters(torch.nn.Linear(3, 2)) == 8
    assert count_parameters(torch.nn.Sequential(torch.nn.Linear(3, 2, bias=False), torch.nn.Linear(2, 1))) == 9


def test_projection_identity_orthogonal_or_saved(tmp_path):
    from safetensors.torch import save_file

    assert _projection(str(tmp_path), 4, None) is None
    torch.testing.assert_close(_projection(str(tmp_path), 4, 4).weight, torch.eye(4))
    w = _projection(str(tmp_path), 6, 3).weight.detach()
    assert w.shape == (3, 6)
    torch.testing.assert_close(w @ w.T, torch.eye(3), atol=1e-5, rtol=0)  # orthonormal rows
    torch.testing.assert_close(_projection(str(tmp_path), 6, 3).weight, w)  # seeded: the same every time
    (tmp_path / DENSE_DIR).mkdir()
    saved = torch.arange(18.0).view(3, 6)
    save_file({"linear.weight": saved}, str(tmp_path / DENSE_DIR / "model.safetensors"))
    torch.testing.assert_close(_projection(str(tmp_path), 6, 3).weight.detach(), saved)
    with pytest.raises(ValueError, match=r"holds a \(3, 6\) projection, expected \(2, 6\)"):
        _projection(str(tmp_path), 6, 2)


# ---- DualEncoder ------------------------------------------------------------------------------------------
def test_dual_encoder_encodes_unit_vectors_in_input_order(models):
    enc = DualEncoder(str(models["enc"]), max_length=16)
    assert (enc.dim, enc.num_layers, enc.arch, enc.is_small) == (32, 2, "transformer", False)
    out = enc.encode(TEXTS, batch_size=2)
    assert out.shape == (4, 32) and out.dtype == np.float32
    np.testing.assert_allclose(np.linalg.norm(out, axis=1), 1.0, atol=1e-5)
    alone = np.stack([enc.encode([t])[0] for t in TEXTS])
    np.testing.assert_allclose(out, alone, atol=1e-5)  # batches are length-sorted, answers are not
    assert enc.training  # encode restores the training flag (and runs in eval mode: no dropout)
    enc.eval()
    batch = enc.tokenize(TEXTS[:2])
    emb, layers = enc(**batch, return_layers=True)
    torch.testing.assert_close(emb, torch.from_numpy(out[:2]), atol=1e-5, rtol=0)
    assert len(layers) == 2 and all(x.shape == (2, 32) for x in layers)


def test_dual_encoder_pooling_normalize_and_max_length(models):
    raw = DualEncoder(str(models["enc"]), pooling="cls", normalize=False, max_length=4).eval()
    batch = raw.tokenize(TEXTS)
    assert batch["input_ids"].shape[1] == 4  # truncated to max_length
    with torch.no_grad():
        hidden = raw.backbone(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"]).last_hidden_state
        torch.testing.assert_close(raw(**batch), hidden[:, 0])


def test_dual_encoder_layer_scores_are_per_layer_cosines(models):
    enc = DualEncoder(str(models["enc"])).eval()
    got = enc.layer_scores(TEXTS[:3], TEXTS[1:], batch_size=2)
    assert got.shape == (3, 2)
    with torch.no_grad():
        _, ql = enc(**enc.tokenize(TEXTS[:3]), return_layers=True)
        _, dl = enc(**enc.tokenize(TEXTS[1:]), return_layers=True)
    np.testing.assert_allclose(got, torch.stack([(a * b).sum(-1) for a, b in zip(ql, dl)], 1).numpy(), atol=1e-5)


def test_dual_encoder_refuses_bad_arguments(models):
    with pytest.raises(ValueError, match="arch must be transformer, cnn or lstm"):
        DualEncoder(str(models["enc"]), arch="gru")
    with pytest.raises(ValueError, match="only apply to arch cnn or lstm"):
        DualEncoder(str(models["enc"]), hidden_size=16)


def test_dual_encoder_with_a_projection_saves_and_loads(models, tmp_path):
    enc = DualEncoder(str(models["enc"]), output_dim=8, max_length=16)
    assert enc.dim == 8 and enc.encode(TEXTS).shape == (4, 8)
    with torch.no_grad():
        enc.projection.weight.mul_(3.0).add_(0.1)
    want = enc.encode(TEXTS)
    enc.save(tmp_path / "s")
    meta = json.loads((tmp_path / "s" / ENCODER_META).read_text())
    assert meta == {"pooling": "mean", "normalize": True, "max_length": 16, "output_dim": 8}
    assert (tmp_path / "s" / DENSE_DIR / "model.safetensors").is_file()
    again = DualEncoder.load(tmp_path / "s")
    assert again.dim == 8 and again.max_length == 16
    np.testing.assert_allclose(again.encode(TEXTS), want, atol=1e-6)


# ---- CrossEncoder -----------------------------------------------------------------------------------------
def test_cross_encoder_linear_head_scores_in_input_order(models):
    ce = CrossEncoder(str(models["ce"]), max_length=32)
    qs, ds = ["alpha", "gamma delta", "stone"], ["alpha beta", "river", "study report note"]
    s = ce.score(qs, ds, batch_size=2)
    assert s.shape == (3,) and s.dtype == np.float32
    assert ce.training  # score restores the training flag (and runs in eval mode: no dropout)
    with torch.no_grad():
        direct = ce.eval()(**ce.tokenize(qs, ds)).numpy()
    np.testing.assert_allclose(s, direct, atol=1e-5)
    np.testing.assert_array_equal(ce.score_all(qs, ds, batch_size=2)["score"], s)  # the same forward
    assert ce.head == "linear"
    assert {id(p) for p in ce.head_parameters()} == {id(p) for p in ce.model.classifier.parameters()}
    for call in (lambda: ce.layer_scores(qs, ds), lambda: ce.score_with_vectors(qs, ds),
                 lambda: ce.score_all(qs, ds, vectors=True)):
        with pytest.raises(ValueError, match="dual"):
            call()
    with pytest.raises(ValueError, match="head must be 'linear' or 'dual'"):
        CrossEncoder(str(models["ce"]), head="mlp")


def test_cross_encoder_dual_head_scores_are_scaled_cosines_and_save(models, tmp_path):
    ce = CrossEncoder(str(models["enc"]), max_length=32, head="dual")
    assert float(ce.scale.detach()) == 20.0 and ce.head_parameters() == [ce.scale]
    qs, ds = ["alpha", "gamma delta", "stone"], ["alpha beta", "river", "study report note"]
    enc = ce.tokenize(qs, ds)
    assert enc["query_mask"][0].tolist().count(1) == 1 and enc["doc_mask"][0].tolist().count(1) == 2
    qv, dv, logits = ce.score_with_vectors(qs, ds)
    np.testing.assert_allclose(logits, 20.0 * (qv * dv).sum(-1), atol=1e-5)
    np.testing.assert_allclose(ce.score(qs, ds), logits, atol=1e-4)
    every = ce.score_all(qs, ds, vectors=True, layers=True)
    np.testing.assert_allclose(every["q_emb"], qv, atol=1e-5)
    np.testing.assert_allclose(every["score"], logits, atol=1e-4)
    assert every["layer_scores"].shape == (3, 2)
    np.testing.assert_allclose(ce.layer_scores(qs, ds), every["layer_scores"], atol=1e-5)
    with torch.no_grad():
        ce.scale.fill_(7.5)
    ce.save(tmp_path / "ce")
    assert json.loads((tmp_path / "ce" / CROSS_META).read_text()) == {"head": "dual", "scale": 7.5}
    again = CrossEncoder(str(tmp_path / "ce"), max_length=32)
    assert again.head == "dual" and float(again.scale.detach()) == 7.5
    np.testing.assert_allclose(again.score(qs, ds), logits * 7.5 / 20.0, atol=1e-4)


def test_loading_a_checkpoint_with_a_pooler_reports_nothing_but_a_missing_weight_still_reports(tmp_path, monkeypatch):
    """The student leaves BERT's pooler out on purpose: transformers' load report of its weights as
    UNEXPECTED is dropped; a report with anything else in it (here a missing weight) is kept."""
    import logging

    from safetensors.torch import load_file, save_file
    from transformers import BertConfig, BertModel

    from distill.models import _load_backbone

    cfg = BertConfig(vocab_size=30, hidden_size=16, num_hidden_layers=1, num_attention_heads=2, intermediate_size=32)
    BertModel(cfg).save_pretrained(tmp_path / "with_pooler")  # as hub checkpoints are saved

    class Catch(logging.Handler):
        def __init__(self):
            super().__init__()
            self.messages = []

        def emit(self, record):
            self.messages.append(record.getMessage())

    from transformers import modeling_utils

    log, catch = logging.Logger("load-report-under-test", logging.WARNING), Catch()  # free of global logging state
    log.addHandler(catch)
    monkeypatch.setattr(modeling_utils, "logger", log)
    _load_backbone(str(tmp_path / "with_pooler"), False)
    assert not [m for m in catch.messages if "LOAD REPORT" in m]
    weights = load_file(tmp_path / "with_pooler" / "model.safetensors")
    del weights[next(k for k in weights if "encoder.layer.0.output.dense.weight" in k)]
    save_file(weights, tmp_path / "with_pooler" / "model.safetensors", metadata={"format": "pt"})
    _load_backbone(str(tmp_path / "with_pooler"), False)
    assert [m for m in catch.messages if "LOAD REPORT" in m and "output.dense.weight" in m]
    assert not log.filters  # the filter is gone once the model is loaded
