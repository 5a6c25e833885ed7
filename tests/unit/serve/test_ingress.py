"""Which HTTP path serves, without Ray: direct ingress (the ingress replica serves HTTP itself) is the default
where ``python -m serve`` / serve.app.deploy start the local Ray; ``--proxy`` (direct_ingress=False) keeps
Serve's proxy; joining a cluster (RAY_ADDRESS), a Ray already started without direct_ingress_env(port), or
several ingress replicas fall back to the proxy and say so. ray.init and serve.start are replaced by recorders
here; the real paths run in tests/integration/test_serve_overload_http.py and test_serve.py (direct ingress)."""

from __future__ import annotations

import logging
import os

import pytest

DIRECT_KEYS = ("RAY_SERVE_ENABLE_DIRECT_INGRESS", "RAY_SERVE_DIRECT_INGRESS_MIN_HTTP_PORT",
               "RAY_SERVE_DIRECT_INGRESS_MAX_HTTP_PORT", "RAY_SERVE_DIRECT_INGRESS_MIN_DRAINING_PERIOD_S",
               "RAY_SERVE_PORT_QUARANTINE_S")


def test_choose_ingress():
    from serve.app import choose_ingress, direct_ingress_env

    assert choose_ingress(None, 8000, ray_started=False, environ={}) == (True, None)
    assert choose_ingress(None, 8000, ray_started=False, environ={"RAY_ADDRESS": "local"}) == (True, None)
    assert choose_ingress(False, 8000, ray_started=False, environ={}) == (False, None)
    direct, why = choose_ingress(None, 8000, ray_started=False, environ={"RAY_ADDRESS": "10.0.0.1:6379"})
    assert not direct and "RAY_ADDRESS=10.0.0.1:6379" in why
    with pytest.raises(ValueError, match="RAY_ADDRESS"):
        choose_ingress(True, 8000, ray_started=False, environ={"RAY_ADDRESS": "10.0.0.1:6379"})
    # Ray already up in this process: direct only if it was started with direct_ingress_env(port).
    assert choose_ingress(None, 8000, ray_started=True, environ=direct_ingress_env(8000)) == (True, None)
    direct, why = choose_ingress(None, 8001, ray_started=True, environ=direct_ingress_env(8000))
    assert not direct and "direct_ingress_env(8001)" in why
    assert not choose_ingress(None, 8000, ray_started=True, environ={})[0]
    direct, why = choose_ingress(None, 8000, ingress_replicas=2, ray_started=False, environ={})
    assert not direct and "2 ingress replicas" in why


@pytest.fixture
def fake_ray(monkeypatch):
    """ray.init / serve.start / shutdown recorded instead of run; env changes undone."""
    import ray
    from ray import serve as rs

    calls: dict = {"init": [], "start": [], "env_at_init": []}
    monkeypatch.setattr(ray, "is_initialized", lambda: False)
    monkeypatch.setattr(ray, "init", lambda **kw: (calls["init"].append(kw), calls["env_at_init"].append(
        {k: os.environ.get(k) for k in DIRECT_KEYS}))[0])
    monkeypatch.setattr(rs, "start", lambda **kw: calls["start"].append(kw))
    from serve.app import FAST_PATH_ENV

    monkeypatch.delenv("RAY_ADDRESS", raising=False)
    for k in DIRECT_KEYS:
        monkeypatch.delenv(k, raising=False)
    for k, v in FAST_PATH_ENV.items():
        monkeypatch.setenv(k, v)  # start_serve sets them; monkeypatch puts back what was there
    yield calls


def test_start_serve_defaults_to_direct_ingress_and_restores_the_env(fake_ray):
    from serve.app import direct_ingress_env, shutdown, start_serve

    assert start_serve(port=18123) is True
    assert fake_ray["env_at_init"][-1] == direct_ingress_env(18123)  # set before Ray starts: Serve reads it then
    proxy = fake_ray["start"][-1]["http_options"]
    assert proxy["port"] != 18123 and proxy["request_timeout_s"] == 12.0  # the proxy moved off the port
    shutdown()
    assert all(k not in os.environ for k in DIRECT_KEYS)


