"""Precision as a setting (distill.precision): ``auto`` resolution from injected CPU flags and a stored speed
probe, fp32/bf16 taken
as given, and bf16 (autocast) outputs close to fp32 for the dual encoder, the cross-encoder and the
TeacherActor, always returned as float32."""

from __future__ import annotations

import warnings

import numpy as np
import pytest
import torch

from distill import precision as P

AVX2_ONLY = {"fpu", "sse4_2", "avx", "avx2", "fma", "avx512f", "avx512bw"}  # AVX-512 without bf16 units
WITH_AVX512_BF16 = AVX2_ONLY | {"avx512_bf16"}
WITH_AMX = AVX2_ONLY | {"amx_bf16", "amx_tile"}


def test_auto_picks_fp32_without_native_bf16():
    assert P.resolve("auto", "cpu", flags=AVX2_ONLY) == "fp32"
    assert P.resolve("auto", "cpu", flags=set()) == "fp32"


@pytest.mark.parametrize("flags", [WITH_AVX512_BF16, WITH_AMX, {"fp", "asimd", "bf16"}])
def test_auto_picks_bf16_with_native_bf16(flags):
    assert P.resolve("auto", "cpu", flags=flags) == "bf16"


@pytest.fixture
def this_machine_with_bf16_flag(monkeypatch, tmp_path):
    """This machine seen as one with the avx512_bf16 flag, its probe answers stored under ``tmp_path``."""
    monkeypatch.setattr(P, "cpu_flags", lambda path=P.CPUINFO: frozenset(WITH_AVX512_BF16))
    monkeypatch.setenv("DISTILL_CACHE", str(tmp_path))
    P.cpu_bf16_speedup.cache_clear()
    yield tmp_path
    P.cpu_bf16_speedup.cache_clear()


def test_auto_on_this_machine_takes_bf16_only_where_it_measured_faster(this_machine_with_bf16_flag, monkeypatch):
    """A flag is not enough: a CPU whose bf16 matmul is slower than fp32 (a 2-core Xeon VM: 0.6x) gets fp32."""
    times = {torch.float32: 1.0, torch.bfloat16: 1 / 0.6}  # no timing in a test: the probe's clock is stubbed
    monkeypatch.setattr(P, "_time_matmul", lambda dtype, **k: times[dtype])
    assert P.cpu_bf16_speedup() == pytest.approx(0.6) and P.resolve("auto") == "fp32"
    stored = list(this_machine_with_bf16_flag.glob("bf16-speedup-*.json"))
    assert len(stored) == 1
    times[torch.bfloat16] = 0.5  # a later process reads the stored answer, it does not measure again
    P.cpu_bf16_speedup.cache_clear()
    assert P.cpu_bf16_speedup() == pytest.approx(0.6) and P.resolve("auto") == "fp32"
    stored[0].unlink()
    P.cpu_bf16_speedup.cache_clear()
    assert P.cpu_bf16_speedup() == pytest.approx(2.0) and P.resolve("auto") == "bf16"
    assert P.resolve("auto", "cpu", flags=WITH_AVX512_BF16) == "bf16"  # another machine's flags: flags alone
    assert P.describe("auto")["bf16_speedup"] == pytest.approx(2.0)


def test_a_corrupt_stored_probe_is_measured_again(this_machine_with_bf16_flag, monkeypatch):
    monkeypatch.setattr(P, "_time_matmul", lambda dtype, **k: 1.0 if dtype == torch.float32 else 0.4)
    P._probe_path().write_text("{not json")
    assert P.cpu_bf16_speedup() == pytest.approx(2.5) and P.resolve("auto") == "bf16"


def test_auto_on_unreadable_cpuinfo_is_fp32(tmp_path):
    assert P.cpu_flags(str(tmp_path / "missing")) is None
    assert not P.cpu_has_native_bf16(frozenset())
    info = tmp_path / "cpuinfo"
    info.write_text("processor\t: 0\nmodel name\t: Test CPU\nflags\t\t: fpu avx2 avx512_bf16\n\n"
                    "processor\t: 1\nflags\t\t: fpu\n")
    assert P.cpu_flags(str(info)) == {"fpu", "avx2", "avx512_bf16"}
    assert P.cpu_model(str(info)) == "Test CPU"


def test_explicit_precisions_pass_through():
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert P.resolve("fp32", "cpu", flags=WITH_AMX) == "fp32"
        assert P.resolve("fp32", "cpu", flags=AVX2_ONLY) == "fp32"
        assert P.resolve("bf16", "cpu", flags=WITH_AMX) == "bf16"
        assert P.resolve(None) == "fp32"
    with pytest.warns(RuntimeWarning, match="without native bf16"):
        assert P.resolve("bf16", "cpu", flags=AVX2_ONLY) == "bf16"  # works, slowly: warned
    with pytest.raises(ValueError, match="precision must be one of"):
        P.resolve("fp16")


