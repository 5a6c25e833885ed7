"""Faults on a local Ray cluster, and what each one loses (nothing).

- a Ray Data encoding actor dies mid-batch (``os._exit`` inside ``__call__``), and a scoring actor is
  SIGKILLed from outside while it holds a batch: Ray restarts the actor and retries its batch; the stage
  returns exactly its input rows, each with its own value. The same on the default ``tasks`` pool (reused
  worker processes, distill.raydata): the dead process's task is retried in another one;
- a Ray Train worker dies between checkpoints: ``FailureConfig`` restarts the worker group from the last
  checkpoint within the same ``fit``; the step count, final checkpoint and exported student agree;
- the ``encode`` driver is SIGKILLed after saving 2 of 6 shards: the re-run encodes only the other 4 and
  its output equals an uninterrupted encoding of every document; the ``score`` driver likewise after 2
  of 5 score shards: the re-run scores only the other 3, and every pair's score is the teacher's;
- the disk fills while ``encode`` writes (``RLIMIT_FSIZE``: writes past the limit fail with EFBIG, the
  root-proof stand-in for ENOSPC, the same failing ``write``): a clear error naming the file, no stage
  marked done, nothing half-written, stale shards of another config dropped, and a later run finishes.

Faults are injected at named points (distill/faults.py), so no test races the code it interrupts.
"""

import json
import os
import shutil
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
import ray
import yaml

from distill.config import build_config
from distill.models import DualEncoder
from distill.pipeline import load_data, run_pipeline
from builders import make_beir, make_tiny_bert

pytestmark = [pytest.mark.ray, pytest.mark.slow]
ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="module")
def assets(tmp_path_factory):
    root = tmp_path_factory.mktemp("faults")
    info = make_beir(root / "data", topics=12, docs_per_topic=10, train_queries=40, test_queries=10)
    make_tiny_bert(root / "bert", info["vocab"], hidden=32, layers=2)
    DualEncoder(str(root / "bert"), max_length=32).save(root / "student")  # what the train stage exports
    return root


def _tree(root, name, **over):
    tree = {
        "name": name, "runs_dir": str(root / "runs"),
        "data": {"dir": str(root / "data")},
        "teacher": {"kind": "dual-encoder", "model": str(root / "bert"), "finetune": False, "max_length": 32},
        "student": {"model": str(root / "bert"), "max_length": 32},
        "scoring": {"actors": 2, "batch_size": 16, "precision": "fp32"},  # checked against fp32 references
        "training": {"backend": "deepspeed", "zero_stage": 2, "num_workers": 2, "cpus_per_worker": 0.5,
                     "max_steps": 6, "queries_per_batch": 4, "group_size": 4, "learning_rate": 1e-3,
                     "checkpoint_every": 2, "max_failures": 1, "losses": {"kl": 1.0}},
        "encoding": {"actors": 2, "batch_size": 8, "shard_rows": 20, "precision": "fp32"},
        "ray": {"num_cpus": 2},
    }
    for k, v in over.items():
        tree[k] = {**tree.get(k, {}), **v} if isinstance(v, dict) else v
    return tree


def _corpus(root):
    rows = [json.loads(x) for x in (root / "data" / "corpus.jsonl").read_text().splitlines()]
    return [r["_id"] for r in rows], [f"{r['title']}. {r['text']}" for r in rows]


def _queries(root):
    return {r["_id"]: r["text"] for r in map(json.loads, (root / "data" / "queries.jsonl").read_text().splitlines())}


def _map_workers() -> dict[str, dict]:
    """Ray Data's actors by id, from the GCS actor table (the state API needs the dashboard, which is off)."""
    return {k: a for k, a in ray._private.state.actors().items() if "MapWorker" in a["ActorClassName"]}


def _driver_env(**env) -> dict:
    """Environment for a second driver process: it joins this module's cluster, as under ``ray job submit``."""
    return {**os.environ, "RAY_ADDRESS": ray.get_runtime_context().gcs_address, **env}


def _stage_with_setup(tree, root, student=True):
    cfg = build_config(tree)
    if student:  # the encode stage reads the train stage's output
        shutil.copytree(root / "student", cfg.run_dir / "student", dirs_exist_ok=True)
    path = cfg.run_dir.parent / f"{tree['name']}.yaml"
    path.write_text(yaml.safe_dump(tree))
    return cfg, path


