"""distill.compare: ``ray-distill compare`` over run directories' per-query metrics."""

from __future__ import annotations

import json

import pytest

from distill import cli
from distill.compare import CompareError, compare, read_per_query


def _run(root, name: str, ndcg: list[float], system: str = "student_distilled"):
    """A run directory whose evaluate stage wrote these per-query nDCG@10 (and MRR@10 the same) values."""
    d = root / name
    (d / "eval").mkdir(parents=True)
    values = {f"q{i}": v for i, v in enumerate(ndcg)}
    (d / "eval" / "per_query.json").write_text(json.dumps({system: {"ndcg@10": values, "mrr@10": values}}))
    return d


def test_the_command_prints_a_table_and_writes_json(tmp_path, capsys):
    a0 = _run(tmp_path, "a0", [0.0, 0.0, 1.0, 0.0])
    a1 = _run(tmp_path, "a1", [0.0, 1.0, 1.0, 0.0])
    b = _run(tmp_path, "b", [1.0, 1.0, 1.0, 0.0])
    out = tmp_path / "cmp.json"
    assert cli.main(["compare", "--control", str(a0), str(a1), "--treatment", str(b), "--permutations", "99",
                     "--json", str(out)]) == 0
    printed = capsys.readouterr().out
    # control averaged over its two runs: 0, .5, 1, 0 (mean .375); treatment 1, 1, 1, 0 (.75)
    assert "| 1 run(s) - 2 run(s) | ndcg@10 | 0.3750 | 0.7500 | +0.3750 |" in printed
    assert "| 2/0/2 |" in printed
    res = json.loads(out.read_text())
    assert list(res["metrics"]) == ["ndcg@10", "mrr@10"] and res["metrics"]["ndcg@10"]["queries"] == 4


def test_runs_that_cannot_be_compared_get_a_reason_and_exit_2(tmp_path, capsys):
    a = _run(tmp_path, "a", [0.0, 1.0])
    b = _run(tmp_path, "b", [0.0, 1.0, 1.0])  # a query more
    z = _run(tmp_path, "z", [0.0, 1.0], system="bm25")
    assert cli.main(["compare", "--control", str(a), "--treatment", str(b)]) == 2
    assert "not the same queries (0 only in the first, 1 only in the second)" in capsys.readouterr().err
    assert cli.main(["compare", "--control", str(a), "--treatment", str(tmp_path / "none")]) == 2
    assert "no eval/per_query.json" in capsys.readouterr().err
    assert cli.main(["compare", "--control", str(a), "--treatment", str(z)]) == 2
    assert "no system 'student_distilled' (it has bm25)" in capsys.readouterr().err
    (tmp_path / "bad.json").write_text("{")
    with pytest.raises(CompareError, match="not readable as JSON"):
        read_per_query(tmp_path / "bad.json")
    with pytest.raises(CompareError, match="at least one run a side"):
        compare([], [read_per_query(a)])


def test_a_file_or_another_system_can_be_named(tmp_path):
    z = _run(tmp_path, "z", [0.5, 1.0], system="bm25")
    assert read_per_query(z / "eval" / "per_query.json", "bm25")["ndcg@10"] == {"q0": 0.5, "q1": 1.0}
    tests = compare([read_per_query(z, "bm25")], [read_per_query(z, "bm25")], permutations=9)
    assert tests["ndcg@10"]["diff"] == 0.0 and tests["ndcg@10"]["p"] == 1.0
