"""`ray job submit --working-dir . -- python -m distill run ...` against a `ray start --head` cluster."""

import json
import os
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest

from builders import make_beir, make_bow_encoder, make_tiny_bert

pytestmark = pytest.mark.ray
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


@pytest.mark.timeout(600)
def test_ray_job_submit_runs_the_pipeline(tmp_path):
    import ray

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
    env = {**os.environ, "RAY_AUTH_MODE": "disabled", "HF_HUB_OFFLINE": "1",
           "PATH": f"{Path(sys.executable).parent}:{os.environ['PATH']}"}
    env.pop("RAY_ADDRESS", None)
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
    session = os.path.basename(os.path.realpath("/tmp/ray/session_latest"))
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