def _leftovers(run_dir: Path) -> list[str]:
    """Temporary files or folders anywhere in the run directory (a half-written artifact)."""
    return sorted(str(p.relative_to(run_dir)) for p in run_dir.rglob("*") if ".tmp" in p.name)


# ---- 1. Ray Data actors ------------------------------------------------------------------------------------
@pytest.mark.timeout(240)
def test_encode_actor_dies_mid_batch_and_no_row_is_lost(ray_session, assets, tmp_path, monkeypatch):
    from distill.stages.encode import encode_texts

    ids, texts = _corpus(assets)
    cfg = build_config(_tree(assets, "actor", ray={"stage_pool": "actors"}))
    monkeypatch.setenv("DISTILL_FAULT", "encode.batch@2")  # an actor dies inside its 2nd batch, once
    monkeypatch.setenv("DISTILL_FAULT_ONCE_FILE", str(tmp_path / "fired"))
    before = set(_map_workers())
    emb = encode_texts(ids, texts, str(assets / "student"), cfg.ray, batch_size=8, actors=2)
    dead = int((tmp_path / "fired").read_text())
    pool = [a for k, a in _map_workers().items() if k not in before]
    assert len(pool) == 2 and all("EncoderActor" in a["ActorClassName"] for a in pool)
    assert sorted(a["NumRestarts"] for a in pool) == [0, 1]  # one actor died and was restarted, not replaced
    assert dead not in {a["Pid"] for a in pool}  # ... in a new process
    assert emb.shape == (120, 32)
    # every row is its own document's embedding: nothing lost, duplicated or shuffled
    np.testing.assert_allclose(emb, DualEncoder.load(assets / "student").encode(texts), atol=1e-5)


@pytest.mark.timeout(240)
def test_score_actor_killed_from_outside_and_no_pair_is_lost(ray_session, assets, tmp_path, monkeypatch):
    from distill.stages.score import score_pairs

    ids, texts = _corpus(assets)
    text_of = dict(zip(ids, texts))
    queries = _queries(assets)
    rng = np.random.default_rng(0)
    pairs = pd.DataFrame([(q, d) for q in sorted(queries)[:40] for d in rng.choice(ids, 6, replace=False)],
                         columns=["qid", "docid"])
    cfg = build_config(_tree(assets, "score", ray={"stage_pool": "actors"}))
    monkeypatch.setenv("DISTILL_FAULT", "score.batch@2:hold")  # an actor stops in its 2nd batch; we SIGKILL it
    once = tmp_path / "held"
    monkeypatch.setenv("DISTILL_FAULT_ONCE_FILE", str(once))
    killed = {}

    def killer():
        deadline = time.time() + 180
        while not once.exists() and time.time() < deadline:
            time.sleep(0.2)
        pid = int(once.read_text())
        killed["actor"] = next(((k, a) for k, a in _map_workers().items() if a["Pid"] == pid), None)
        os.kill(pid, signal.SIGKILL)
        killed["pid"] = pid

    t = threading.Thread(target=killer, daemon=True)
    t.start()
    out = score_pairs(pairs, queries, text_of.__getitem__, str(assets / "bert"), cfg.teacher, cfg.scoring, cfg.ray)
    t.join(5)
    actor_id, actor = killed["actor"]
    assert "TeacherActor" in actor["ActorClassName"] and actor["State"] == "ALIVE"  # a live Ray Data actor
    after = _map_workers()[actor_id]
    assert after["NumRestarts"] == 1 and after["Pid"] != killed["pid"]  # restarted in a new process
    assert len(out) == len(pairs) == 240
    assert not out.duplicated(["qid", "docid"]).any()
    assert list(zip(out["qid"], out["docid"])) == list(zip(pairs["qid"], pairs["docid"]))
    enc = DualEncoder(str(assets / "bert"), max_length=32)
    want = (enc.encode([queries[q] for q in pairs["qid"]]) * enc.encode([text_of[d] for d in pairs["docid"]])).sum(-1)
    np.testing.assert_allclose(out["teacher_score"].to_numpy(), want, atol=1e-5)


