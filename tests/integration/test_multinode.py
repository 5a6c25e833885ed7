"""A worker node lost mid-stage, on a real multi-node Ray cluster on one machine (``ray.cluster_utils.Cluster``,
as Ray's own tests do): a head node that runs no task (0 CPUs, it holds the driver and the GCS) and worker
nodes of 1 CPU each, so the stage's actors or training workers are spread over nodes that can be lost.

- scoring: the node of the actor that holds a batch is removed (its raylet, object store and every process
  on it go at once, as when a machine dies); a replacement node joins; the stage returns exactly its input
  pairs, once each, each with its own teacher score;
- encoding: the same, for the corpus encoder's actors;
- training: the node of the rank-0 worker is removed after the step-2 checkpoint; Ray Train restarts the
  worker group on the nodes left plus a replacement, from the last checkpoint, within the same ``fit``.

A node is found from the pid of a process on it (its raylet is that process's ancestor). The fault points of
distill/faults.py stop an actor at a known batch (``hold``), so no test races the code it interrupts.
"""

import json
import threading
import time
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
import ray

from distill.config import build_config
from distill.models import DualEncoder
from distill.pipeline import load_data
from builders import make_beir, make_tiny_bert

pytestmark = [pytest.mark.ray, pytest.mark.slow]
ENV = {"HF_HUB_OFFLINE": "1", "TOKENIZERS_PARALLELISM": "false"}
NODE = {"num_cpus": 1, "object_store_memory": 150 * 1024 * 1024}


@pytest.fixture(scope="module")
def cluster():
    from ray.cluster_utils import Cluster

    if ray.is_initialized():
        ray.shutdown()
    c = Cluster(initialize_head=True, head_node_args={"num_cpus": 0, "object_store_memory": 150 * 1024 * 1024,
                                                     "include_dashboard": False})
    for _ in range(2):
        c.add_node(**NODE)
    c.wait_for_nodes()
    ray.init(address=c.address, runtime_env={"env_vars": ENV})
    yield c
    ray.shutdown()
    c.shutdown()


@pytest.fixture(scope="module")
def assets(tmp_path_factory):
    root = tmp_path_factory.mktemp("multinode")
    info = make_beir(root / "data", topics=12, docs_per_topic=10, train_queries=40, test_queries=10)
    make_tiny_bert(root / "bert", info["vocab"], hidden=32, layers=2)
    DualEncoder(str(root / "bert"), max_length=32).save(root / "student")
    return root


def _tree(root, name):
    return {
        "name": name, "runs_dir": str(root / "runs"),
        "data": {"dir": str(root / "data")},
        "teacher": {"kind": "dual-encoder", "model": str(root / "bert"), "finetune": False, "max_length": 32},
        "student": {"model": str(root / "bert"), "max_length": 32},
        "scoring": {"actors": 2, "batch_size": 16, "precision": "fp32"},
        "training": {"backend": "deepspeed", "zero_stage": 2, "num_workers": 2, "cpus_per_worker": 1,
                     "max_steps": 6, "queries_per_batch": 4, "group_size": 4, "learning_rate": 1e-3,
                     "checkpoint_every": 2, "max_failures": 1, "losses": {"kl": 1.0}},
        "encoding": {"actors": 2, "batch_size": 8, "precision": "fp32"},
        "ray": {"num_cpus": 2, "actor_cpus": 1},
    }


def _texts(root):
    rows = [json.loads(x) for x in (root / "data" / "corpus.jsonl").read_text().splitlines()]
    queries = {r["_id"]: r["text"] for r in map(json.loads, (root / "data" / "queries.jsonl").read_text().splitlines())}
    return [r["_id"] for r in rows], [f"{r['title']}. {r['text']}" for r in rows], queries


def node_of(cluster, pid: int):
    """The cluster node whose raylet is an ancestor of process ``pid``."""
    import psutil

    ancestors = {p.pid for p in psutil.Process(pid).parents()}
    for node in cluster.worker_nodes:
        if node.all_processes["raylet"][0].process.pid in ancestors:
            return node
    raise AssertionError(f"process {pid} is on no worker node")


