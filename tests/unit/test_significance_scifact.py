"""benchmarks/significance_scifact.py over finished sweep runs' stored per-query metrics (no Ray, no model)."""

import importlib.util
import json
from pathlib import Path

import pytest

from distill import layout
from distill.config import load_config
from distill.manifest import RunDir
from distill.sweep import variant_config

ROOT = Path(__file__).resolve().parents[2]
spec = importlib.util.spec_from_file_location("significance_scifact", ROOT / "benchmarks" / "significance_scifact.py")
sig = importlib.util.module_from_spec(spec)
spec.loader.exec_module(sig)

QIDS = [f"q{i}" for i in range(6)]


def _beir(d: Path) -> Path:
    (d / "qrels").mkdir(parents=True)
    (d / "corpus.jsonl").write_text("".join(json.dumps({"_id": f"d{i}", "title": "", "text": f"doc {i}"}) + "\n"
                                            for i in range(6)))
    (d / "queries.jsonl").write_text("".join(json.dumps({"_id": q, "text": f"query {q}"}) + "\n" for q in QIDS))
    (d / "qrels" / "test.tsv").write_text("query-id\tcorpus-id\tscore\n"
                                          + "".join(f"{q}\td{i}\t1\n" for i, q in enumerate(QIDS)))
    return d


def _finished(cfg, system: str, seed: int, ndcg: list[float]) -> None:
    """A sweep run of ``system`` that finished evaluate with these per-query nDCG@10 values (MRR, recall alike)."""
    rd = RunDir(variant_config(cfg, system, seed, {}))
    values = dict(zip(QIDS, ndcg))
    with rd.atomic_output("evaluate") as tmp:
        (tmp / layout.PER_QUERY).write_text(json.dumps({"student_distilled": {
            "ndcg@10": values, "mrr@10": values, "recall@100": values}}))
    rd.mark_done("evaluate")


def test_pairs_pool_seeds_per_query_and_skip_a_pair_without_runs(tmp_path, capsys):
    data = _beir(tmp_path / "beir")
    over = [f"runs_dir={tmp_path / 'runs'}"]
    cfg = load_config(ROOT / "configs" / "scifact_cpu.yaml", [f"data.dir={data}", *over])
    _finished(cfg, "treat", 0, [1.0, 1.0, 1.0, 1.0, 1.0, 0.0])
    _finished(cfg, "treat", 1, [1.0, 0.0, 1.0, 1.0, 1.0, 0.0])
    _finished(cfg, "ctrl", 2, [0.0, 0.0, 0.0, 0.0, 1.0, 0.0])
    out = tmp_path / "sig.json"
    code = sig.main(["--config", str(ROOT / "configs" / "scifact_cpu.yaml"), "--data-dir", str(data),
                     "--pair", "treat:ctrl", "--pair", "treat:absent", "--permutations", "999",
                     "--out", str(out), *over])
    assert code == 0
    printed = capsys.readouterr().out
    assert "treat:absent: skipped, no finished run of absent" in printed
    res = json.loads(out.read_text())
    assert res["queries"] == 6 and len(res["pairs"]) == 1
    pair = res["pairs"][0]
    assert pair["seeds"] == {"treat": [0, 1], "ctrl": [2]}
    assert pair["per_query_values"] == {"treat": {"0": "stored", "1": "stored"}, "ctrl": {"2": "stored"}}
    t = pair["metrics"]["ndcg@10"]
    # treat, averaged over its 2 seeds: 1, .5, 1, 1, 1, 0 (mean 0.75); ctrl: 0, 0, 0, 0, 1, 0 (mean 1/6)
    assert t["treatment"] == pytest.approx(0.75) and t["control"] == pytest.approx(1 / 6)
    assert t["diff"] == pytest.approx(0.75 - 1 / 6) and (t["wins"], t["losses"], t["ties"]) == (4, 0, 2)
    assert 0 < t["p"] <= 1 and t["ci95"][0] <= t["diff"] <= t["ci95"][1]
    assert "| treat (0,1) - ctrl (2) | ndcg@10 | 0.1667 | 0.7500 | +0.5833 |" in printed


def test_no_pair_with_runs_is_a_failure(tmp_path, capsys):
    data = _beir(tmp_path / "beir")
    code = sig.main(["--config", str(ROOT / "configs" / "scifact_cpu.yaml"), "--data-dir", str(data),
                     "--out", str(tmp_path / "sig.json"), f"runs_dir={tmp_path / 'runs'}"])
    assert code == 1 and "kl0.25+hard_label:hard_label: skipped" in capsys.readouterr().out


def test_an_earlier_file_adds_the_seeds_this_machine_lacks(tmp_path, capsys):
    data = _beir(tmp_path / "beir")
    conf = str(ROOT / "configs" / "scifact_cpu.yaml")
    first = [f"runs_dir={tmp_path / 'runs1'}"]
    cfg1 = load_config(conf, [f"data.dir={data}", *first])
    _finished(cfg1, "treat", 0, [1.0, 1.0, 1.0, 1.0, 1.0, 0.0])
    _finished(cfg1, "ctrl", 0, [0.0, 0.0, 0.0, 0.0, 1.0, 0.0])
    assert sig.main(["--config", conf, "--data-dir", str(data), "--pair", "treat:ctrl", "--permutations", "99",
                     "--out", str(tmp_path / "one.json"), *first]) == 0
    # another machine: only seed 1 of each system is here; seed 0 comes from the first file
    second = [f"runs_dir={tmp_path / 'runs2'}"]
    cfg2 = load_config(conf, [f"data.dir={data}", *second])
    _finished(cfg2, "treat", 1, [0.0, 1.0, 1.0, 1.0, 1.0, 0.0])
    _finished(cfg2, "ctrl", 1, [0.0, 0.0, 0.0, 0.0, 1.0, 1.0])
    assert sig.main(["--config", conf, "--data-dir", str(data), "--pair", "treat:ctrl", "--permutations", "99",
                     "--merge", str(tmp_path / "one.json"), "--out", str(tmp_path / "two.json"), *second]) == 0
    res = json.loads((tmp_path / "two.json").read_text())
    pair = res["pairs"][0]
    assert pair["seeds"] == {"treat": [0, 1], "ctrl": [0, 1]}
    assert pair["per_query_values"] == {"treat": {"0": "merged", "1": "stored"}, "ctrl": {"0": "merged", "1": "stored"}}
    assert pair["metrics"]["ndcg@10"]["treatment"] == pytest.approx(9 / 12)
    assert pair["metrics"]["ndcg@10"]["control"] == pytest.approx(3 / 12)
    assert res["qids"] == QIDS and res["per_query"]["treat"]["0"]["ndcg@10"] == [1.0, 1.0, 1.0, 1.0, 1.0, 0.0]
    assert sig.read_per_query(tmp_path / "two.json")["ctrl"]["1"]["recall@100"]["q5"] == 1.0