@pytest.mark.timeout(240)
def test_encode_task_worker_dies_mid_batch_and_no_row_is_lost(ray_session, assets, tmp_path, monkeypatch):
    from distill.stages.encode import encode_texts

    ids, texts = _corpus(assets)
    cfg = build_config(_tree(assets, "tasks"))
    assert cfg.ray.stage_pool == "auto"  # the default: tasks on a CPU
    monkeypatch.setenv("DISTILL_FAULT", "encode.batch@2")  # a worker process dies inside its 2nd batch, once
    monkeypatch.setenv("DISTILL_FAULT_ONCE_FILE", str(tmp_path / "fired"))
    emb = encode_texts(ids, texts, str(assets / "student"), cfg.ray, batch_size=8, actors=2)
    dead = int((tmp_path / "fired").read_text())
    assert not _pid_alive(dead)  # the process did die; its batch was retried in another
    assert emb.shape == (120, 32)
    np.testing.assert_allclose(emb, DualEncoder.load(assets / "student").encode(texts), atol=1e-5)


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    return True


# ---- 2. a Ray Train worker ---------------------------------------------------------------------------------
@pytest.mark.timeout(300)
def test_train_worker_killed_resumes_from_last_checkpoint_within_one_fit(ray_session, assets, tmp_path,
                                                                         monkeypatch):
    from distill.manifest import RunDir
    from distill.stages import train

    cfg = build_config(_tree(assets, "trainkill"))
    rd = RunDir(cfg)
    data = load_data(rd)
    rng = np.random.default_rng(0)
    rows = []  # scores as the score stage leaves them: each train query's positive and 5 negatives
    for qid, rel in sorted(data.qrels["train"].items()):
        pos = next(iter(rel))
        rows += [(qid, pos, 1, 3.0)] + [(qid, d, 0, float(rng.normal())) for d in
                                         rng.choice([d for d in data.corpus if d != pos], 5, replace=False)]
    scores = pd.DataFrame(rows, columns=["qid", "docid", "label", "teacher_score"])
    (rd.stage_path("score")).mkdir(parents=True)
    pq.write_table(pa.Table.from_pandas(scores, preserve_index=False), rd.stage_path("score") / "scores.parquet")
    # rank 0 dies hard after step 5; the last checkpoint is step 4 (checkpoint_every 2); max_failures 1
    monkeypatch.setenv("DISTILL_FAIL_AT_STEP", "5")
    monkeypatch.setenv("DISTILL_FAIL_ONCE_FILE", str(tmp_path / "train.once"))
    counts = train.run(rd, data)
    assert (tmp_path / "train.once").read_text() == "5"  # the worker did die
    entry = rd.manifest["stages"]["train"]
    assert entry["resumed_from_step"] == 0  # no driver re-run: Ray Train restarted the workers itself
    assert entry["worker_starts"] == [0, 4]  # started at 0, restarted from the step-4 checkpoint
    assert counts["steps"] == 6 and entry["final_metrics"]["step"] == 6
    latest = train.latest_checkpoint(rd.path / "train_work" / "checkpoints")
    assert latest and json.loads((Path(latest) / train.STATE_FILE).read_text())["step"] == 6
    student = DualEncoder.load(rd.stage_path("train"))
    emb = student.encode(["a query", "another one"])
    assert emb.shape == (2, 32) and np.isfinite(emb).all()


