"""Checks that the cluster manifests still fit the code and the run configs, without a cluster.

    python -m cluster.check              # every YAML under cluster/ and configs/, and cluster/*.md
    python -m cluster.check --root DIR   # another checkout

Every check returns a list of problems (strings naming the file and the field); an empty list is a pass.
What would otherwise rot silently:

- a RayJob's entrypoint ``python -m distill run CONFIG key=value ...``: the module resolves, CONFIG exists
  and validates with those overrides;
- resources: every stage of that run fits the cluster at its maximum size. Stages run one after another,
  each asking for its bundles at once: training workers {CPU: cpus_per_worker, GPU: 1 if use_gpu}, Ray
  Data actors {CPU: actor_cpus, GPU: actor_gpus}; bundles are packed first-fit onto the nodes. A cluster
  that offers GPUs to a run that asks for none is reported too. The cluster launcher YAML is held to
  every GPU run config under configs/;
- shared storage: runs_dir and data.dir (and a RayService's run_dir) lie on a volume that every pod mounts
  (KubeRay) or that the launcher mounts on every node (for the run configs that cluster/ names);
- a Serve config (configs/serve.yaml; a RayService's serveConfigV2): Serve's schema, only known
  deployment options, import_path resolves to an attribute, each deployment name is a Serve deployment
  of that module, ``args`` validate with the module's ``AppArgs``; a cluster's copy (a RayService, or a
  Serve config under cluster/) equals configs/serve.yaml apart from ``args.run_dir``, its runtime_env and
  the HTTP options; binding beyond loopback needs the bearer-token variable in the pods;
- images (KubeRay): the project image built from ./Dockerfile (its BASE_IMAGE of Ray ``rayVersion``) or the
  official rayproject/ray image of that version with a runtime_env that pip-installs the project; no CPU
  image in a group that asks for GPUs;
- runtime_env: Ray's fields only, a working_dir that exists (a remote .zip for KubeRay), pip that installs
  the project from the uploaded copy, and env_vars that Ray can merge with what distill.raycluster adds;
- docs and manifests (cluster/*.md, every YAML above, comments included): every ``python -m X``,
  ``import_path``, ``configs/...``/``cluster/...`` path exists, and so does every flag that the docs show
  for a ``ray ...``/``serve ...`` command.
"""

from __future__ import annotations

import argparse
import copy
import importlib
import importlib.util
import logging
import re
import shlex
import sys
from dataclasses import dataclass
from pathlib import Path, PurePosixPath

import yaml

PROJECT = "ray-distill"
WORKING_DIR_VAR = "${RAY_RUNTIME_ENV_CREATE_WORKING_DIR}"
SHARED_VOLUME_KINDS = {"persistentVolumeClaim", "nfs", "csi", "cephfs", "glusterfs", "azureFile", "ephemeral"}
REMOTE_SCHEMES = ("https://", "http://", "s3://", "gs://", "gcs://", "azure://", "abfss://")


@dataclass(frozen=True)
class NodeType:
    """One kind of node and how many of it the cluster can have at most."""

    name: str
    resources: dict
    count: int


# ---- resources -----------------------------------------------------------------------------------------
def _fmt(bundle: dict) -> str:
    return "{" + ", ".join(f"{k}: {v:g}" for k, v in bundle.items() if v) + "}"


def pack(nodes: list[NodeType], bundles: list[dict]) -> int:
    """How many of ``bundles`` fit at once on ``nodes`` (each at its maximum count), first-fit decreasing."""
    free = [dict(n.resources) for n in nodes for _ in range(max(0, n.count))]
    placed = 0
    for b in sorted(bundles, key=lambda b: (-b.get("GPU", 0), -b.get("CPU", 0))):
        for f in free:
            if all(f.get(k, 0.0) + 1e-9 >= v for k, v in b.items() if v > 0):
                for k, v in b.items():
                    if v > 0:
                        f[k] = f.get(k, 0.0) - v
                placed += 1
                break
    return placed


def stage_bundles(cfg) -> dict[str, list[dict]]:
    """Resource bundles each configured stage asks for at once (stages run one after another)."""
    t, r = cfg.training, cfg.ray
    worker = {"CPU": float(t.cpus_per_worker), "GPU": 1.0 if t.use_gpu else 0.0}
    actor = {"CPU": float(r.actor_cpus), "GPU": float(r.actor_gpus)}
    wanted = {
        "mine": [actor] * cfg.encoding.actors,
        "score": [actor] * cfg.scoring.actors,
        "train": [worker] * t.num_workers,
        "encode": [actor] * cfg.encoding.actors,
        "evaluate": [actor] * cfg.scoring.actors,  # the teacher reranks on the scoring actor pool
    }
    if cfg.teacher.finetunes:  # what stages/teacher.py trains
        teacher = {"CPU": float(cfg.teacher.cpus_per_worker), "GPU": worker["GPU"]}
        wanted["teacher"] = [teacher] * cfg.teacher.num_workers
    return {s: wanted[s] for s in cfg.stages if s in wanted}


def uses_gpu(cfg) -> bool:
    return any(b.get("GPU", 0) > 0 for bs in stage_bundles(cfg).values() for b in bs)


