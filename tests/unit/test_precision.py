"""Precision as a setting (distill.precision): ``auto`` resolution from injected CPU flags, fp32/bf16 taken
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


def test_config_precision_fields_default_auto_and_training_fp32():
    from distill.config import ConfigError

    cfg = _cfg()
    assert cfg.scoring.precision == "auto" and cfg.encoding.precision == "auto"
    assert cfg.training.precision == "fp32"  # DeepSpeed's CPU bf16 path is unproven: opt in
    assert _cfg("training.precision=auto").training.precision == "auto"
    with pytest.raises(ConfigError, match="scoring.precision"):
        _cfg("scoring.precision=fp16")


def test_for_stage_resolves_on_this_machine(monkeypatch):
    monkeypatch.setattr(P, "cpu_flags", lambda *a: frozenset(AVX2_ONLY))
    cfg = _cfg("training.precision=auto")
    assert [P.for_stage(cfg, s) for s in ("score", "encode", "train", "mine")] == ["fp32"] * 4
    monkeypatch.setattr(P, "cpu_flags", lambda *a: frozenset(WITH_AMX))
    assert [P.for_stage(cfg, s) for s in ("score", "encode", "train", "mine")] == ["bf16", "bf16", "bf16", "fp32"]
    assert P.for_stage(_cfg("teacher.signal=attention"), "score") == "fp32"  # attention scores are not autocast
    assert P.for_stage(_cfg("training.precision=auto", "training.backend=ddp"), "train") == "fp32"


def test_stage_digest_holds_the_resolved_precision(monkeypatch):
    """auto digests as what it resolves to: fp32 like an explicit fp32 (and like a config from before the
    setting), bf16 like an explicit bf16; so a machine that resolves auto otherwise re-runs the stage."""
    from distill.manifest import stage_digest

    def digests(p=None):
        cfg = _cfg(f"scoring.precision={p}", f"encoding.precision={p}") if p else _cfg()
        return {s: stage_digest(cfg, s) for s in ("mine", "score", "encode")}

    monkeypatch.setattr(P, "cpu_flags", lambda *a: frozenset(AVX2_ONLY))
    fp32, auto_on_avx2 = digests("fp32"), digests()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)  # bf16 asked of a CPU without it
        bf16 = digests("bf16")
    monkeypatch.setattr(P, "cpu_flags", lambda *a: frozenset(WITH_AMX))
    auto_on_amx = digests()
    assert auto_on_avx2 == fp32 and auto_on_amx == bf16
    assert fp32["mine"] == bf16["mine"]  # mining does not depend on it
    assert fp32["score"] != bf16["score"] and fp32["encode"] != bf16["encode"]
    only_encode = _cfg("scoring.precision=fp32", "encoding.precision=bf16")
    assert stage_digest(only_encode, "score") == fp32["score"]  # digests are cumulative down the pipeline
    assert stage_digest(only_encode, "encode") not in (fp32["encode"], bf16["encode"])