# ---- 3. the driver, mid-stage ------------------------------------------------------------------------------
@pytest.mark.timeout(300)
def test_encode_driver_killed_resumes_unfinished_shards_only(ray_session, assets, capsys):
    """The driver joins this module's cluster (as under ``ray job submit``), saves 2 of 6 shards and is
    SIGKILLed; the cluster outlives it. The re-run encodes the other 4 shards only."""
    from distill.stages.encode import read_embeddings

    cfg, path = _stage_with_setup(_tree(assets, "driverkill", encoding={"actors": 1}), assets)
    once = cfg.run_dir / "held"
    env = _driver_env(DISTILL_FAULT="encode.shard@2:hold", DISTILL_FAULT_ONCE_FILE=str(once))
    with open(cfg.run_dir.parent / "driverkill.log", "wb") as log:
        proc = subprocess.Popen([sys.executable, "-m", "distill", "encode", str(path)], cwd=ROOT, env=env,
                                stdout=log, stderr=subprocess.STDOUT)
        try:
            deadline = time.time() + 180
            while not once.exists() and proc.poll() is None and time.time() < deadline:
                time.sleep(0.2)
            assert once.exists(), (cfg.run_dir.parent / "driverkill.log").read_text()[-3000:]
            assert int(once.read_text()) == proc.pid  # the driver itself holds, after saving its 2nd shard
            os.kill(proc.pid, signal.SIGKILL)
            assert proc.wait(30) == -signal.SIGKILL
        finally:
            if proc.poll() is None:
                proc.kill()
                proc.wait(30)
    partial = cfg.run_dir / ".embeddings.partial"
    assert len(list(partial.glob("shard-*.parquet"))) == 2
    assert not (cfg.run_dir / "embeddings").exists()
    assert "encode" not in json.loads((cfg.run_dir / "manifest.json").read_text())["stages"]

    capsys.readouterr()
    rd = run_pipeline(cfg, only=["encode"])
    assert "[encode] resuming: 2 of 6 shards already saved, encoding 4" in capsys.readouterr().out
    c = rd.manifest["stages"]["encode"]["counts"]
    assert c == {"docs": 120, "embeddings": 120, "dim": 32, "shards": 6, "shards_reused": 2, "shards_encoded": 4}
    # the same output as an uninterrupted encoding of every document
    ids, texts = _corpus(assets)
    got_ids, got = read_embeddings(cfg.run_dir / "embeddings")
    assert got_ids == ids and len(set(got_ids)) == 120
    np.testing.assert_allclose(got, DualEncoder.load(assets / "student").encode(texts), atol=1e-5)
    assert not partial.exists() and _leftovers(cfg.run_dir) == []


@pytest.mark.timeout(300)
def test_score_driver_killed_resumes_unfinished_shards_only(ray_session, assets, capsys):
    """Teacher scoring, as encoding: the driver saves 2 of 5 score shards and is SIGKILLed; the re-run
    scores the other 3 only, and the scores equal the teacher's q . d for every candidate."""
    import math

    tree = _tree(assets, "scorekill", mining={"sources": ["bm25"], "depth": 6}, scoring={"actors": 1})
    cfg = build_config(tree)
    run_pipeline(cfg, only=["mine"])
    cands = pq.read_table(cfg.run_dir / "candidates" / "candidates.parquet").to_pandas()
    tree["scoring"]["shard_rows"] = math.ceil(len(cands) / 5)
    cfg, path = _stage_with_setup(tree, assets, student=False)
    once = cfg.run_dir / "held"
    env = _driver_env(DISTILL_FAULT="score.shard@2:hold", DISTILL_FAULT_ONCE_FILE=str(once))
    with open(cfg.run_dir.parent / "scorekill.log", "wb") as log:
        proc = subprocess.Popen([sys.executable, "-m", "distill", "score", str(path)], cwd=ROOT, env=env,
                                stdout=log, stderr=subprocess.STDOUT)
        try:
            deadline = time.time() + 180
            while not once.exists() and proc.poll() is None and time.time() < deadline:
                time.sleep(0.2)
            assert once.exists(), (cfg.run_dir.parent / "scorekill.log").read_text()[-3000:]
            assert int(once.read_text()) == proc.pid
            os.kill(proc.pid, signal.SIGKILL)
            assert proc.wait(30) == -signal.SIGKILL
        finally:
            if proc.poll() is None:
                proc.kill()
                proc.wait(30)
    partial = cfg.run_dir / ".teacher.partial"
    assert len(list(partial.glob("shard-*.parquet"))) == 2
    assert not (cfg.run_dir / "teacher").exists()
    assert "score" not in json.loads((cfg.run_dir / "manifest.json").read_text())["stages"]

    capsys.readouterr()
    rd = run_pipeline(cfg, only=["score"])
    assert "[score] resuming: 2 of 5 shards already saved, scoring 3" in capsys.readouterr().out
    c = rd.manifest["stages"]["score"]["counts"]
    assert c == {"pairs_in": len(cands), "pairs_out": len(cands), "queries": cands["qid"].nunique(),
                 "shards": 5, "shards_reused": 2, "shards_scored": 3}
    scored = pq.read_table(cfg.run_dir / "teacher" / "scores.parquet").to_pandas()
    assert list(zip(scored["qid"], scored["docid"])) == list(zip(cands["qid"], cands["docid"]))  # candidate order
    assert (scored["label"].to_numpy() == cands["label"].to_numpy()).all()
    teacher = DualEncoder(str(assets / "bert"), max_length=32)
    queries, (ids, texts) = _queries(assets), _corpus(assets)
    text = dict(zip(ids, texts))
    expect = (teacher.encode([queries[q] for q in scored["qid"]]) * teacher.encode([text[d] for d in scored["docid"]])).sum(1)
    np.testing.assert_allclose(scored["teacher_score"].to_numpy(), expect, atol=1e-4)
    assert not partial.exists() and _leftovers(cfg.run_dir) == []