def test_cuda_auto_follows_torch(monkeypatch):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "is_bf16_supported", lambda *a, **k: True)
    assert P.resolve("auto", "cuda", flags=AVX2_ONLY) == "bf16"
    assert P.resolve("auto", "cuda:0", flags=AVX2_ONLY) == "bf16"
    monkeypatch.setattr(torch.cuda, "is_bf16_supported", lambda *a, **k: False)
    assert P.resolve("auto", torch.device("cuda"), flags=WITH_AMX) == "fp32"
    # emulated bf16 (a V100 or T4: torch says yes only when emulation counts) is not native: fp32
    monkeypatch.setattr(torch.cuda, "is_bf16_supported", lambda including_emulation=True: including_emulation)
    assert P.resolve("auto", "cuda", flags=WITH_AMX) == "fp32"


def test_autocast_is_bf16_or_a_no_op():
    a, b = torch.randn(4, 8), torch.randn(8, 4)
    with P.autocast("bf16", "cpu"):
        assert (a @ b).dtype == torch.bfloat16
    for p in ("fp32", None):
        with P.autocast(p, "cpu"):
            assert (a @ b).dtype == torch.float32


def test_describe_names_the_machine_and_the_choice():
    d = P.describe("fp32")
    assert d["precision"] == "fp32" and d["requested"] == "fp32" and d["device"] == "cpu"
    assert d["cpu_model"] and d["cpu_capability"] and isinstance(d["native_bf16"], bool)
    assert P.describe("auto")["precision"] in ("fp32", "bf16")


def _cfg(*overrides):
    from distill.config import build_config

    return build_config({"teacher": {"model": "t"}, "student": {"model": "s"}}, list(overrides))


def test_config_precision_fields_default_auto():
    from distill.config import ConfigError

    cfg = _cfg()
    assert cfg.scoring.precision == cfg.encoding.precision == cfg.training.precision == "auto"
    assert _cfg("training.precision=fp32").training.precision == "fp32"
    with pytest.raises(ConfigError, match="scoring.precision"):
        _cfg("scoring.precision=fp16")


def test_for_stage_resolves_on_this_machine(monkeypatch):
    monkeypatch.setattr(P, "cpu_flags", lambda *a: frozenset(AVX2_ONLY))
    cfg = _cfg("training.precision=auto")
    assert [P.for_stage(cfg, s) for s in ("score", "encode", "train", "mine")] == ["fp32"] * 4
    monkeypatch.setattr(P, "cpu_flags", lambda *a: frozenset(WITH_AMX))
    monkeypatch.setattr(P, "cpu_bf16_speedup", lambda: 2.0)  # an AMX CPU, where bf16 measures faster
    assert [P.for_stage(cfg, s) for s in ("score", "encode", "train", "mine")] == ["bf16", "bf16", "bf16", "fp32"]
    assert P.for_stage(_cfg("teacher.signal=attention"), "score") == "fp32"  # attention scores are not autocast
    assert P.for_stage(_cfg("training.precision=auto", "training.backend=ddp"), "train") == "bf16"  # autocast: both


def test_stage_digest_holds_the_resolved_precision(monkeypatch):
    """auto digests as what it resolves to: fp32 like an explicit fp32 (and like a config from before the
    setting), bf16 like an explicit bf16; so a machine that resolves auto otherwise re-runs the stage."""
    from distill.manifest import stage_digest

    def digests(p=None):
        cfg = _cfg(*(f"{s}.precision={p}" for s in ("scoring", "training", "encoding"))) if p else _cfg()
        return {s: stage_digest(cfg, s) for s in ("mine", "score", "encode")}

    monkeypatch.setattr(P, "cpu_flags", lambda *a: frozenset(AVX2_ONLY))
    fp32, auto_on_avx2 = digests("fp32"), digests()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)  # bf16 asked of a CPU without it
        bf16 = digests("bf16")
    monkeypatch.setattr(P, "cpu_flags", lambda *a: frozenset(WITH_AMX))
    monkeypatch.setattr(P, "cpu_bf16_speedup", lambda: 2.0)  # an AMX CPU, where bf16 measures faster
    auto_on_amx = digests()
    assert auto_on_avx2 == fp32 and auto_on_amx == bf16
    assert fp32["mine"] == bf16["mine"]  # mining does not depend on it
    assert fp32["score"] != bf16["score"] and fp32["encode"] != bf16["encode"]
    only_encode = _cfg("scoring.precision=fp32", "training.precision=fp32", "encoding.precision=bf16")
    assert stage_digest(only_encode, "score") == fp32["score"]  # digests are cumulative down the pipeline
    assert stage_digest(only_encode, "encode") not in (fp32["encode"], bf16["encode"])