def check_capacity(cfg, nodes: list[NodeType], where: str) -> list[str]:
    problems = []
    for stage, bundles in stage_bundles(cfg).items():
        placed = pack(nodes, bundles)
        if placed < len(bundles):
            problems.append(f"{where}: stage {stage!r} of run {cfg.name!r} needs {len(bundles)} x "
                            f"{_fmt(bundles[0])} at once; the cluster at its maximum size fits {placed}")
    if any(n.resources.get("GPU", 0) > 0 and n.count > 0 for n in nodes) and not uses_gpu(cfg):
        problems.append(f"{where}: the cluster offers GPUs but run {cfg.name!r} asks for none "
                        "(training.use_gpu, ray.actor_gpus)")
    return problems


# ---- cluster launcher ----------------------------------------------------------------------------------
def launcher_nodes(doc: dict, where: str) -> tuple[list[NodeType], list[str]]:
    """Node types of a ``ray up`` YAML; resources must be stated (not auto-detected) to be checkable."""
    problems, nodes = [], []
    types = doc.get("available_node_types") or {}
    head = doc.get("head_node_type")
    if head not in types:
        problems.append(f"{where}: head_node_type {head!r} is not one of available_node_types")
    cap = doc.get("max_workers", 10**9)
    for name, nt in types.items():
        res = nt.get("resources")
        if not isinstance(res, dict) or "CPU" not in res:
            problems.append(f"{where}: node type {name!r} must state its resources (CPU, GPU) so that they "
                            "can be checked against the run configs")
            res = {}
        count = 1 if name == head else min(int(nt.get("max_workers", cap)), int(cap))
        nodes.append(NodeType(name, {k: float(v) for k, v in res.items()}, count))
    return nodes, problems


def launcher_schema_problems(doc: dict, where: str) -> list[str]:
    """Ray's own validation of a launcher YAML (its JSON schema after filling in the provider defaults)."""
    try:
        from ray.autoscaler._private.util import prepare_config, validate_config
    except ImportError:  # a Ray without the launcher: nothing to compare with
        return []
    log = logging.getLogger("ray.autoscaler._private.util")
    level = log.level
    log.setLevel(logging.WARNING)
    try:
        validate_config(prepare_config(copy.deepcopy(doc)))
    except Exception as err:  # jsonschema.ValidationError, ValueError
        return [f"{where}: Ray's cluster config schema: {str(err).splitlines()[0]}"]
    finally:
        log.setLevel(level)
    return []


def launcher_shared_paths(doc: dict) -> list[str]:
    """Paths that every node mounts: targets of ``mount`` commands run on each node (and, with Docker,
    bind-mounted into the container with ``-v PATH:PATH``)."""
    cmds = [c for k in ("initialization_commands", "setup_commands") for c in doc.get(k) or []]
    mounted = [c.split()[-1] for c in cmds if re.search(r"(^|\s|;|&&)(sudo\s+)?mount\s", c)]
    docker = doc.get("docker") or {}
    if docker.get("image"):
        opts = " ".join(docker.get("run_options") or [])
        binds = {m.group(2) for m in re.finditer(r"-v\s+([^:\s]+):([^:\s]+)", opts)}
        mounted = [p for p in mounted if p in binds]
    return mounted


def check_launcher(doc: dict, where: str, root: Path, run_configs: dict,
                   cluster_runs: set[str] | None = None) -> list[str]:
    """Hold a launcher YAML to every GPU run config (resources); the configs named in ``cluster_runs``
    (default: all) are the ones meant for it, so their runs_dir and data.dir must also be shared."""
    nodes, problems = launcher_nodes(doc, where)
    problems += launcher_schema_problems(doc, where)
    shared = launcher_shared_paths(doc)
    # the project: a file_mounts entry that syncs the checkout, pip-installed by the setup commands
    synced = [remote for remote, local in (doc.get("file_mounts") or {}).items()
              if (root / str(local)).resolve() == root.resolve()]
    setup = " ; ".join(doc.get("setup_commands") or [])
    if not synced:
        problems.append(f"{where}: no file_mounts entry syncs the checkout (local path '.') to the nodes")
    elif not any(re.search(r"pip install[^;&]*" + re.escape(r), setup) for r in synced):
        problems.append(f"{where}: setup_commands do not pip install the synced checkout "
                        f"({', '.join(synced)})")
    gpu_runs = {p: c for p, c in run_configs.items() if uses_gpu(c)}
    if not gpu_runs:
        problems.append(f"{where}: no GPU run config under configs/ to hold this launcher to")
    for path, cfg in gpu_runs.items():
        problems += check_capacity(cfg, nodes, f"{where} (for {path})")
        if cluster_runs is None or path in cluster_runs:
            problems += _on_shared(cfg_paths(cfg), shared, f"{where} (for {path})", "mounted on every node")
    return problems


# ---- KubeRay -------------------------------------------------------------------------------------------
def k8s_quantity(v) -> float:
    """A Kubernetes CPU/GPU quantity: 8, "8", "500m"."""
    s = str(v).strip()
    return float(s[:-1]) / 1000 if s.endswith("m") else float(s)


