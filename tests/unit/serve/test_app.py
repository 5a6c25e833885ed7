"""serve/app.py without Ray: configs/serve.yaml validates as build_app's arguments, build_app checks the run
directory and sets the Serve options (queue bounds, backpressure, autoscaling), and readiness follows
Serve's status (NotReady through /readyz: test_overload.py)."""

from __future__ import annotations

from pathlib import Path
from types import SimpleNamespace

import pytest
import yaml

from serve.api import Limits
from serve.core import ServeSetupError

ROOT = Path(__file__).resolve().parents[3]


def test_serve_yaml_is_valid_for_build_app():
    from serve.app import AppArgs

    cfg = yaml.safe_load((ROOT / "configs" / "serve.yaml").read_text())
    assert cfg["http_options"]["host"] == "127.0.0.1"
    apps = cfg["applications"]
    assert apps and all(a["import_path"] == "serve.app:build_app" for a in apps)
    for a in apps:
        AppArgs.model_validate(a["args"])
        for d in a.get("deployments", []):
            auto = d.get("autoscaling_config")
            if auto:
                assert (
                    1 <= auto["min_replicas"] <= auto["max_replicas"] and auto["target_ongoing_requests"] > 0
                )


def test_build_app_checks_the_run_dir(tiny_run, tmp_path):
    import shutil

    from serve.app import build_app
    from serve.testing import make_serve_run

    with pytest.raises(ServeSetupError):
        build_app({"run_dir": str(tmp_path / "missing")})
    with pytest.raises(ValueError):
        build_app({"run_dir": str(tiny_run["run_dir"]), "no_such_arg": 1})
    run = make_serve_run(tmp_path / "nodocs", with_docs=False)["run_dir"]  # an index built without the corpus
    with pytest.raises(ServeSetupError, match="docs.parquet"):
        build_app({"run_dir": str(run), "rerank": True})
    build_app({"run_dir": str(run)})  # binds (no Ray needed) without the reranker
    lost = tmp_path / "lost"
    shutil.copytree(tiny_run["run_dir"], lost)
    (lost / "index" / "docs.parquet").unlink()  # recorded by its stage, then lost: refused, named
    with pytest.raises(ServeSetupError, match="docs.parquet is missing"):
        build_app({"run_dir": str(lost)})


def _dep(status, running=1, message=""):
    return SimpleNamespace(status=status, replica_states={"RUNNING": running} if running else {}, message=message)


def _app(status="RUNNING", **deps):
    return SimpleNamespace(status=status, message="", deployments=deps)


def test_readiness_from_status():
    from serve.app import NotReady, readiness_from_status

    ok = _app(SearchIngress=_dep("HEALTHY"), Retriever=_dep("UPSCALING", 2), Reranker=_dep("HEALTHY"))
    assert readiness_from_status(ok, ("Retriever", "Reranker")) == {"SearchIngress": 1, "Retriever": 2,
                                                                    "Reranker": 1}
    # A swap or an autoscaling step with replicas running is ready.
    assert readiness_from_status(_app("DEPLOYING", Retriever=_dep("UPDATING", 1)))["Retriever"] == 1
    # A replica that cannot start: the deployment is UNHEALTHY (Serve retries it) -> not ready, even with
    # another replica running.
    with pytest.raises(NotReady, match="Retriever is UNHEALTHY: replica failed to start") as err:
        readiness_from_status(_app("UNHEALTHY", Retriever=_dep("UNHEALTHY", 1, "replica failed to start")))
    assert err.value.replicas == {"Retriever": 1}
    with pytest.raises(NotReady, match="DEPLOY_FAILED"):
        readiness_from_status(_app("DEPLOY_FAILED", Retriever=_dep("DEPLOY_FAILED", 0)))
    with pytest.raises(NotReady, match="no running replica of Reranker"):
        readiness_from_status(_app(Retriever=_dep("HEALTHY"), Reranker=_dep("UPDATING", 0)), ("Retriever", "Reranker"))
    with pytest.raises(NotReady, match="not found"):
        readiness_from_status(None)