# ---- bf16 outputs close to fp32, returned as float32 ---------------------------------------------------------
VOCAB = ["cat", "dog", "car", "bark", "animal", "loud", "red", "fast", "small", "house", "tree", "river"]
QUERIES = ["cat animal", "dog bark loud", "red car fast", "small house", "tree river", "loud dog", "fast", "cat"]
DOCS = ["cat", "dog loud bark animal", "car red", "house small tree", "river tree red car", "bark", "fast car",
        "animal cat small"]


@pytest.fixture(scope="module")
def tiny(tmp_path_factory):
    from builders import make_tiny_bert

    d = tmp_path_factory.mktemp("tiny")
    make_tiny_bert(d / "de", VOCAB, hidden=64, layers=2, heads=2, seed=1)
    # initializer_range 0.1: a random cross-encoder whose logits differ between pairs (at 0.02 they agree to
    # 1e-4, below bf16's resolution, so no precision could rank them)
    make_tiny_bert(d / "ce", VOCAB, hidden=64, layers=2, heads=2, cross_encoder=True, seed=2, initializer_range=0.1)
    return d


def _cosines(a, b):
    return (a * b).sum(-1) / (np.linalg.norm(a, axis=-1) * np.linalg.norm(b, axis=-1))


@pytest.mark.parametrize("pooling", ["mean", "cls"])
def test_dual_encoder_bf16_matches_fp32(tiny, pooling):
    from distill.models import DualEncoder

    enc = DualEncoder(str(tiny / "de"), pooling=pooling, max_length=32)
    texts = QUERIES + DOCS
    fp32 = enc.encode(texts, batch_size=4)
    bf16 = enc.encode(texts, batch_size=4, precision="bf16")
    assert bf16.dtype == np.float32 and fp32.dtype == np.float32 and bf16.shape == fp32.shape
    assert not np.array_equal(bf16, fp32)  # autocast really ran
    assert _cosines(bf16, fp32).min() >= 0.999
    np.testing.assert_array_equal(enc.encode(texts, batch_size=4, precision="fp32"), fp32)
    assert next(enc.parameters()).dtype == torch.float32  # weights untouched


def test_cross_encoder_bf16_scores_track_fp32(tiny):
    from distill.models import CrossEncoder

    ce = CrossEncoder(str(tiny / "ce"), max_length=32)
    q = [a for a in QUERIES for _ in DOCS]
    d = DOCS * len(QUERIES)
    fp32, bf16 = ce.score(q, d, batch_size=16), ce.score(q, d, batch_size=16, precision="bf16")
    assert bf16.dtype == np.float32 and bf16.shape == fp32.shape
    assert np.corrcoef(fp32, bf16)[0, 1] > 0.99
    res = ce.score_all(q, d, batch_size=16, precision="bf16")
    np.testing.assert_array_equal(res["score"], bf16)


def test_dual_head_cross_encoder_bf16_vectors_and_layer_scores(tiny):
    from distill.models import CrossEncoder

    ce = CrossEncoder(str(tiny / "ce"), max_length=32, head="dual")
    fp32 = ce.score_all(QUERIES, DOCS, batch_size=4, vectors=True, layers=True)
    bf16 = ce.score_all(QUERIES, DOCS, batch_size=4, vectors=True, layers=True, precision="bf16")
    for k in ("score", "q_emb", "d_emb", "layer_scores"):
        assert bf16[k].dtype == np.float32 and bf16[k].shape == fp32[k].shape
    assert _cosines(bf16["q_emb"], fp32["q_emb"]).min() >= 0.999
    assert _cosines(bf16["d_emb"], fp32["d_emb"]).min() >= 0.999
    np.testing.assert_allclose(bf16["layer_scores"], fp32["layer_scores"], atol=0.01)