def _group_resources(group: dict, name: str, where: str, problems: list[str]) -> dict:
    params = group.get("rayStartParams") or {}
    container = ((group.get("template") or {}).get("spec") or {}).get("containers", [{}])[0]
    res = container.get("resources") or {}
    lim, req = res.get("limits") or {}, res.get("requests") or {}
    k8s_cpu = lim.get("cpu", req.get("cpu"))
    k8s_gpu = lim.get("nvidia.com/gpu", req.get("nvidia.com/gpu"))
    if "num-cpus" in params:
        cpu = k8s_quantity(params["num-cpus"])
        if k8s_cpu is not None and cpu > k8s_quantity(k8s_cpu):
            problems.append(f"{where}: group {name!r} advertises num-cpus {cpu:g} but its container "
                            f"gets {k8s_cpu}")
    elif k8s_cpu is not None:
        cpu = float(int(k8s_quantity(k8s_cpu)))  # Ray rounds a container's CPU limit down
    else:
        problems.append(f"{where}: group {name!r} states no CPUs (rayStartParams num-cpus or container "
                        "limits)")
        cpu = 0.0
    gpu = 0.0
    if "num-gpus" in params:
        gpu = k8s_quantity(params["num-gpus"])
        if k8s_gpu is None or gpu != k8s_quantity(k8s_gpu):
            problems.append(f"{where}: group {name!r} advertises num-gpus {gpu:g} but its container gets "
                            f"{k8s_gpu or 0} nvidia.com/gpu")
    elif k8s_gpu is not None:
        gpu = k8s_quantity(k8s_gpu)
    return {"CPU": cpu, "GPU": gpu}


def raycluster_nodes(spec: dict, where: str) -> tuple[list[NodeType], list[str]]:
    """Head and worker groups of a RayCluster spec; worker groups count at maxReplicas when the
    autoscaler is on, else at replicas."""
    problems: list[str] = []
    nodes = [NodeType("head", _group_resources(spec.get("headGroupSpec") or {}, "head", where, problems), 1)]
    autoscale = bool(spec.get("enableInTreeAutoscaling"))
    for g in spec.get("workerGroupSpecs") or []:
        name = g.get("groupName", "?")
        n = g.get("maxReplicas", g.get("replicas", 0)) if autoscale else g.get("replicas", 0)
        if g.get("minReplicas", 0) > g.get("maxReplicas", n):
            problems.append(f"{where}: group {name!r} has minReplicas above maxReplicas")
        res = _group_resources(g, name, where, problems)
        nodes.append(NodeType(name, res, int(n) * int(g.get("numOfHosts", 1))))
    return nodes, problems


def raycluster_shared_paths(spec: dict) -> list[str]:
    """Mount paths of shared volumes (PVC, NFS, CSI, ...) that every container of every group has."""
    common = None
    for g in [spec.get("headGroupSpec") or {}] + list(spec.get("workerGroupSpecs") or []):
        pod = (g.get("template") or {}).get("spec") or {}
        shared_vols = {v["name"] for v in pod.get("volumes") or [] if SHARED_VOLUME_KINDS & set(v)}
        for c in pod.get("containers", [])[:1]:  # the Ray container is the first one
            paths = {m["mountPath"] for m in c.get("volumeMounts") or [] if m.get("name") in shared_vols}
            common = paths if common is None else common & paths
    return sorted(common or [])


def cfg_paths(cfg) -> dict[str, str]:
    return {"runs_dir": cfg.runs_dir, "data.dir": cfg.data.dir}


def _under(path: str, base: str) -> bool:
    p, b = PurePosixPath(path), PurePosixPath(base)
    return p == b or b in p.parents


def _on_shared(paths: dict[str, str], shared: list[str], where: str, how: str) -> list[str]:
    problems = []
    for key, p in paths.items():
        if not PurePosixPath(p).is_absolute():
            problems.append(f"{where}: {key} {p!r} is relative: on a cluster it must be an absolute path on "
                            "storage every node sees")
        elif not any(_under(p, s) for s in shared):
            problems.append(f"{where}: {key} {p!r} is not on a shared volume {how} "
                            f"(shared: {', '.join(shared) or 'none'})")
    return problems


def check_rayjob(doc: dict, where: str, root: Path) -> list[str]:
    spec = doc.get("spec") or {}
    cfg, problems = check_entrypoint(spec.get("entrypoint", ""), root, where)
    try:
        env = yaml.safe_load(spec.get("runtimeEnvYAML") or "") or {}
    except yaml.YAMLError as err:
        return problems + [f"{where}: runtimeEnvYAML is not valid YAML: {err}"]
    problems += check_runtime_env(env, f"{where} runtimeEnvYAML", root, remote=True)
    cluster = spec.get("rayClusterSpec")
    if not cluster:
        return problems + [f"{where}: no rayClusterSpec (this check needs the cluster the job creates)"]
    problems += check_images(cluster, where, root, [env])
    nodes, p = raycluster_nodes(cluster, where)
    problems += p
    if cfg is not None:
        problems += check_capacity(cfg, nodes, where)
        shared = raycluster_shared_paths(cluster)
        problems += _on_shared(cfg_paths(cfg), shared, where, "mounted in every pod")
    return problems


