"""A CNN student through the real train stage: Ray Train, DeepSpeed ZeRO-2 on 2 CPU workers, export.

The teacher scores are written by hand (word overlap), so only the train stage runs (no Ray Data pools).
"""

import json

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from distill.config import build_config
from distill.manifest import RunDir
from distill.pipeline import run_pipeline
from builders import make_beir, make_tiny_bert

pytestmark = [pytest.mark.ray, pytest.mark.slow]

CNN = {"arch": "cnn", "num_layers": 2, "hidden_size": 16, "embed_dim": 8, "output_dim": 16}


def _overlap_scores(root) -> pd.DataFrame:
    """Candidates per train query: its positive and 5 negatives, scored by word overlap (the 'teacher')."""
    corpus = {d["_id"]: d for d in map(json.loads, (root / "data" / "corpus.jsonl").read_text().splitlines())}
    queries = {q["_id"]: q["text"] for q in map(json.loads, (root / "data" / "queries.jsonl").read_text().splitlines())}
    qrels = pd.read_csv(root / "data" / "qrels" / "train.tsv", sep="\t", dtype=str)
    rng = np.random.default_rng(0)
    rows = []
    for q, pos in zip(qrels["query-id"], qrels["corpus-id"]):
        negs = rng.choice([d for d in corpus if d != pos], size=5, replace=False).tolist()
        words = set(queries[q].split())
        for rank, d in enumerate([pos] + negs):
            text = f"{corpus[d]['title']} {corpus[d]['text']}".split()
            rows.append((q, d, rank, 0.0, "bm25", int(d == pos), float(len(words & set(text)))))
    return pd.DataFrame(rows, columns=["qid", "docid", "rank", "score", "source", "label", "teacher_score"])


@pytest.mark.timeout(300)
def test_cnn_student_trains_with_deepspeed_and_exports(ray_session, tmp_path):
    info = make_beir(tmp_path / "data", topics=6, docs_per_topic=5, train_queries=24, test_queries=6)
    make_tiny_bert(tmp_path / "base", info["vocab"], hidden=32, layers=2)
    cfg = build_config({
        "name": "cnn", "runs_dir": str(tmp_path / "runs"), "data": {"dir": str(tmp_path / "data")},
        "teacher": {"kind": "dual-encoder", "model": str(tmp_path / "base"), "finetune": False},
        "student": {"model": str(tmp_path / "base"), "max_length": 32, **CNN},
        "training": {"backend": "deepspeed", "zero_stage": 2, "num_workers": 2, "cpus_per_worker": 0.5,
                     "max_steps": 6, "queries_per_batch": 4, "group_size": 4, "learning_rate": 1e-2,
                     "checkpoint_every": 3, "max_failures": 0, "losses": {"kl": 1.0, "infonce": 0.1}},
        "ray": {"num_cpus": 2},
    })
    rd = RunDir(cfg)
    rd.stage_path("score").mkdir(parents=True)
    pq.write_table(pa.Table.from_pandas(_overlap_scores(tmp_path), preserve_index=False),
                   rd.stage_path("score") / "scores.parquet")

    rd = run_pipeline(cfg, only=["train"])
    st = rd.manifest["stages"]["train"]
    assert st["counts"] == {"groups": 24, "steps": 6, "workers": 2, "labels_withheld": 0, "pseudo_labelled_groups": 0}
    assert np.isfinite(st["final_metrics"]["loss"])

    from distill.models import DualEncoder

    student_dir = cfg.run_dir / "student"
    files = {p.name for p in student_dir.iterdir()}
    assert {"distill_encoder.json", "small_encoder.json", "model.safetensors"} <= files and "config.json" not in files
    trained = DualEncoder.load(student_dir)
    assert trained.arch == "cnn" and trained.dim == 16 and trained.num_layers == 2
    start = DualEncoder(str(tmp_path / "base"), max_length=32, **CNN)
    texts = ["the study of things", "a report"]
    emb = trained.encode(texts)
    np.testing.assert_allclose(np.linalg.norm(emb, axis=1), 1.0, atol=1e-5)
    assert not np.allclose(emb, start.encode(texts), atol=1e-4)  # the exported weights were trained
