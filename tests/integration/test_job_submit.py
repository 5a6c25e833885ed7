"""`ray job submit --working-dir . -- python -m distill run ...` against a `ray start --head` cluster."""

import json
import os
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest
import ray

from builders import make_beir, make_bow_encoder, make_tiny_bert

pytestmark = pytest.mark.ray
ray.cloudpickle.register_pickle_by_value(sys.modules[__name__])  # a train loop defined here travels by value
ROOT = Path(__file__).resolve().parents[2]


def _free_ports(n: int) -> list[str]:
    """``n`` distinct TCP ports free on this machine now (bound to port 0, then released)."""
    socks = [socket.socket() for _ in range(n)]
    try:
        for s in socks:
            s.bind(("127.0.0.1", 0))
        return [str(s.getsockname()[1]) for s in socks]
    finally:
        for s in socks:
            s.close()


def _ray(*args, env, timeout=180):
    ray_bin = Path(sys.executable).parent / "ray"
    return subprocess.run([str(ray_bin), *args], env=env, capture_output=True, text=True, timeout=timeout)


def _cli_env() -> dict:
    env = {**os.environ, "RAY_AUTH_MODE": "disabled", "HF_HUB_OFFLINE": "1",
           "PATH": f"{Path(sys.executable).parent}:{os.environ['PATH']}"}
    env.pop("RAY_ADDRESS", None)
    return env


def _start_head(env) -> tuple[str, str, str]:
    """``ray start --head`` on free ports: (GCS port, dashboard port, session name)."""
    # every port the head listens on is a free one: a fixed default (the dashboard agent's 52365, the client
    # server's 10001) held by another Ray on the machine leaves the job server without an agent, and every
    # submit is refused until the retries run out
    port, dash, agent, client = _free_ports(4)
    started = _ray("start", "--head", "--node-ip-address", "127.0.0.1", "--port", port, "--num-cpus", "2",
                   "--dashboard-host", "127.0.0.1", "--dashboard-port", dash, "--dashboard-agent-listen-port", agent,
                   "--ray-client-server-port", client, "--disable-usage-stats",
                   # no idle workers started ahead of use (each is a Python process that takes CPU from the job)
                   "--system-config", json.dumps({"prestart_worker_first_driver": False,
                                                  "enable_worker_prestart": False}), env=env)
    assert started.returncode == 0, started.stderr[-2000:]
    return port, dash, os.path.basename(os.path.realpath("/tmp/ray/session_latest"))


@pytest.mark.timeout(600)
def test_ray_job_submit_runs_the_pipeline(tmp_path):
    if ray.is_initialized():  # one Ray per process: the in-process cluster of other tests must go first
        ray.shutdown()
    info = make_beir(tmp_path / "data", topics=6, docs_per_topic=8, train_queries=24, test_queries=12)
    make_tiny_bert(tmp_path / "student", info["vocab"], hidden=32, layers=1)
    make_bow_encoder(tmp_path / "teacher", info["vocab"], hidden=64)
    config = tmp_path / "job.yaml"
    config.write_text(json.dumps({
        "name": "job", "runs_dir": str(tmp_path / "runs"), "data": {"dir": str(tmp_path / "data")},
        "teacher": {"kind": "dual-encoder", "model": str(tmp_path / "teacher"), "finetune": False, "max_length": 32},
        "student": {"model": str(tmp_path / "student"), "max_length": 32},
        "mining": {"sources": ["bm25"], "depth": 8},
        "scoring": {"actors": 1}, "encoding": {"actors": 1},
        "training": {"backend": "ddp", "num_workers": 1, "max_steps": 4, "queries_per_batch": 4, "group_size": 4},
        "evaluation": {"rerank_depth": 10, "speed_sample": 8},
    }))  # JSON is YAML
    env = _cli_env()
    port, dash, session = _start_head(env)
    try:
        submit = None
        for _ in range(30):  # the job server, then its job agent, come up a little after the head (later on
            submit = _ray("job", "submit", "--address", f"http://127.0.0.1:{dash}",  # a loaded machine)
                          "--working-dir", str(ROOT),
                          "--", "python", "-m", "distill", "run", str(config), env=env, timeout=500)
            if not any(m in submit.stderr for m in ("Connection refused", "Failed to connect",
                                                    "No available agent to submit job")):
                break
            time.sleep(2)
        out = submit.stdout + submit.stderr
        assert submit.returncode == 0, out[-4000:]
        assert "succeeded" in out
        # each training step's progress line reaches the job's log once (Ray Train's print patch doubled it)
        assert [out.count(f"[train] step {s}/4 ") for s in (1, 2, 3, 4)] == [1, 1, 1, 1], out[-4000:]
        report = json.loads((tmp_path / "runs" / "job" / "eval" / "report.json").read_text())
        assert report["queries"] == 12 and "student_distilled" in report["metrics"]
        manifest = json.loads((tmp_path / "runs" / "job" / "manifest.json").read_text())
        assert manifest["stages"]["train"]["counts"]["steps"] == 4
    finally:
        _stop_cluster(port, session)