def check_rayservice(doc: dict, where: str, root: Path, reference: dict | None) -> list[str]:
    spec = doc.get("spec") or {}
    try:
        serve_cfg = yaml.safe_load(spec.get("serveConfigV2") or "") or {}
    except yaml.YAMLError as err:
        return [f"{where}: serveConfigV2 is not valid YAML: {err}"]
    problems = check_serve_config(serve_cfg, f"{where} serveConfigV2", root, reference)
    cluster = spec.get("rayClusterConfig")
    if not cluster:
        return problems + [f"{where}: no rayClusterConfig"]
    nodes, p = raycluster_nodes(cluster, where)
    problems += p
    problems += check_images(cluster, where, root, [a.get("runtime_env") or {} for a in serve_cfg.get("applications") or []])
    bundles = []
    for app in serve_cfg.get("applications") or []:
        problems += check_runtime_env(app.get("runtime_env") or {},
                                      f"{where} app {app.get('name')!r} runtime_env", root, remote=True,
                                      driver=False)
        for d in app.get("deployments") or []:
            n = (d.get("autoscaling_config") or {}).get("max_replicas", d.get("num_replicas", 1))
            opts = d.get("ray_actor_options") or {}
            replica = {"CPU": float(opts.get("num_cpus", 1)), "GPU": float(opts.get("num_gpus", 0))}
            bundles += [replica] * int(n)
    if pack(nodes, bundles) < len(bundles):
        problems.append(f"{where}: the deployments at their max_replicas need {len(bundles)} replicas; "
                        f"the cluster at its maximum size fits {pack(nodes, bundles)}")
    shared = raycluster_shared_paths(cluster)
    for app in serve_cfg.get("applications") or []:
        run_dir = (app.get("args") or {}).get("run_dir")
        if run_dir:
            problems += _on_shared({"args.run_dir": run_dir}, shared, f"{where} app {app.get('name')!r}",
                                   "mounted in every pod")
    host = (serve_cfg.get("http_options") or {}).get("host", "0.0.0.0")
    if host not in ("127.0.0.1", "localhost", "::1"):
        problems += _token_env_problems(serve_cfg, cluster, where)
    return problems


def _dockerfile_base(root: Path) -> str | None:
    """The default ``BASE_IMAGE`` of the project's Dockerfile (``ARG BASE_IMAGE=...``), or None."""
    f = root / "Dockerfile"
    if not f.is_file():
        return None
    m = re.search(r"^ARG\s+BASE_IMAGE=(\S+)", f.read_text(), re.M)
    return m.group(1) if m else None


def check_images(cluster: dict, where: str, root: Path, envs: list[dict]) -> list[str]:
    """Every pod's image: the project image (built from ./Dockerfile on the official Ray image, with torch and
    the [train] install: the runtime_env then ships only the code) or the official ``rayproject/ray`` image
    (no torch: the runtime_env must pip-install the project). Either way its Ray version is ``rayVersion``;
    a group that asks for GPUs does not run a CPU image."""
    problems = []
    version = str(cluster.get("rayVersion") or "")
    base = _dockerfile_base(root)
    installs = any(_pip_packages(e.get("pip")) for e in envs)
    groups = [("head", cluster.get("headGroupSpec") or {})] + [
        (g.get("groupName", "?"), g) for g in cluster.get("workerGroupSpecs") or []]
    for name, g in groups:
        for c in ((g.get("template") or {}).get("spec") or {}).get("containers") or []:
            image = str(c.get("image") or "")
            repo, _, tag = image.rpartition(":")
            gpus = ((c.get("resources") or {}).get("limits") or {}).get("nvidia.com/gpu")
            if repo.endswith(PROJECT):  # the project image: ./Dockerfile on rayproject/ray:<rayVersion>-...
                if base is None:
                    problems.append(f"{where} group {name!r}: image {image!r} is the project image but there is "
                                    "no Dockerfile with ARG BASE_IMAGE=rayproject/ray:... at the repository root")
                elif version and not base.split(":")[-1].startswith(version + "-"):
                    problems.append(f"{where} group {name!r}: the Dockerfile's BASE_IMAGE {base!r} is not Ray "
                                    f"{version} (rayVersion)")
            elif repo == "rayproject/ray":
                if version and not tag.startswith(version):
                    problems.append(f"{where} group {name!r}: image {image!r} is not Ray {version} (rayVersion)")
                if not installs:
                    problems.append(f"{where} group {name!r}: image {image!r} has no torch and no ray-distill, and "
                                    "the runtime_env pip-installs nothing: use the project image (./Dockerfile)")
            else:
                problems.append(f"{where} group {name!r}: image {image!r} is neither the project image (.../"
                                f"{PROJECT}:TAG, built from ./Dockerfile) nor rayproject/ray")
            if gpus and "cpu" in tag.split("-"):
                problems.append(f"{where} group {name!r}: asks for nvidia.com/gpu but runs the CPU image {image!r}")
    return problems


