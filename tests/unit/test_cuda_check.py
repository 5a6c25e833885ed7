"""benchmarks/cuda_check.py on CPU, tiny sizes: every check passes on the reference device itself and the
throughput section runs and reports finite numbers (no timing is asserted). The GPU run is manual."""

from __future__ import annotations

import importlib.util
import json
import math
from pathlib import Path

import pytest

SPEC = importlib.util.spec_from_file_location("cuda_check", Path(__file__).resolve().parents[2] / "benchmarks" / "cuda_check.py")
cc = importlib.util.module_from_spec(SPEC)
SPEC.loader.exec_module(cc)


@pytest.fixture(scope="module")
def tmp(tmp_path_factory):
    return tmp_path_factory.mktemp("cuda_check")


@pytest.mark.parametrize("name", [c[0] for c in cc.CHECKS])
def test_check_passes_on_cpu(name, tmp):
    _, fn, needs_tmp = next(c for c in cc.CHECKS if c[0] == name)
    res = cc.run_check(name, fn, *(("cpu", tmp) if needs_tmp else ("cpu",)))
    assert res["passed"], res


def test_loss_cases_cover_every_loss():
    from distill import losses

    covered = {name.split("_l2")[0].split("_cosine")[0] for name, *_ in cc._loss_cases(__import__("torch").Generator())}
    assert set(losses.__all__) <= covered


def test_forward_flops_counts_linear_and_attention():
    from transformers import BertConfig

    cfg = BertConfig(hidden_size=4, num_hidden_layers=1, intermediate_size=8)
    # linear: 2 * (4*16 + 2*32) * 3 tokens; attention: 4 * 3^2 * 4
    assert cc.forward_flops(cfg, 1, 3) == 2 * 128 * 3 + 4 * 9 * 4


def test_quick_cpu_run_writes_json(tmp_path):
    out = tmp_path / "r.json"
    assert cc.main(["--device", "cpu", "--quick", "--out", str(out)]) == 0
    res = json.loads(out.read_text())
    assert res["all_checks_passed"] and res["device"] == "cpu" and len(res["checks"]) == len(cc.CHECKS)
    b = res["bench"]
    assert b["matmul_peak"]["bf16_tflops"] > 0 and b["matmul_peak"]["fp32_tflops"] > 0
    for prec in ("fp32", "bf16"):
        assert math.isfinite(b["encode"][prec]["tokens_per_s"]) and b["encode"][prec]["tokens_per_s"] > 0
        assert b["cross_encoder_score"][prec]["pairs_per_s"] > 0
        for key, r in b["train_step"].items():
            if key != "bench_seconds":
                assert r[prec]["ms_per_step"] > 0 and r[prec]["loss_finite"]
    assert b["encode"]["encode_end_to_end_bf16"]["finite"]
