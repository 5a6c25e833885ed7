"""ONNX export of a transformer student (distill.onnx_export): onnxruntime on the exported graph gives the
vectors DualEncoder.encode gives (padding, projection, truncated layers, dynamic batch and length); a CNN
student is refused."""

import json

import numpy as np
import pytest

from distill.models import DualEncoder
from distill.onnx_export import META, export_onnx, main
from builders import make_tiny_bert

ort = pytest.importorskip("onnxruntime")
pytest.importorskip("onnx")

VOCAB = ["alpha", "beta", "gamma", "delta", "the"]
# different lengths (so a batch pads), one longer than the export's trace sample, batch sizes unlike it
TEXTS = ["alpha", "beta gamma alpha delta the the gamma beta alpha delta the alpha gamma beta", "gamma delta",
         "the", "alpha beta gamma delta"]


@pytest.fixture(scope="module")
def base(tmp_path_factory):
    return make_tiny_bert(tmp_path_factory.mktemp("onnx") / "base", VOCAB, layers=3)


def _run(model_path, texts):
    from transformers import AutoTokenizer

    meta = json.loads((model_path.parent / META).read_text())
    tok = AutoTokenizer.from_pretrained(model_path.parent)  # the tokenizer files written beside the model
    enc = tok(texts, padding=True, truncation=True, max_length=meta["max_length"], return_tensors="np")
    sess = ort.InferenceSession(str(model_path), providers=["CPUExecutionProvider"])
    feed = {i["name"]: enc[i["name"]].astype(np.int64) for i in meta["inputs"]}
    return sess.run([meta["outputs"][0]["name"]], feed)[0], meta


@pytest.mark.parametrize("kw", [{}, {"output_dim": 24}, {"num_layers": 1},
                                {"pooling": "cls", "normalize": False}],
                         ids=["mean-normalized", "projection", "truncated", "cls-unnormalized"])
def test_onnx_embeddings_equal_encode(base, tmp_path, kw):
    DualEncoder(str(base), max_length=32, **kw).save(tmp_path / "s")
    student = DualEncoder.load(tmp_path / "s")
    path = export_onnx(tmp_path / "s")
    assert path == tmp_path / "s" / "onnx" / "model.onnx"
    for texts in (TEXTS, TEXTS[:2], TEXTS[3:4]):
        got, meta = _run(path, texts)
        want = student.encode(texts)
        assert got.shape == want.shape == (len(texts), student.dim)
        np.testing.assert_allclose(got, want, atol=1e-4)
    assert [i["name"] for i in meta["inputs"]] == ["input_ids", "attention_mask"]
    assert meta["outputs"][0]["shape"] == ["batch", student.dim]
    assert (meta["normalize"], meta["projection"]) == (student.normalize, "output_dim" in kw)


def test_cli_writes_to_out(base, tmp_path, capsys):
    DualEncoder(str(base), max_length=32).save(tmp_path / "s")
    assert main([str(tmp_path / "s"), str(tmp_path / "exported" / "student.onnx")]) == 0
    assert (tmp_path / "exported" / "student.onnx").is_file()
    assert (tmp_path / "exported" / META).is_file() and (tmp_path / "exported" / "tokenizer.json").is_file()
    assert "wrote" in capsys.readouterr().out


def test_ray_distill_export_onnx_entry(base, tmp_path):
    from distill.cli import main as cli_main

    DualEncoder(str(base), max_length=32).save(tmp_path / "s")
    assert cli_main(["export-onnx", str(tmp_path / "s")]) == 0
    assert (tmp_path / "s" / "onnx" / "model.onnx").is_file()


def test_cnn_student_is_refused(base, tmp_path, capsys):
    DualEncoder(str(base), arch="cnn", hidden_size=16, embed_dim=8, output_dim=16).save(tmp_path / "cnn")
    with pytest.raises(ValueError, match="cnn student: ONNX export supports transformer students only"):
        export_onnx(tmp_path / "cnn")
    assert main([str(tmp_path / "cnn")]) == 2
    assert "transformer students only" in capsys.readouterr().err
    assert not (tmp_path / "cnn" / "onnx").exists()


def test_missing_onnx_names_the_package(base, tmp_path, monkeypatch):
    monkeypatch.setitem(__import__("sys").modules, "onnx", None)  # as if not installed
    with pytest.raises(ImportError, match=r"'onnx' package: pip install 'ray-distill\[onnx\]'"):
        export_onnx(tmp_path / "missing")