# ---- 4. disk full ------------------------------------------------------------------------------------------
FSIZE_SCRIPT = """
import resource, signal, sys
from distill.cli import main
from distill.config import load_config
from distill.raycluster import ensure_ray
ensure_ray(load_config(sys.argv[1]).ray)  # join the cluster before the limit (a local one's logs would grow)
signal.signal(signal.SIGXFSZ, signal.SIG_IGN)  # a write past the limit then fails with EFBIG
resource.setrlimit(resource.RLIMIT_FSIZE, (int(sys.argv[2]), resource.RLIM_INFINITY))
sys.exit(main(["encode", sys.argv[1]]))
"""


@pytest.mark.timeout(300)
def test_encode_disk_full_fails_clearly_and_leaves_nothing_half_written(ray_session, assets):
    from distill.stages.encode import embeddings_table, read_embeddings

    # shards of 100 and 20 rows: ~19 and ~4.3 KB; the manifest ~5 KB; no file may pass 16 KiB
    cfg, path = _stage_with_setup(_tree(assets, "diskfull", encoding={"shard_rows": 100, "actors": 1}), assets)
    ids, texts = _corpus(assets)
    partial = cfg.run_dir / ".embeddings.partial"
    partial.mkdir()  # left by a run with another config: a shard 0 of zeros, which must not be taken
    (partial / "meta.json").write_text(json.dumps({"key": "another-config"}))
    pq.write_table(embeddings_table(ids[:100], np.zeros((100, 32), np.float32)), partial / "shard-00000.parquet")
    r = subprocess.run([sys.executable, "-c", FSIZE_SCRIPT, str(path), str(16 * 1024)], cwd=ROOT, env=_driver_env(),
                       capture_output=True, text=True, timeout=240)
    assert r.returncode == 2, r.stderr[-3000:]
    err = [x for x in r.stderr.splitlines() if x.startswith("error: ")]
    assert len(err) == 1 and err[0].startswith(f"error: cannot write {partial}/shard-0000"), r.stderr[-3000:]
    assert "File too large" in err[0]
    assert "encode" not in json.loads((cfg.run_dir / "manifest.json").read_text())["stages"]
    assert not (cfg.run_dir / "embeddings").exists() and _leftovers(cfg.run_dir) == []
    saved = sorted(partial.glob("shard-*.parquet"))
    for p in saved:  # whatever was saved is whole; only the 20-row shard fits (the stale shard 0 is gone)
        assert p.name == "shard-00001.parquet" and pq.read_table(p).column("docid").to_pylist() == ids[100:]
    # space again: a later run finishes, keeping what was saved
    c = run_pipeline(cfg, only=["encode"]).manifest["stages"]["encode"]["counts"]
    assert c["embeddings"] == 120 and c["shards_reused"] == len(saved) and c["shards_encoded"] == 2 - len(saved)
    got_ids, got = read_embeddings(cfg.run_dir / "embeddings")
    assert got_ids == ids
    np.testing.assert_allclose(got, DualEncoder.load(assets / "student").encode(texts), atol=1e-5)
    assert not partial.exists() and _leftovers(cfg.run_dir) == []