def _token_env_problems(serve_cfg: dict, cluster: dict, where: str) -> list[str]:
    """Serving beyond loopback: the bearer-token variable (args.token_env) must reach every pod."""
    problems = []
    groups = [cluster.get("headGroupSpec") or {}] + list(cluster.get("workerGroupSpecs") or [])
    for app in serve_cfg.get("applications") or []:
        var = (app.get("args") or {}).get("token_env", "DISTILL_SERVE_TOKEN")
        for g in groups:
            c = ((g.get("template") or {}).get("spec") or {}).get("containers", [{}])[0]
            env = {e.get("name"): e for e in c.get("env") or []}
            if var not in env:
                problems.append(f"{where}: Serve binds beyond loopback but container {c.get('name', '?')!r} "
                                f"has no {var} (set it from a Secret so every route needs the bearer token)")
            elif not ((env[var].get("valueFrom") or {}).get("secretKeyRef") or {}).get("name"):
                problems.append(f"{where}: container {c.get('name', '?')!r} sets {var} other than from a "
                                "Secret (valueFrom.secretKeyRef): a token written in the manifest is no secret")
    return problems


# ---- entrypoints and import paths ----------------------------------------------------------------------
def _on_path(root: Path):
    if str(root) not in sys.path:
        sys.path.insert(0, str(root))


def module_exists(name: str, root: Path) -> bool:
    _on_path(root)
    try:
        return importlib.util.find_spec(name) is not None
    except (ImportError, ValueError):
        return False


def check_import_path(import_path: str, where: str, root: Path):
    """``module:attr`` (or ``module.attr``) -> (module or None, the attribute or None, problems)."""
    _on_path(root)
    mod_name, sep, attr = import_path.partition(":")
    if not sep:
        mod_name, _, attr = import_path.rpartition(".")
    try:
        module = importlib.import_module(mod_name)
    except Exception as err:
        return None, None, [f"{where}: import_path {import_path!r}: cannot import {mod_name!r}: {err}"]
    obj = module
    for part in attr.split("."):
        obj = getattr(obj, part, None)
        if obj is None:
            return module, None, [f"{where}: import_path {import_path!r}: {mod_name} has no attribute "
                                  f"{attr!r}"]
    return module, obj, []


def check_entrypoint(entrypoint: str, root: Path, where: str):
    """A job entrypoint ``python -m distill <command> CONFIG [key=value ...]`` -> (RunConfig or None,
    problems)."""
    from distill.config import ConfigError, load_config
    from distill.manifest import STAGES

    try:
        argv = shlex.split(entrypoint)
    except ValueError as err:
        return None, [f"{where}: entrypoint cannot be parsed: {err}"]
    i = argv.index("-m") if "-m" in argv else -1
    if i < 1 or i + 1 >= len(argv) or not re.match(r"(.*/)?python3?$", argv[i - 1]):
        return None, [f"{where}: entrypoint {entrypoint!r} is not `python -m distill ...`"]
    module, rest = argv[i + 1], argv[i + 2:]
    if not module_exists(module, root):
        return None, [f"{where}: entrypoint module {module!r} does not exist"]
    if module not in ("distill", "distill.cli"):
        return None, [f"{where}: entrypoint runs {module!r}, not the distill pipeline"]
    args = [a for a in rest if not a.startswith("--")]
    commands = {"run", "show-config", *STAGES}
    if len(args) < 2 or args[0] not in commands:
        return None, [f"{where}: entrypoint needs `<command> CONFIG`, command one of {sorted(commands)}"]
    config = root / args[1]
    try:
        return load_config(config, args[2:]), []
    except ConfigError as err:
        return None, [f"{where}: entrypoint config {args[1]}: {err}"]


# ---- Serve ---------------------------------------------------------------------------------------------
PER_RUN_ARGS = ("run_dir", "teacher")  # Serve app args that name the run served (and its reranker model)


def _app_key(app: dict) -> dict:
    """What must match between configs/serve.yaml and a copy of it: all but the per-run args (run_dir,
    teacher) and runtime_env."""
    args = {k: v for k, v in (app.get("args") or {}).items() if k not in PER_RUN_ARGS}
    deployments = {d.get("name"): d for d in app.get("deployments") or []}
    return {"import_path": app.get("import_path"), "route_prefix": app.get("route_prefix"), "args": args,
            "deployments": deployments}