def test_build_app_sets_queue_bounds_timeouts_and_autoscaling(tmp_path):
    from serve.app import AppArgs, build_app
    from serve.testing import make_serve_run

    run = make_serve_run(tmp_path / "run", version="v1", seed=0)["run_dir"]

    def configs(app):
        out, todo = {}, [app]
        while todo:
            d = todo.pop()._bound_deployment
            out[d.name] = d._deployment_config
            todo += [a for a in d.init_args if hasattr(a, "_bound_deployment")]
        return out

    cfg = configs(build_app({"run_dir": str(run), "rerank": True}))
    assert set(cfg) == {"SearchIngress", "Retriever", "Reranker"}
    for name, c in cfg.items():
        assert c.max_queued_requests >= 1, name
        assert c.backpressure_config.status_code == 503 and c.backpressure_config.retry_after_s == 1
    for name in ("Retriever", "Reranker"):
        auto = cfg[name].autoscaling_config
        assert auto is not None and (auto.min_replicas, auto.max_replicas) == (1, 2), name
        # Serve's defaults (push every 10 s, average over 30 s) took the scale-up past 30 s (issue 18)
        assert (auto.metrics_interval_s, auto.look_back_period_s, auto.upscale_delay_s) == (1.0, 5.0, 3.0), name
    fixed = configs(build_app({"run_dir": str(run), "retriever_replicas": 3, "upscale_delay_s": 1,
                               "retriever_max_replicas": 4}))
    assert fixed["Retriever"].autoscaling_config is None and fixed["Retriever"].num_replicas == 3
    with pytest.raises(ValueError, match="retriever_min_replicas"):
        AppArgs(run_dir=str(run), retriever_min_replicas=3, retriever_max_replicas=2)
    a = AppArgs(run_dir=str(run), request_timeout_s=4, max_queued_requests=0)
    assert Limits(**a.limits()).request_timeout_s == 4
    # Held refusals count against Serve's own bound on the ingress: it must leave room for them.
    assert cfg["SearchIngress"].max_ongoing_requests >= 32 + 512 + 1024
    assert (Limits(**a.limits()).shed_hold_s, Limits(**a.limits()).max_held) == (1.0, 1024)
    with pytest.raises(ValueError, match="ingress_max_ongoing_requests"):
        AppArgs(run_dir=str(run), ingress_max_ongoing_requests=256)
    assert AppArgs(run_dir=str(run), ingress_max_ongoing_requests=256, max_queued_requests=64,
                   max_held_requests=100).max_held_requests == 100


def test_custom_resources_place_each_deployment(tmp_path):
    from serve.app import build_app
    from serve.testing import make_serve_run

    run = make_serve_run(tmp_path / "run", version="v1", seed=0)["run_dir"]
    ingress = build_app({"run_dir": str(run), "rerank": True, "retriever_resources": {"gpu_node": 1},
                         "reranker_resources": {"big_node": 0.5}, "ingress_resources": {"head": 0.01}})
    ingress = ingress._bound_deployment
    retriever, reranker = (a._bound_deployment for a in ingress.init_args[:2])
    assert ingress.ray_actor_options["resources"] == {"head": 0.01}
    assert retriever.ray_actor_options["resources"] == {"gpu_node": 1}
    assert reranker.ray_actor_options["resources"] == {"big_node": 0.5}
    plain = build_app({"run_dir": str(run)})._bound_deployment
    assert "resources" not in plain.ray_actor_options
    assert "resources" not in plain.init_args[0]._bound_deployment.ray_actor_options



def test_serve_yaml_autoscaling_matches_the_python_m_serve_defaults():
    """``serve run configs/serve.yaml`` scales as fast as ``python -m serve`` (its deployments' autoscaling_config
    replaces the one build_app sets)."""
    from serve.__main__ import parse_args
    from serve.app import AppArgs

    a, cli = AppArgs(run_dir="x"), parse_args(["x"])
    cfg = yaml.safe_load((ROOT / "configs" / "serve.yaml").read_text())
    for d in cfg["applications"][0]["deployments"]:
        auto = d.get("autoscaling_config")
        if auto:
            assert auto["metrics_interval_s"] == a.autoscaling_metrics_interval_s == cli.metrics_interval_s
            assert auto["look_back_period_s"] == a.autoscaling_look_back_period_s == cli.look_back_period_s
            assert auto["upscale_delay_s"] == a.upscale_delay_s == cli.upscale_delay_s
            if d["name"] == "Retriever":
                assert auto["target_ongoing_requests"] == a.retriever_target_ongoing_requests == \
                    cli.retriever_target_ongoing == 1.5
            assert auto["look_back_period_s"] > auto["metrics_interval_s"]  # Serve warns otherwise


def test_replicas_encode_queries_at_precision_auto_by_default(tmp_path):
    """The default deployment hands its replicas precision ``auto``, which is bf16 on a CPU with native bf16
    (AMX / AVX512-BF16) and fp32 elsewhere (the encodings themselves: tests/unit/test_precision.py)."""
    from distill import precision as P
    from serve.app import build_app
    from serve.testing import make_serve_run

    run = make_serve_run(tmp_path / "run", version="v1", seed=0)["run_dir"]
    ingress = build_app({"run_dir": str(run), "rerank": True})._bound_deployment
    retriever, reranker = (a._bound_deployment for a in ingress.init_args[:2])
    assert retriever.init_args[-1] == "auto" and reranker.init_args[-1] == "auto"
    assert P.resolve("auto", flags={"avx2", "avx512f", "amx_bf16"}) == "bf16"
    assert P.resolve("auto", flags={"avx2", "fma"}) == "fp32"