def run_losing_a_node(cluster, stage, ready, pid_of, timeout: float = 400):
    """Run ``stage()`` on a thread; here (Ray's node start-up needs the main thread) wait until ``ready()``,
    remove the node of process ``pid_of()`` at once (no graceful drain: its raylet and every worker on it
    are killed), add a replacement node, and return (the stage's result, the lost node's id)."""
    result: dict = {}

    def target():
        try:
            result["value"] = stage()
        except BaseException as err:  # re-raised below, on the test's thread
            result["error"] = err

    t = threading.Thread(target=target, daemon=True)
    t.start()
    deadline = time.time() + timeout
    while not ready() and t.is_alive() and time.time() < deadline:
        time.sleep(0.2)
    assert ready(), "the stage never reached the point where the node is to be lost"
    node = node_of(cluster, pid_of())
    cluster.remove_node(node, allow_graceful=False)
    cluster.add_node(**NODE)
    t.join(timeout)
    assert not t.is_alive(), "the stage did not finish after the node was lost"
    if "error" in result:
        raise result["error"]
    return result["value"], node.node_id


def _alive_nodes() -> set[str]:
    return {n["NodeID"] for n in ray.nodes() if n["Alive"]}


def _node_gone(node_id: str, timeout: float = 90) -> bool:
    """Whether the GCS marks ``node_id`` dead within ``timeout`` s (it does once it misses the node's
    heartbeats: a stage whose batch was retried at once can finish before that)."""
    deadline = time.time() + timeout
    while node_id in _alive_nodes() and time.time() < deadline:
        time.sleep(0.5)
    return node_id not in _alive_nodes()


def _wait_cluster_idle(timeout: float) -> None:
    """Wait until the cluster has two live worker nodes and both their CPUs free, or fail naming what holds
    them. A node removed by a test stays "alive" until the GCS misses its heartbeats."""
    deadline = time.time() + timeout
    while time.time() < deadline:
        alive = [n for n in ray.nodes() if n["Alive"] and n["Resources"].get("CPU")]
        if len(alive) == 2 and ray.available_resources().get("CPU", 0) == 2:
            return
        time.sleep(0.5)
    held = [(a["ActorClassName"], a["Address"]["NodeID"][:8], a.get("NumRestarts"))
            for a in ray._private.state.actors().values() if a["State"] != "DEAD"]
    raise AssertionError(f"cluster not idle after {timeout:.0f} s: {len(alive)} live worker nodes, "
                         f"{ray.available_resources().get('CPU', 0)} CPUs free; actors alive: {held}")


@pytest.fixture
def idle(cluster):
    """The cluster as every test expects to find it (see :func:`_wait_cluster_idle`)."""
    _wait_cluster_idle(120)
    return cluster


@pytest.mark.timeout(420)
def test_score_node_lost_mid_batch_no_pair_lost_or_duplicated(idle, assets, tmp_path, monkeypatch):
    from distill.stages.score import score_pairs

    ids, texts, queries = _texts(assets)
    text_of = dict(zip(ids, texts))
    rng = np.random.default_rng(0)
    pairs = pd.DataFrame([(q, d) for q in sorted(queries)[:40] for d in rng.choice(ids, 6, replace=False)],
                         columns=["qid", "docid"])
    cfg = build_config(_tree(assets, "score"))
    once = tmp_path / "held"
    monkeypatch.setenv("DISTILL_FAULT", "score.batch@2:hold")  # an actor stops inside its 2nd batch, once
    monkeypatch.setenv("DISTILL_FAULT_ONCE_FILE", str(once))
    out, lost = run_losing_a_node(
        idle, lambda: score_pairs(pairs, queries, text_of.__getitem__, str(assets / "bert"), cfg.teacher,
                                     cfg.scoring, cfg.ray),
        once.exists, lambda: int(once.read_text()))
    assert _node_gone(lost)  # the node did go, mid-stage
    assert len(out) == len(pairs) == 240
    assert not out.duplicated(["qid", "docid"]).any()
    assert list(zip(out["qid"], out["docid"])) == list(zip(pairs["qid"], pairs["docid"]))
    enc = DualEncoder(str(assets / "bert"), max_length=32)
    want = (enc.encode([queries[q] for q in pairs["qid"]]) * enc.encode([text_of[d] for d in pairs["docid"]])).sum(-1)
    np.testing.assert_allclose(out["teacher_score"].to_numpy(), want, atol=1e-5)
    _wait_cluster_idle(60)  # no actor of a failed pool (Ray restarts the lost one elsewhere) outlives the stage