def check_serve_config(cfg: dict, where: str, root: Path, reference: dict | None = None) -> list[str]:
    """Serve's schema, known deployment options, import paths, deployment names, args; equal to
    ``reference`` when given."""
    from ray.serve import Deployment
    from ray.serve.schema import DeploymentSchema, ServeDeploySchema

    problems = []
    try:
        ServeDeploySchema.model_validate(cfg)
    except Exception as err:
        problems.append(f"{where}: Serve's config schema: {' '.join(str(err).split())[:300]}")
    for app in cfg.get("applications") or []:
        name = app.get("name", "?")
        module, builder, p = check_import_path(app.get("import_path", ""), f"{where} app {name!r}", root)
        problems += p
        if module is None:
            continue
        names = {v.name for v in vars(module).values() if isinstance(v, Deployment)}
        for d in app.get("deployments") or []:
            unknown = set(d) - set(DeploymentSchema.model_fields)
            if unknown:
                problems.append(f"{where} app {name!r}: deployment {d.get('name')!r} has unknown options "
                                f"{sorted(unknown)}")
            if d.get("name") not in names:
                problems.append(f"{where} app {name!r}: deployment {d.get('name')!r} is not a Serve "
                                f"deployment of {module.__name__} (it has {sorted(names)})")
        app_args = getattr(module, "AppArgs", None)
        if app_args is not None and hasattr(app_args, "model_validate"):
            try:
                app_args.model_validate(app.get("args") or {})
            except Exception as err:
                problems.append(f"{where} app {name!r}: args do not validate with {module.__name__}.AppArgs: "
                                f"{' '.join(str(err).split())[:300]}")
    if reference is not None:
        ours = {a.get("name"): _app_key(a) for a in cfg.get("applications") or []}
        theirs = {a.get("name"): _app_key(a) for a in reference.get("applications") or []}
        if set(ours) != set(theirs):
            problems.append(f"{where}: applications {sorted(ours)} differ from configs/serve.yaml's "
                            f"{sorted(theirs)}")
        for app in set(ours) & set(theirs):
            for field in ("import_path", "route_prefix", "args"):
                if ours[app][field] != theirs[app][field]:
                    problems.append(f"{where} app {app!r}: {field} {ours[app][field]!r} differs from "
                                    f"configs/serve.yaml's {theirs[app][field]!r}")
            od, td = ours[app]["deployments"], theirs[app]["deployments"]
            if set(od) != set(td):
                problems.append(f"{where} app {app!r}: deployments {sorted(od)} differ from "
                                f"configs/serve.yaml's {sorted(td)}")
            for d in set(od) & set(td):
                if od[d] != td[d]:
                    diff = sorted(k for k in set(od[d]) | set(td[d]) if od[d].get(k) != td[d].get(k))
                    problems.append(f"{where} app {app!r}: deployment {d!r} differs from "
                                    f"configs/serve.yaml's in {diff}")
    return problems


def check_cluster_serve_config(cfg: dict, where: str, root: Path, reference: dict | None) -> list[str]:
    """A cluster's copy of configs/serve.yaml: equal to it, serving a run directory on shared storage."""
    problems = check_serve_config(cfg, where, root, reference)
    for app in cfg.get("applications") or []:
        run_dir = str((app.get("args") or {}).get("run_dir", ""))
        if not PurePosixPath(run_dir).is_absolute():
            problems.append(f"{where} app {app.get('name')!r}: args.run_dir {run_dir!r} must be an absolute "
                            "path on storage every node sees")
    return problems


# ---- runtime_env ---------------------------------------------------------------------------------------
def _pip_packages(pip) -> list[str]:
    if isinstance(pip, list):
        return [str(p) for p in pip]
    if isinstance(pip, dict):
        return [str(p) for p in pip.get("packages") or []]
    return []


def check_runtime_env(env: dict, where: str, root: Path, remote: bool = False,
                      driver: bool = True) -> list[str]:
    """``remote``: the working_dir must be a remote .zip (nothing is uploaded from a laptop under KubeRay).
    ``driver``: the env is a job's, so the pipeline's driver merges its own env vars into it."""
    from ray.runtime_env import RuntimeEnv

    problems = []
    if not isinstance(env, dict):
        return [f"{where}: a runtime_env must be a mapping"]
    unknown = set(env) - RuntimeEnv.known_fields
    if unknown:
        problems.append(f"{where}: unknown runtime_env fields {sorted(unknown)}")
    wd = env.get("working_dir")
    if wd is None:
        problems.append(f"{where}: no working_dir: the workers would not have this checkout's code")
    elif remote:
        if not (str(wd).startswith(REMOTE_SCHEMES) and str(wd).endswith(".zip")):
            problems.append(f"{where}: working_dir {wd!r} must be a remote .zip URI (https://, s3://, gs://)")
    elif not (root / str(wd) / "pyproject.toml").is_file():
        problems.append(f"{where}: working_dir {wd!r} is not the project checkout (no pyproject.toml there)")
    packages = _pip_packages(env.get("pip"))
    if "pip" in env:
        installs, extras = False, set()
        for p in packages:
            spec, *opts = p.split()
            if spec == "-e" and opts:
                spec, opts = opts[0], opts[1:]
            bad = [o for o in opts if o.startswith("-") and not o.startswith(("--hash", "--config-settings"))]
            if bad:
                problems.append(f"{where}: pip entry {p!r}: {bad} is not allowed on a requirements line")
            if spec in (".", "./") or spec.startswith("./"):
                problems.append(f"{where}: pip entry {p!r}: Ray runs pip in an empty directory, not in the "
                                f"working_dir: use {WORKING_DIR_VAR}")
            path, _, extra = spec.partition("[")  # ${VAR}[train] or ray-distill[train]: the project with extras
            if path.rstrip("/") == WORKING_DIR_VAR or re.match(re.escape(PROJECT) + r"\b", spec):
                installs = True
                extras |= {e.strip() for e in extra.rstrip("]").split(",") if e.strip()}
        if not installs:
            problems.append(f"{where}: pip does not install the project ({WORKING_DIR_VAR} or {PROJECT})")
        elif driver and "train" not in extras:
            problems.append(f"{where}: pip installs the project without its [train] extra (DeepSpeed, ranx, "
                            f"matplotlib): the pipeline's train and evaluate stages need it ({WORKING_DIR_VAR}[train])")
    for k, v in (env.get("env_vars") or {}).items():
        if not isinstance(v, str):
            problems.append(f"{where}: env_vars.{k} must be a string, got {v!r}")
    try:
        RuntimeEnv(**{k: v for k, v in env.items() if k not in unknown})
    except Exception as err:
        problems.append(f"{where}: Ray rejects this runtime_env: {str(err).splitlines()[0]}")
    if driver:
        problems += _merge_problems(env, where)
    return problems


