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


def test_outcome_names_each_way_a_request_ends_and_drops_a_failed_connection():
    import asyncio

    class Probe(sl.Conn):
        closed = 0

        def close(self):
            Probe.closed += 1
            super().close()

    async def answer(value):
        return value

    async def fail(exc):
        raise exc

    async def hang():
        await asyncio.sleep(10)

    conn = Probe("127.0.0.1", 1)
    run = asyncio.run
    assert run(sl.outcome(conn, answer((200, b"{}")), 1.0)) == "200"  # conn.post's (status, body)
    assert run(sl.outcome(conn, answer(503), 1.0)) == "503"  # get()'s status
    assert Probe.closed == 0
    assert run(sl.outcome(conn, hang(), 0.01)) == "client_timeout"
    assert run(sl.outcome(conn, fail(ConnectionResetError()), 1.0)) == "conn_error"
    assert run(sl.outcome(conn, fail(asyncio.IncompleteReadError(b"", 10)), 1.0)) == "conn_error"
    assert run(sl.outcome(conn, fail(ValueError("bad status line")), 1.0)) == "conn_error"
    assert Probe.closed == 4


def test_pct_is_the_nearest_rank_percentile_in_ms():
    xs = [0.010, 0.020, 0.030, 0.040, 0.050]
    assert (sl.pct(xs, 50), sl.pct(xs, 0), sl.pct(xs, 100), sl.pct(xs, 99)) == (30.0, 10.0, 50.0, 50.0)
    assert sl.pct(list(reversed(xs)), 50) == 30.0 and sl.pct([], 50) is None
