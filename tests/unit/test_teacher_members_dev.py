"""benchmarks/teacher_members_dev.py: dev-pool nDCG@10 of ensemble members alone and fused (no Ray)."""

import importlib.util
import json
from pathlib import Path

import pytest

from builders import make_beir, make_bow_encoder
from distill import layout
from distill.data import read_beir
from distill.models import DualEncoder
from distill.stages.encode import write_embeddings

ROOT = Path(__file__).resolve().parents[2]
spec = importlib.util.spec_from_file_location("teacher_members_dev", ROOT / "benchmarks" / "teacher_members_dev.py")
tmd = importlib.util.module_from_spec(spec)
spec.loader.exec_module(tmd)


def test_fusion_weights_are_normalised_and_bad_specs_refused():
    assert tmd.parse_fusion("a=1,b=3") == {"a": 0.25, "b": 0.75}
    assert tmd.parse_fusion(" a = 2 ") == {"a": 1.0}
    for bad in ("a", "=1", "a=-1,b=2", "a=0,b=0", "a=x"):
        with pytest.raises(ValueError):
            tmd.parse_fusion(bad)


def test_members_alone_and_fused_on_the_dev_pool_never_the_test_split(tmp_path):
    """The pool is the held-out dev queries' BM25 + zero-shot candidates; a member fused alone ranks as it does
    alone (z-scores keep each query's order), and the fitted point is reported beside the fixed ones."""
    info = make_beir(tmp_path / "data", topics=6, docs_per_topic=5, train_queries=30, test_queries=10)
    bow = make_bow_encoder(tmp_path / "bow", info["vocab"], hidden=64)
    data = read_beir(tmp_path / "data", "corpus.jsonl", "queries.jsonl", ("train",), 0.05)
    docids = list(data.corpus)
    enc = DualEncoder(str(bow), max_length=32)
    write_embeddings(tmp_path / "run" / layout.stage_dir("mine") / "zeroshot", docids,
                     enc.encode([data.doc_text(d) for d in docids], 16))
    out = tmp_path / "dev.json"
    assert tmd.main([str(tmp_path / "run"), f"student.model={bow}", "student.max_length=32", "data.dev_queries=8",
                     "mining.depth=4", "--data-dir", str(tmp_path / "data"), "--member", f"bow={bow}", "--bm25",
                     "--fusion", "bow=1", "--fusion", "bow=1,bm25=1", "--precision", "fp32", "--out", str(out)]) == 0
    res = json.loads(out.read_text())
    assert res["split"] == "dev" and res["queries"] == 8 and 8 <= res["pairs"] <= 8 * 8
    nd = res["ndcg@10"]
    assert set(nd) == {"bow alone", "bm25 alone", "bow=1", "bow=1,bm25=1"}
    assert nd["bow=1"] == pytest.approx(nd["bow alone"])
    assert res["fusions"]["bow=1,bm25=1"] == {"bow": 0.5, "bm25": 0.5}
    assert res["fitted_on_dev"]["ndcg@10"] >= max(nd.values()) - 1e-9  # the grid holds every fixed point here
    assert all(0 <= v <= 1 for v in nd.values())
    with pytest.raises(SystemExit, match="not given"):
        tmd.main([str(tmp_path / "run"), "--data-dir", str(tmp_path / "data"), "--member", f"bow={bow}",
                  "--fusion", "bow=1,other=1", "--out", str(out)])