def _merge_problems(env: dict, where: str) -> list[str]:
    """Ray merges a job's runtime_env with the driver's ray.init(runtime_env=...) and refuses overlaps."""
    import json

    from ray.runtime_env.runtime_env import _merge_runtime_env

    from distill.raycluster import driver_runtime_env

    job = {"RAY_JOB_CONFIG_JSON_ENV_VAR": json.dumps({"runtime_env": env})}
    if _merge_runtime_env(env, driver_runtime_env(job)) is None:
        return [f"{where}: Ray would refuse to merge it with the driver's runtime_env "
                f"{driver_runtime_env(job)}"]
    return []


# ---- docs ----------------------------------------------------------------------------------------------
PY_MODULE_RE = re.compile(r"python3? -m ([A-Za-z_][\w.]*)")
IMPORT_PATH_RE = re.compile(r"import_path:\s*[\"']?([A-Za-z_][\w.]*:[A-Za-z_][\w.]*)")
SERVE_TARGET_RE = re.compile(r"\bserve (?:run|deploy|build) ([A-Za-z_][\w.]*:[A-Za-z_][\w.]*)")
REPO_PATH_RE = re.compile(r"(?<![\w./-])((?:configs|cluster)/[\w.-]+(?:/[\w.-]+)*\.(?:ya?ml|md))\b")
CODE_BLOCK_RE = re.compile(r"```[a-z]*\n(.*?)```", re.S)


def _cli_commands() -> dict:
    from ray.scripts.scripts import cli as ray_cli
    from ray.serve.scripts import cli as serve_cli

    return {"ray": ray_cli, "serve": serve_cli}


def check_cli_line(line: str, where: str, clis: dict) -> list[str]:
    """Flags of one ``ray ...``/``serve ...`` command line must exist in that (click) command."""
    try:
        argv = shlex.split(line, comments=True)
    except ValueError:
        return []
    while argv and re.match(r"[A-Z_][A-Z0-9_]*=", argv[0]):  # VAR=value prefixes
        argv = argv[1:]
    if not argv or argv[0] not in clis:
        return []
    cmd, path, i = clis[argv[0]], [argv[0]], 1
    while hasattr(cmd, "commands") and i < len(argv) and not argv[i].startswith("-"):
        if argv[i] not in cmd.commands:
            return [f"{where}: `{' '.join(path)}` has no subcommand {argv[i]!r}"]
        cmd = cmd.commands[argv[i]]
        path.append(argv[i])
        i += 1
    if hasattr(cmd, "commands"):
        return []
    known = {o for p in cmd.params for o in p.opts + p.secondary_opts}
    problems = []
    for tok in argv[i:]:
        if tok == "--":
            break
        if tok.startswith("-") and tok != "-" and tok.split("=")[0] not in known:
            problems.append(f"{where}: `{' '.join(path)}` has no option {tok.split('=')[0]!r}")
    return problems


def check_text(text: str, where: str, root: Path, clis: dict | None = None) -> list[str]:
    """``python -m``, import paths and repository paths in a doc or manifest; CLI flags in code blocks."""
    problems = []
    for m in sorted(set(PY_MODULE_RE.findall(text))):
        if not module_exists(m, root):
            problems.append(f"{where}: `python -m {m}`: no such module")
    for ip in sorted(set(IMPORT_PATH_RE.findall(text)) | set(SERVE_TARGET_RE.findall(text))):
        problems += check_import_path(ip, where, root)[2]
    for p in sorted(set(REPO_PATH_RE.findall(text))):
        if not (root / p).exists():
            problems.append(f"{where}: {p} does not exist")
    if clis is not None:
        for block in CODE_BLOCK_RE.findall(text):
            for line in block.replace("\\\n", " ").splitlines():
                problems += check_cli_line(line.strip(), where, clis)
    return problems


# ---- the whole tree ------------------------------------------------------------------------------------
def _is_run_config(doc) -> bool:
    return isinstance(doc, dict) and "teacher" in doc and "student" in doc