@pytest.mark.parametrize("kind", ["cross-encoder", "dual-encoder"])
def test_teacher_actor_bf16_scores_are_float32_and_close(tiny, kind):
    from distill.stages.score import TeacherActor

    model = tiny / ("ce" if kind == "cross-encoder" else "de")
    q = [a for a in QUERIES for _ in DOCS]
    d = DOCS * len(QUERIES)
    batch = {"qid": np.array([str(i // len(DOCS)) for i in range(len(q))]),
             "docid": np.array([str(i % len(DOCS)) for i in range(len(q))]), "query": q, "doc": d}
    fp32 = TeacherActor(str(model), kind, 32, 1, 16)
    bf16 = TeacherActor(str(model), kind, 32, 1, 16, precision="bf16")
    assert (fp32.precision, bf16.precision) == ("fp32", "bf16")
    a, b = fp32(batch)["teacher_score"], bf16(batch)["teacher_score"]
    assert np.asarray(b).dtype == np.float32 and len(b) == len(q)
    assert np.corrcoef(a, b)[0, 1] > 0.99
    if kind == "dual-encoder":  # cosines of unit vectors: close in absolute terms too
        np.testing.assert_allclose(b, a, atol=0.01)


def test_teacher_actor_kwargs_carry_the_resolved_precision(monkeypatch):
    from distill.stages.score import actor_kwargs

    cfg = _cfg()
    monkeypatch.setattr(P, "cpu_flags", lambda *a: frozenset(AVX2_ONLY))
    assert actor_kwargs("t", cfg.teacher, cfg.scoring, 1)["precision"] == "fp32"
    monkeypatch.setattr(P, "cpu_flags", lambda *a: frozenset(WITH_AMX))
    monkeypatch.setattr(P, "cpu_bf16_speedup", lambda: 2.0)  # an AMX CPU, where bf16 measures faster
    assert actor_kwargs("t", cfg.teacher, cfg.scoring, 1)["precision"] == "bf16"
    cfg = _cfg("scoring.precision=fp32")
    assert actor_kwargs("t", cfg.teacher, cfg.scoring, 1)["precision"] == "fp32"


def test_eval_report_says_which_precision_each_stage_used():
    from distill.stages.evaluate import render_markdown

    report = {"run": "r", "split": "test", "queries": 2, "metrics": {"bm25": {"ndcg@10": 0.1, "mrr@10": 0.1,
              "recall@100": 0.1}}, "sizes": {"student_parameters": 10, "teacher_parameters": 200,
              "teacher_to_student_size": 20.0}, "speed": {}, "rerank_depth": 5, "index": {}}
    assert "Precision:" not in render_markdown(report)  # a report from before the setting
    report["precision"] = {"score": "bf16", "train": "fp32", "encode": None, "teacher_rerank": "bf16",
                           "queries": "fp32", "machine": {"cpu_model": "Test CPU", "cpu_capability": "AVX512",
                                                          "native_bf16": True}}
    md = render_markdown(report)
    assert ("Precision: score bf16, train fp32, encode unrecorded, teacher rerank bf16, queries fp32; Test CPU "
            "(torch CPU capability AVX512, native bf16).") in md


# ---- serving ---------------------------------------------------------------------------------------------------
def test_serving_takes_precision(tmp_path, monkeypatch):
    from serve.__main__ import parse_args
    from serve.app import AppArgs
    from serve.core import Reranking, Retrieval
    from serve.testing import make_serve_run

    assert parse_args(["runs/x"]).precision == "auto"
    assert parse_args(["runs/x", "--precision", "bf16"]).precision == "bf16"
    assert AppArgs(run_dir="x").precision == "auto" and AppArgs(run_dir="x", precision="fp32").precision == "fp32"
    with pytest.raises(Exception):
        AppArgs(run_dir="x", precision="fp16")

    made = make_serve_run(tmp_path / "run")
    run, qs = made["run_dir"], made["queries"][:6]
    monkeypatch.setattr(P, "cpu_flags", lambda *a: frozenset(AVX2_ONLY))
    assert Retrieval(run).precision == "fp32"  # auto on a CPU without bf16 units
    monkeypatch.setattr(P, "cpu_flags", lambda *a: frozenset(WITH_AMX))
    monkeypatch.setattr(P, "cpu_bf16_speedup", lambda: 2.0)  # an AMX CPU, where bf16 measures faster
    fp32, bf16 = Retrieval(run, precision="fp32"), Retrieval(run)
    assert bf16.precision == "bf16"
    e32, _ = fp32.encode(qs)
    e16, _ = bf16.encode(qs)
    assert e16.dtype == np.float32 and _cosines(e16, e32).min() >= 0.999
    ids32, s32, _ = fp32.search(qs, 5)
    ids16, s16, _ = bf16.search(qs, 5)
    assert [i[0] for i in ids16] == [i[0] for i in ids32]  # same top hit
    np.testing.assert_allclose(np.asarray(s16), np.asarray(s32), atol=0.01)
    docs = [bf16.docs[d][1] for d in ids32[0]] * 2
    rr32, rr16 = Reranking.from_run(run, precision="fp32"), Reranking.from_run(run, precision="bf16")
    assert (rr32.precision, rr16.precision) == ("fp32", "bf16")
    a, b = rr32.score([qs[0]] * len(docs), docs), rr16.score([qs[0]] * len(docs), docs)
    # this random teacher's logits differ by ~0.005 around -0.44 and its head is scaled x100 (serve.testing), which
    # amplifies bf16's rounding of the pooled vector: close, not rank-identical (rank agreement on a teacher
    # whose scores spread: test_cross_encoder_bf16_scores_track_fp32)
    assert b.dtype == np.float32 and not np.array_equal(a, b)
    np.testing.assert_allclose(b, a, atol=0.02)
