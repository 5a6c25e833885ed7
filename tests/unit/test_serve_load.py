"""benchmarks/serve_load.py's record, without servers: each Serve cell is set beside the best plain server of
that cell (ratio, p50/p99 of both), and the JSON carries the date, machine, precision and command. No timing
is asserted; the benchmark itself is run by hand (BENCHMARKS.md)."""

from __future__ import annotations

import importlib.util
import json
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
SPEC = importlib.util.spec_from_file_location("serve_load", ROOT / "benchmarks" / "serve_load.py")
sl = importlib.util.module_from_spec(SPEC)
SPEC.loader.exec_module(sl)


def _cell(qps, p50, p99):
    return {"qps": qps, "p50": p50, "p99": p99, "errors": 0, "unfinished": 0}


RESULTS = {
    "plain-1t": {("retrieval", 16): _cell(61.0, 257.0, 553.0), ("retrieval", 1): _cell(62.0, 14.0, 22.0)},
    "plain-2t": {("retrieval", 16): _cell(78.3, 196.0, 291.0), ("retrieval", 1): _cell(86.5, 11.0, 17.0)},
    "serve": {("retrieval", 16): _cell(235.6, 67.0, 93.8), ("retrieval", 1): _cell(37.8, 26.0, 38.0)},
}


def test_summary_compares_with_the_best_plain_server():
    rows = {(r["server"], r["clients"]): r for r in sl.summary(RESULTS)}
    r = rows[("serve", 16)]
    assert r["plain"] == "plain-2t" and r["plain_qps"] == 78.3 and abs(r["ratio"] - 235.6 / 78.3) < 1e-9
    assert (r["serve_p50_ms"], r["serve_p99_ms"], r["plain_p50_ms"], r["plain_p99_ms"]) == (67.0, 93.8, 196.0, 291.0)
    assert rows[("serve", 1)]["plain"] == "plain-2t"
    assert {k for k in rows} == {("serve", 16), ("serve", 1)}  # plain servers are not compared with themselves


def test_json_carries_date_machine_precision_and_command(tmp_path, monkeypatch):
    monkeypatch.setattr(sys, "argv", ["benchmarks/serve_load.py", "--duration", "1"])
    a = sl.parse_args(["--duration", "1"])
    assert a.servers == "plain,serve" and a.precision == "auto"  # the default configuration vs plain
    out = tmp_path / "serve_load.json"
    sl.write_json(str(out), a, RESULTS, "| table |", {"serve": "direct ingress"})
    d = json.loads(out.read_text())
    assert d["date"].endswith("+00:00") and d["command"] == "python benchmarks/serve_load.py --duration 1"
    m = d["machine"]
    assert m["cpu_model"] and m["cpu_capability"] and m["cpus"] >= 1 and m["precision"] in ("fp32", "bf16")
    assert d["precision"] == m["precision"] and d["http_path"] == {"serve": "direct ingress"}
    assert {r["server"] for r in d["summary"]} == {"serve"} and d["results"]["serve"]["retrieval@16"]["qps"] == 235.6