def _rerank_teacher_problems(parsed: dict, root: Path, run_configs: dict) -> list[str]:
    """A cluster Serve app that reranks a run whose teacher stage fine-tunes nothing (so the run has no
    teacher_model/) must name the teacher in args.teacher: serving never loads a model named by the run's
    manifest. The runs are those of the RayJob entrypoints and of the configs the cluster docs run."""
    runs = {}
    for rel, docs in parsed.items():
        for doc in docs:
            if isinstance(doc, dict) and doc.get("kind") == "RayJob":
                cfg, _ = check_entrypoint(str((doc.get("spec") or {}).get("entrypoint", "")), root, rel)
                if cfg is not None:
                    runs[str(PurePosixPath(cfg.runs_dir) / cfg.name)] = cfg
    for cfg in run_configs.values():
        runs.setdefault(str(PurePosixPath(cfg.runs_dir) / cfg.name), cfg)
    problems = []
    for rel, docs in parsed.items():
        if not rel.startswith("cluster/"):
            continue
        for doc in docs:
            if not isinstance(doc, dict):
                continue
            serve_cfg = doc
            if doc.get("kind") == "RayService":
                try:
                    serve_cfg = yaml.safe_load((doc.get("spec") or {}).get("serveConfigV2") or "") or {}
                except yaml.YAMLError:
                    continue  # reported by check_rayservice
            for app in serve_cfg.get("applications") or [] if isinstance(serve_cfg, dict) else []:
                args = app.get("args") or {}
                cfg = runs.get(str(args.get("run_dir")))
                t = cfg.teacher if cfg is not None else None
                if args.get("rerank") and not args.get("teacher") and t is not None and t.kind != "ensemble" \
                        and not getattr(t, "finetunes", t.finetune and t.kind in ("cross-encoder", "reader")):
                    problems.append(f"{rel} app {app.get('name')!r}: reranks {args.get('run_dir')}, whose teacher "
                                    f"is not fine-tuned (no teacher_model/): set args.teacher to {t.model!r} "
                                    "(serving never loads a model named in the run's manifest)")
    return problems


def check_tree(root: str | Path) -> tuple[list[str], list[str]]:
    """Check every manifest under cluster/ and configs/ and the docs in cluster/ -> (problems, files
    checked)."""
    from distill.config import ConfigError, load_config

    root = Path(root).resolve()
    files = sorted((root / "cluster").rglob("*.y*ml")) + sorted((root / "configs").glob("*.y*ml"))
    problems, parsed, run_configs = [], {}, {}
    for f in files:
        rel = str(f.relative_to(root))
        try:
            parsed[rel] = [d for d in yaml.safe_load_all(f.read_text()) if d is not None]
        except yaml.YAMLError as err:
            problems.append(f"{rel}: not valid YAML: {err}")
    for rel, docs in parsed.items():
        if rel.startswith("configs/") and docs and _is_run_config(docs[0]):
            try:
                run_configs[rel] = load_config(root / rel)
            except ConfigError as err:
                problems.append(f"{rel}: {err}")
    serve_ref = next((d for d in parsed.get("configs/serve.yaml", [])), None)
    cluster_text = " ".join(f.read_text() for f in sorted((root / "cluster").rglob("*")) if f.is_file()
                            and f.suffix in (".md", ".yaml", ".yml"))
    cluster_runs = {rel for rel in run_configs if rel in cluster_text}  # configs the cluster docs run
    for rel, docs in parsed.items():
        for doc in docs:
            kind = doc.get("kind") if isinstance(doc, dict) else None
            if kind == "RayJob":
                problems += check_rayjob(doc, rel, root)
            elif kind == "RayService":
                problems += check_rayservice(doc, rel, root, serve_ref)
            elif isinstance(doc, dict) and "available_node_types" in doc:
                problems += check_launcher(doc, rel, root, run_configs, cluster_runs)
            elif isinstance(doc, dict) and "applications" in doc:
                if rel == "configs/serve.yaml":
                    problems += check_serve_config(doc, rel, root)
                    continue
                problems += (check_cluster_serve_config(doc, rel, root, serve_ref)
                             if rel.startswith("cluster/") else check_serve_config(doc, rel, root))
            elif isinstance(doc, dict) and "runtime_env" in Path(rel).name:
                problems += check_runtime_env(doc, rel, root)
            elif _is_run_config(doc) and rel.startswith("configs/"):
                pass  # validated above
            elif rel.startswith("cluster/"):
                problems.append(f"{rel}: not a manifest this check knows (RayJob, RayService, launcher, "
                                "Serve config, runtime_env)")
    problems += _rerank_teacher_problems(parsed, root, {r: c for r, c in run_configs.items() if r in cluster_runs})
    clis = _cli_commands()
    for f in sorted((root / "cluster").rglob("*.md")) + files:
        rel = str(f.relative_to(root))
        problems += check_text(f.read_text(), rel, root, clis if f.suffix == ".md" else None)
    return problems, [str(f.relative_to(root)) for f in files]


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m cluster.check", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--root", default=Path(__file__).resolve().parent.parent, help="the checkout to check")
    args = p.parse_args(argv)
    problems, files = check_tree(args.root)
    for line in problems:
        print(line)
    where = f"{len(files)} manifest(s) under cluster/ and configs/ and the docs in cluster/"
    print(f"{len(problems)} problem(s) in {where}" if problems else f"ok: {where}")
    return 1 if problems else 0


if __name__ == "__main__":
    sys.exit(main())