def _stop_cluster(port: str, session: str) -> None:
    """Stop only the cluster this test started (``ray stop`` would kill every Ray on the machine)."""
    import psutil

    mine = [p for p in psutil.process_iter(["cmdline"])
            if any(f":{port}" in a or f"--gcs_server_port={port}" in a or session in a
                   for a in (p.info["cmdline"] or []))]
    for p in mine:
        try:
            p.terminate()
        except psutil.NoSuchProcess:
            pass
    _, alive = psutil.wait_procs(mine, timeout=15)
    for p in alive:
        p.kill()
    current = Path("/tmp/ray/ray_current_cluster")  # what `ray stop` would also clear
    if current.exists() and current.read_text().strip().endswith(f":{port}"):
        current.unlink()


def _train_until_told(config):
    """A training loop that says it has started and ends when the test tells it to (or after a minute)."""
    import time as _time

    Path(config["started"]).touch()
    deadline = _time.time() + 60
    while not Path(config["stop"]).exists() and _time.time() < deadline:
        _time.sleep(0.5)


@pytest.mark.timeout(300)
def test_local_training_survives_another_ray_cluster_started_beside_it(tmp_path, monkeypatch):
    """A `ray start` cluster started while a run's own local cluster trains (it becomes the machine's
    auto-detected cluster): the training ends well. Ray Train's PlacementGroupCleaner used to ask *that*
    cluster's State API whether the run's controller lived, hear no, and remove the live run's placement group,
    killing its workers (distill.raycluster)."""
    import threading

    from ray.train import ScalingConfig
    from ray.train.torch import TorchTrainer

    from distill.config import RayConfig
    from distill.raycluster import ensure_ray

    if ray.is_initialized():
        ray.shutdown()
    monkeypatch.delenv("RAY_ADDRESS", raising=False)
    started, stop = tmp_path / "started", tmp_path / "stop"
    head = None
    try:
        ensure_ray(RayConfig(num_cpus=2, object_store_memory=150 * 1024 * 1024))
        trainer = TorchTrainer(_train_until_told, train_loop_config={"started": str(started), "stop": str(stop)},
                               scaling_config=ScalingConfig(num_workers=1))
        outcome: dict = {}

        def run():
            try:
                outcome["result"] = trainer.fit()
            except Exception as e:  # noqa: BLE001 - the assertion below shows it
                outcome["error"] = repr(e)[-2000:]

        fit = threading.Thread(target=run, daemon=True)
        fit.start()
        deadline = time.time() + 120
        while not started.exists() and time.time() < deadline:
            time.sleep(0.5)
        assert started.exists(), "the training loop never started"
        head = _start_head(_cli_env())
        time.sleep(8)  # the cleaner polls once a second: several polls with the other cluster up
        stop.touch()
        fit.join(timeout=120)
        assert "result" in outcome and outcome["result"].error is None, outcome
    finally:
        stop.touch()
        ray.shutdown()
        if head:
            _stop_cluster(head[0], head[2])