@pytest.mark.timeout(420)
def test_encode_node_lost_mid_batch_no_row_lost_or_duplicated(idle, assets, tmp_path, monkeypatch):
    from distill.stages.encode import encode_texts

    ids, texts, _ = _texts(assets)
    cfg = build_config(_tree(assets, "encode"))
    once = tmp_path / "held"
    monkeypatch.setenv("DISTILL_FAULT", "encode.batch@2:hold")
    monkeypatch.setenv("DISTILL_FAULT_ONCE_FILE", str(once))
    emb, lost = run_losing_a_node(
        idle, lambda: encode_texts(ids, texts, str(assets / "student"), cfg.ray, batch_size=8, actors=2),
        once.exists, lambda: int(once.read_text()))
    assert _node_gone(lost)
    assert emb.shape == (120, 32)  # every document once, in input order, each its own embedding
    np.testing.assert_allclose(emb, DualEncoder.load(assets / "student").encode(texts), atol=1e-5)
    _wait_cluster_idle(60)


@pytest.mark.timeout(600)
def test_train_node_lost_resumes_from_last_checkpoint(idle, assets, tmp_path):
    from distill.manifest import RunDir
    from distill.stages import train

    cfg = build_config(_tree(assets, "trainloss"))
    rd = RunDir(cfg)
    data = load_data(rd)
    rng = np.random.default_rng(0)
    rows = []  # scores as the score stage leaves them: each train query's positive and 5 negatives
    for qid, rel in sorted(data.qrels["train"].items()):
        pos = next(iter(rel))
        rows += [(qid, pos, 1, 3.0)] + [(qid, d, 0, float(rng.normal())) for d in
                                         rng.choice([d for d in data.corpus if d != pos], 5, replace=False)]
    rd.stage_path("score").mkdir(parents=True)
    pq.write_table(pa.Table.from_pandas(pd.DataFrame(rows, columns=["qid", "docid", "label", "teacher_score"]),
                                        preserve_index=False), rd.stage_path("score") / "scores.parquet")
    checkpoints = rd.path / "train_work" / "checkpoints"

    def step2_saved() -> bool:
        return any(json.loads(f.read_text()).get("step", 0) >= 2 for f in checkpoints.rglob(train.STATE_FILE))

    def a_worker_pid() -> int:  # either rank: losing one worker of the group restarts the whole group
        return next(a["Pid"] for a in ray._private.state.actors().values()
                    if "RayTrainWorker" in a["ActorClassName"] and a["State"] == "ALIVE")

    counts, lost = run_losing_a_node(idle, lambda: train.run(rd, data), step2_saved, a_worker_pid)
    assert _node_gone(lost)
    entry = rd.manifest["stages"]["train"]
    starts = entry["worker_starts"]
    assert starts[0] == 0 and len(starts) == 2 and starts[1] in (2, 4)  # restarted once, from a checkpoint
    assert counts["steps"] == 6 and entry["final_metrics"]["step"] == 6
    latest = train.latest_checkpoint(checkpoints)
    assert latest and json.loads((Path(latest) / train.STATE_FILE).read_text())["step"] == 6
    emb = DualEncoder.load(rd.stage_path("train")).encode(["a query", "another one"])
    assert emb.shape == (2, 32) and np.isfinite(emb).all()