def test_start_serve_proxy_opt_out_and_cluster_fallback(fake_ray, monkeypatch, caplog):
    from serve.app import shutdown, start_serve

    assert start_serve(port=18124, direct_ingress=False) is False
    assert fake_ray["env_at_init"][-1]["RAY_SERVE_ENABLE_DIRECT_INGRESS"] == "0"
    assert fake_ray["start"][-1]["http_options"]["port"] == 18124
    shutdown()
    monkeypatch.setenv("RAY_ADDRESS", "10.0.0.1:6379")
    with caplog.at_level(logging.WARNING, logger="serve.app"):
        assert start_serve(port=18124) is False
    assert fake_ray["init"][-1]["address"] == "10.0.0.1:6379"
    assert fake_ray["start"][-1]["http_options"]["port"] == 18124
    assert "not direct ingress: joining the Ray cluster at RAY_ADDRESS" in caplog.text
    shutdown()


def test_deploy_deletes_first_when_the_ingress_would_move(fake_ray, monkeypatch, tmp_path):
    """Under direct ingress a replaced ingress replica would take the next port while the old one drains: a
    redeploy whose ingress arguments changed deletes the application first; a run-dir swap (same ingress
    arguments) rolls over without it."""
    from ray import serve as rs

    from serve.app import deploy, shutdown
    from serve.testing import make_serve_run

    run1 = make_serve_run(tmp_path / "run1", version="v1", seed=0)["run_dir"]
    run2 = make_serve_run(tmp_path / "run2", version="v2", seed=1)["run_dir"]
    calls, versions = [], []
    monkeypatch.setattr(rs, "run", lambda app, **kw: (calls.append("run"),
                                                     versions.append(app._bound_deployment.version)))
    monkeypatch.setattr(rs, "delete", lambda name, **kw: calls.append(f"delete {name}"))
    deploy(run1, port=18125)
    deploy(run2, port=18125)  # a swap: the ingress stays (same code version; Serve would give it a random one)
    assert calls == ["run", "run"] and versions[0] == versions[1] is not None
    deploy(run2, port=18125, max_inflight_requests=1)  # the ingress's limits change
    assert calls[2:] == ["delete distill", "run"] and versions[2] != versions[1]
    shutdown()


def test_python_m_serve_ingress_flags():
    from serve.__main__ import parse_args

    assert parse_args(["runs/demo"]).direct_ingress is None  # default: direct where it can work
    assert parse_args(["runs/demo", "--proxy"]).direct_ingress is False
    assert parse_args(["runs/demo", "--direct-ingress"]).direct_ingress is True
    with pytest.raises(SystemExit):
        parse_args(["runs/demo", "--proxy", "--direct-ingress"])


def _main_deploys(monkeypatch, tmp_path, argv, environ=None) -> dict:
    """What ``python -m serve`` hands serve.app.deploy (deploy recorded, then Ctrl-C)."""
    import serve.app
    from serve.__main__ import main
    from serve.testing import make_serve_run

    run = make_serve_run(tmp_path / "run", version="v1", seed=0)["run_dir"]
    seen: dict = {}

    def fake_deploy(run_dir, **kw):
        seen.update(kw)
        raise KeyboardInterrupt

    monkeypatch.setattr(serve.app, "deploy", fake_deploy)
    monkeypatch.setattr(serve.app, "shutdown", lambda: None)
    monkeypatch.setattr("ray.is_initialized", lambda: False)
    monkeypatch.delenv("RAY_ADDRESS", raising=False)
    monkeypatch.delenv("DISTILL_SERVE_TOKEN", raising=False)
    for k, v in (environ or {}).items():
        monkeypatch.setenv(k, v)
    assert main([str(run), *argv]) == 0
    return seen


def test_python_m_serve_deploys_direct_ingress_with_fast_autoscaling_and_auto_precision(
        monkeypatch, tmp_path, capsys):
    kw = _main_deploys(monkeypatch, tmp_path, [])
    assert kw["direct_ingress"] is True and kw["precision"] == "auto"
    assert (kw["autoscaling_look_back_period_s"], kw["autoscaling_metrics_interval_s"], kw["upscale_delay_s"]) == (
        5.0, 1.0, 3.0)
    assert kw["retriever_target_ongoing_requests"] == 1.5
    assert _main_deploys(monkeypatch, tmp_path, ["--proxy"])["direct_ingress"] is False
    capsys.readouterr()
    kw = _main_deploys(monkeypatch, tmp_path, [], {"RAY_ADDRESS": "10.0.0.1:6379"})
    assert kw["direct_ingress"] is False
    assert "note: serving through Serve's HTTP proxy, not direct ingress: joining" in capsys.readouterr().err
