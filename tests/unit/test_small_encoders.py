"""distill/small_encoders.py, small students without Ray: a truncated transformer (first n / evenly spaced
layers) and CNN/BiLSTM encoders over token embeddings, on their own (SmallEncoder, its config and files) and
behind distill.models.DualEncoder; their export, reload, SentenceTransformer compatibility (truncated only),
serving through serve.core, the config fields that reach them, and the size/speed report's ratios."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch

from distill.config import ConfigError, build_config, load_config
from distill.models import ENCODER_META, CrossEncoder, DualEncoder, count_parameters
from distill.small_encoders import (SMALL_CONFIG, SMALL_WEIGHTS, SmallEncoder, SmallEncoderConfig,
                                    is_small_encoder_dir, kept_layers, project_embeddings, truncate_layers)
from builders import make_beir, make_tiny_bert

ROOT = Path(__file__).resolve().parents[2]
TEXTS = ["the study of things", "a report", "note on the study and a report about it with more words"]
SMALL = {"hidden_size": 16, "embed_dim": 8, "output_dim": 12, "num_layers": 2}


@pytest.fixture(scope="module")
def assets(tmp_path_factory):
    root = tmp_path_factory.mktemp("small")
    info = make_beir(root / "beir", topics=4, docs_per_topic=5, train_queries=10, test_queries=5)
    make_tiny_bert(root / "base", info["vocab"], hidden=64, layers=4, heads=2)
    make_tiny_bert(root / "ce", info["vocab"], hidden=32, layers=1, cross_encoder=True)
    return root


# ---- truncated transformer ------------------------------------------------------------------------------
def test_kept_layers():
    assert kept_layers(6, 2) == [0, 1]
    assert kept_layers(6, 3, "every_other") == [1, 3, 5]
    assert kept_layers(6, 2, "every_other") == [2, 5]
    assert kept_layers(4, 4, "every_other") == [0, 1, 2, 3]
    assert kept_layers(6, 1, "every_other") == [5]
    with pytest.raises(ValueError, match="cannot keep 7 layers"):
        kept_layers(6, 7)
    with pytest.raises(ValueError, match="first' or 'every_other"):
        kept_layers(6, 2, "middle")


def test_truncation_keeps_first_layers_with_same_hidden_states(assets):
    base = DualEncoder(str(assets / "base"))
    cut = DualEncoder(str(assets / "base"), num_layers=2)
    assert (base.num_layers, cut.num_layers, cut.backbone.config.num_hidden_layers) == (4, 2, 2)
    assert count_parameters(cut.backbone) < count_parameters(base.backbone)
    batch = base.tokenize(TEXTS)
    with torch.no_grad():
        full = base.backbone(**batch, output_hidden_states=True).hidden_states
        short = cut.backbone(**batch, output_hidden_states=True).hidden_states
    assert len(full) == 5 and len(short) == 3  # embeddings + one per layer
    for a, b in zip(full[:3], short):
        torch.testing.assert_close(a, b)
    _, layers = cut(**batch, return_layers=True)
    assert len(layers) == 2


def test_every_other_init_copies_spaced_layers(assets):
    base = DualEncoder(str(assets / "base"))
    cut = DualEncoder(str(assets / "base"), num_layers=2, init="every_other")
    for j, i in enumerate([1, 3]):
        got, want = cut.backbone.encoder.layer[j].state_dict(), base.backbone.encoder.layer[i].state_dict()
        assert got.keys() == want.keys()
        assert all(torch.equal(got[k], want[k]) for k in want)
    with pytest.raises(ValueError, match="cannot keep 5 layers"):
        DualEncoder(str(assets / "base"), num_layers=5)
    with pytest.raises(ValueError, match="applies to a truncated transformer"):
        DualEncoder(str(assets / "base"), init="every_other")  # no num_layers: nothing to space


def test_truncated_export_loads_in_transformers_and_sentence_transformers(assets, tmp_path):
    from sentence_transformers import SentenceTransformer
    from transformers import AutoModel

    cut = DualEncoder(str(assets / "base"), num_layers=2, init="every_other", max_length=32)
    ours = cut.encode(TEXTS)
    cut.save(tmp_path / "student")
    assert AutoModel.from_pretrained(tmp_path / "student").config.num_hidden_layers == 2
    reloaded = DualEncoder.load(tmp_path / "student")
    assert reloaded.num_layers == 2 and not reloaded.is_small
    np.testing.assert_allclose(reloaded.encode(TEXTS), ours, atol=1e-6)
    st = SentenceTransformer(str(tmp_path / "student"), device="cpu").encode(TEXTS, normalize_embeddings=False)
    np.testing.assert_allclose(st, ours, atol=1e-5)


# ---- CNN / BiLSTM ---------------------------------------------------------------------------------------
@pytest.mark.parametrize("arch", ["cnn", "lstm"])
def test_small_encoder_shapes_layers_and_gradients(assets, arch):
    enc = DualEncoder(str(assets / "base"), arch=arch, **SMALL)
    assert (enc.is_small, enc.arch, enc.dim, enc.num_layers) == (True, arch, 12, 2)
    batch = enc.tokenize(TEXTS)
    out = enc.backbone(**batch, output_hidden_states=True)
    B, T = batch["input_ids"].shape
    assert out.last_hidden_state.shape == (B, T, 12)
    assert [tuple(h.shape) for h in out.hidden_states] == [(B, T, 8), (B, T, 16), (B, T, 16)]
    emb, layers = enc(**batch, return_layers=True)
    assert emb.shape == (B, 12) and len(layers) == 2 and layers[0].shape == (B, 16)
    torch.testing.assert_close(emb.norm(dim=-1), torch.ones(B))
    (emb.sum() + sum(x.sum() for x in layers)).backward()  # ZeRO/DDP need a gradient for every parameter
    assert all(p.grad is not None for p in enc.parameters())


@pytest.mark.parametrize("arch", ["cnn", "lstm"])
def test_small_encoder_padding_does_not_change_embeddings(assets, arch):
    enc = DualEncoder(str(assets / "base"), arch=arch, **SMALL).eval()
    alone = np.stack([enc.encode([t])[0] for t in TEXTS])
    np.testing.assert_allclose(enc.encode(TEXTS), alone, atol=1e-5)  # batched: padded to the longest
    batch = enc.tokenize(TEXTS)
    extra = 7  # and padded further by hand, with junk ids under a zero mask
    ids = torch.cat([batch["input_ids"], torch.full((len(TEXTS), extra), 9)], 1)
    mask = torch.cat([batch["attention_mask"], torch.zeros(len(TEXTS), extra, dtype=torch.long)], 1)
    with torch.no_grad():
        np.testing.assert_allclose(enc(ids, mask).numpy(), alone, atol=1e-5)
    if arch == "lstm":
        with pytest.raises(ValueError, match="right-padded"):
            enc(ids.flip(1), mask.flip(1))


@pytest.mark.parametrize("arch", ["cnn", "lstm"])
def test_small_encoder_save_load_roundtrip(assets, tmp_path, arch):
    enc = DualEncoder(str(assets / "base"), arch=arch, max_length=24, pooling="mean", **SMALL)
    again = DualEncoder(str(assets / "base"), arch=arch, max_length=24, **SMALL)
    np.testing.assert_array_equal(again.encode(TEXTS), enc.encode(TEXTS))  # seeded init: every worker agrees
    with torch.no_grad():  # move away from the init so the roundtrip proves the weights travel
        for p in enc.parameters():
            p.add_(0.01 * torch.randn_like(p))
    want = enc.encode(TEXTS)
    enc.save(tmp_path / arch)
    files = {p.name for p in (tmp_path / arch).iterdir()}
    assert {ENCODER_META, SMALL_CONFIG, "model.safetensors", "tokenizer.json"} <= files
    assert not files & {"config.json", "modules.json", "pytorch_model.bin"}  # not an HF / ST model, no pickle
    meta = json.loads((tmp_path / arch / ENCODER_META).read_text())
    assert meta == {"pooling": "mean", "normalize": True, "max_length": 24, "arch": arch}
    loaded = DualEncoder.load(tmp_path / arch)
    assert loaded.arch == arch and loaded.max_length == 24
    np.testing.assert_array_equal(loaded.encode(TEXTS), want)
    np.testing.assert_array_equal(DualEncoder(str(tmp_path / arch)).encode(TEXTS), want)  # detected as saved
    with pytest.raises(ValueError, match="differs from the asked"):
        DualEncoder(str(tmp_path / arch), arch=arch, hidden_size=32)


def test_small_encoder_is_much_smaller_and_embeddings_come_from_the_base(assets):
    base = DualEncoder(str(assets / "base"))
    cnn = DualEncoder(str(assets / "base"), arch="cnn", hidden_size=16, embed_dim=8, output_dim=16)
    assert count_parameters(base.backbone) > 10 * count_parameters(cnn.backbone)
    E = base.backbone.get_input_embeddings().weight.detach()
    same = DualEncoder(str(assets / "base"), arch="lstm", hidden_size=16)  # embed_dim defaults to the base's
    assert torch.equal(same.backbone.embeddings.weight, E)
    P = project_embeddings(E, 8)
    torch.testing.assert_close(cnn.backbone.embeddings.weight, P)
    sv = torch.linalg.svdvals(E)[:8]
    torch.testing.assert_close(torch.linalg.svdvals(P), sv, rtol=1e-4, atol=1e-4)  # the top-8 spectrum
    with pytest.raises(ValueError, match="exceeds"):
        project_embeddings(E, 65)


# ---- SmallEncoder on its own ------------------------------------------------------------------------------
@pytest.mark.parametrize("bad,msg", [({"arch": "gru"}, "arch must be one of"),
                                     ({"num_layers": 0}, "num_layers must be >= 1"),
                                     ({"kernel_size": 4}, "kernel_size must be odd"),
                                     ({"arch": "lstm", "hidden_size": 7}, "hidden_size must be even")])
def test_small_encoder_config_refuses_bad_sizes(bad, msg):
    fields = {"arch": "cnn", "vocab_size": 10, "embed_dim": 4, "hidden_size": 6, "num_layers": 2, "output_dim": 3}
    assert SmallEncoderConfig(**fields).num_hidden_layers == 2
    with pytest.raises(ValueError, match=msg):
        SmallEncoderConfig(**{**fields, **bad})


@pytest.mark.parametrize("arch", ["cnn", "lstm"])
def test_small_encoder_from_base_shapes_defaults_and_files(tmp_path, arch):
    base = torch.randn(30, 6, generator=torch.Generator().manual_seed(0))
    enc = SmallEncoder.from_base(base, arch, hidden_size=8, embed_dim=4)
    c = enc.config
    assert (c.vocab_size, c.embed_dim, c.hidden_size, c.num_layers, c.output_dim, c.kernel_size) == (30, 4, 8, 2, 6, 3)
    torch.testing.assert_close(enc.embeddings.weight, project_embeddings(base, 4))
    ids = torch.tensor([[5, 6, 7, 0], [8, 9, 0, 0]])
    mask = torch.tensor([[1, 1, 1, 0], [1, 1, 0, 0]])
    out = enc(ids, mask, output_hidden_states=True)
    assert out.last_hidden_state.shape == (2, 4, 6)
    assert [tuple(h.shape) for h in out.hidden_states] == [(2, 4, 4), (2, 4, 8), (2, 4, 8)]
    assert enc(ids).hidden_states is None and enc(ids).last_hidden_state.shape == (2, 4, 6)  # no mask: all real
    assert torch.equal(out.hidden_states[0][0, 3], torch.zeros(4))  # padding is zeroed from the start
    with pytest.raises(ValueError, match="expected"):
        SmallEncoder(SmallEncoderConfig(arch, 30, 4, 8, 2, 6), torch.zeros(30, 5))
    assert not is_small_encoder_dir(tmp_path)
    enc.save(tmp_path)
    assert is_small_encoder_dir(tmp_path) and {p.name for p in tmp_path.iterdir()} == {SMALL_CONFIG, SMALL_WEIGHTS}
    again = SmallEncoder.load(tmp_path)
    assert again.config == c
    torch.testing.assert_close(again(ids, mask).last_hidden_state, out.last_hidden_state)
    (tmp_path / SMALL_CONFIG).write_text('{"arch": "cnn"}')
    with pytest.raises(ValueError, match="not a usable small-encoder config"):
        SmallEncoder.load(tmp_path)


def test_truncate_layers_in_place(assets):
    from transformers import AutoModel

    model = AutoModel.from_pretrained(assets / "base")  # 4 layers
    same = model.encoder.layer
    assert truncate_layers(model, 4) == [0, 1, 2, 3] and model.encoder.layer is same  # nothing to cut
    kept = [model.encoder.layer[i] for i in (1, 3)]
    assert truncate_layers(model, 2, "every_other") == [1, 3]
    assert model.config.num_hidden_layers == 2 and list(model.encoder.layer) == kept


# ---- config and wiring ----------------------------------------------------------------------------------
def _tree(**student):
    return {"teacher": {"model": "t"}, "student": {"model": "s", **student}}


def test_config_fields_validate_and_reach_the_encoder(assets):
    cfg = build_config(_tree(arch="cnn", num_layers=3, hidden_size=16, kernel_size=5))
    assert cfg.student.arch == "cnn" and cfg.student.kernel_size == 5
    for bad, msg in [({"hidden_size": 16}, "only apply to arch cnn or lstm"),
                     ({"arch": "lstm", "hidden_size": 15}, "must be even"),
                     ({"arch": "cnn", "kernel_size": 4}, "must be odd"),
                     ({"arch": "lstm", "kernel_size": 3}, "cnn only"),
                     ({"init": "every_other"}, "needs num_layers"),
                     ({"arch": "cnn", "init": "every_other", "num_layers": 2}, "truncated transformer"),
                     ({"arch": "gru"}, "student.arch")]:
        with pytest.raises(ConfigError, match=msg):
            build_config(_tree(**bad))
    from distill.stages.mine import zero_shot_kwargs
    from distill.stages.train import loop_config

    cfg = build_config(_tree(arch="lstm", model=str(assets / "base"), **SMALL))
    kw = loop_config(cfg, Path("groups.parquet"), cfg.student.model, None)["student"]
    assert kw == {**cfg.student.model_dump(), "model": str(assets / "base")}
    enc = DualEncoder(**kw)  # what train_loop builds
    assert enc.arch == "lstm" and enc.dim == 12
    zs = DualEncoder(str(assets / "base"), **zero_shot_kwargs(cfg.student))  # the mine/evaluate baseline
    np.testing.assert_array_equal(zs.encode(TEXTS), enc.encode(TEXTS))
    assert DualEncoder.from_config(cfg.student).arch == "lstm"


def test_demo_small_configs():
    cut = load_config(ROOT / "configs" / "demo_small_truncated.yaml")
    assert cut.student.arch == "transformer" and cut.student.num_layers == 2
    cnn = load_config(ROOT / "configs" / "demo_small_cnn.yaml")
    assert cnn.student.arch == "cnn"
    for cfg in (cut, cnn):
        assert cfg.teacher.model == "runs/demo-ce/teacher_model" and cfg.teacher.finetune is False


# ---- serving and the report -----------------------------------------------------------------------------
def test_serve_retrieval_on_a_cnn_student(assets, tmp_path):
    from serve.core import RunArtifacts, Retrieval
    from serve.testing import _write_run, read_corpus, read_queries

    enc = DualEncoder(str(assets / "base"), arch="cnn", max_length=16, **SMALL)
    corpus = read_corpus(assets / "beir" / "corpus.jsonl")
    teacher_cfg = {"kind": "cross-encoder", "model": str(assets / "ce"), "max_length": 64, "finetune": False}
    _write_run(tmp_path / "run", enc, corpus, "cnn-v1", teacher_cfg)
    assert not (tmp_path / "run" / "student" / "config.json").exists()
    assert RunArtifacts.load(tmp_path / "run").student == tmp_path / "run" / "student"
    r = Retrieval(tmp_path / "run", precision="fp32")  # scores checked against fp32 encodings
    assert r.encoder.arch == "cnn" and r.version == "cnn-v1" and r.max_length == 16
    queries = read_queries(assets / "beir" / "queries.jsonl")[:2] + [" ".join(["study"] * 40)]
    ids, scores, truncated = r.search(queries, 5)
    docids = {d["_id"] for d in corpus}
    assert [len(x) for x in ids] == [5, 5, 5] and all(set(x) <= docids for x in ids)
    assert all(s == sorted(s, reverse=True) for s in scores) and truncated == [False, False, True]
    q = enc.encode(queries[:1])[0]  # the served scores are the student's inner products
    doc_vec = enc.encode([next(f"{d['title']}. {d['text']}" for d in corpus if d["_id"] == ids[0][0])])[0]
    assert scores[0][0] == pytest.approx(float(q @ doc_vec), abs=1e-5)
    hits = r.hits(ids[0], scores[0])
    assert hits[0]["title"] and hits[0]["snippet"]


def test_speed_report_gives_ratios_for_both_teacher_kinds(assets):
    from distill.stages.evaluate import render_markdown, speed

    student = DualEncoder(str(assets / "base"), arch="cnn", **SMALL)
    ce = CrossEncoder(str(assets / "ce"), 64)
    de = DualEncoder(str(assets / "base"))
    q, d = TEXTS[:2], TEXTS
    by_ce = speed(student, ce, q, d)
    assert by_ce["student_query_speedup_vs_teacher_pairs"] == pytest.approx(
        by_ce["student_queries_per_s"] / by_ce["teacher_pairs_per_s"])
    assert by_ce["student_passage_speedup_vs_teacher_pairs"] == pytest.approx(
        by_ce["student_passages_per_s"] / by_ce["teacher_pairs_per_s"])
    by_de = speed(student, None, q, d, de)
    assert "teacher_pairs_per_s" not in by_de
    assert by_de["student_query_speedup_vs_teacher_encoder"] == pytest.approx(
        by_de["student_queries_per_s"] / by_de["teacher_queries_per_s"])
    assert by_de["student_passage_speedup_vs_teacher_encoder"] == pytest.approx(
        by_de["student_passages_per_s"] / by_de["teacher_passages_per_s"])
    metrics = {"bm25": {"ndcg@10": 0.1, "mrr@10": 0.1, "recall@100": 0.1}}
    sizes = {"student_parameters": 10, "teacher_parameters": 200, "teacher_to_student_size": 20.0}
    for spd, rows in ((by_ce, ["passages/s (student encode vs teacher pair scoring)",
                               "queries/s (student encode vs teacher pair scoring)"]),
                      (by_de, ["queries/s (student vs teacher dual encoder)",
                               "passages/s (student vs teacher dual encoder)"])):
        md = render_markdown({"run": "r", "split": "test", "queries": 2, "metrics": metrics, "sizes": sizes,
                              "speed": spd, "rerank_depth": 5, "index": {}})
        assert "20.0x smaller" in md and all(f"| {row} |" in md for row in rows)
