"""Security defaults, each tested (no Ray):

- Serve binds 127.0.0.1 unless told otherwise; beyond loopback it needs a token (or ``--insecure``), and a
  token that is set but blank is an error, not "no auth";
- with a bearer token set, every route but /healthz and /readyz needs it (and only its SHA-256 is held);
  without one, only requests addressed (Host) to loopback names or the bound address are answered;
- request bodies are bounded (64 KiB; see also tests/integration/test_serve_fuzz.py over raw HTTP);
- ``trust_remote_code`` is off unless the config turns it on, and what the config says reaches
  transformers (custom code in a model directory is not run unless asked); serving never takes a model
  name (``python:`` imports a module) or ``trust_remote_code`` from a run directory's manifest;
- weights load through safetensors or ``torch.load(weights_only=True)``: an AST scan of distill/ and
  serve/, a run directory holds no pickle but DeepSpeed's checkpoints, and those load (resume) through
  :func:`distill.safe_load.deepspeed_weights_only`, which refuses a checkpoint carrying code (the guard
  and the DeepSpeed resume through it: test_safe_load.py).
"""

from __future__ import annotations

import ast
import inspect
import json
import socket
import uuid
from pathlib import Path

import pytest
import torch
import yaml
from fastapi.testclient import TestClient

from serve.api import OPEN_PATHS, TOKEN_ENV, create_app, token_digest

ROOT = Path(__file__).resolve().parents[2]
PACKAGES = [ROOT / "distill", ROOT / "serve"]


class Payload:
    """A pickled object whose unpickling runs code: writes ``marker`` (what an attacker's file would do)."""

    def __init__(self, marker: Path):
        self.marker = marker

    def __reduce__(self):
        return exec, (f"open({str(self.marker)!r}, 'w').write('pwned')",)


class TinyBackend:
    has_reranker = False

    async def retrieve(self, queries, depth, with_text):
        hit = {"docid": "d0", "score": 1.0, "title": None, "snippet": None}
        return {"version": "t", "truncated": [False] * len(queries), "candidates": [[hit] for _ in queries]}

    async def ready(self):
        return {"version": "t", "reranker": False}


# ---- binding -----------------------------------------------------------------------------------------------
def test_serve_binds_loopback_unless_told_otherwise():
    from ray.serve.config import HTTPOptions

    from serve import app as serve_app
    from serve import demo
    from serve.__main__ import parse_args

    assert parse_args(["runs/x"]).host == "127.0.0.1"
    assert parse_args(["runs/x", "--host", "0.0.0.0"]).host == "0.0.0.0"  # only when asked
    assert serve_app.DEFAULT_HOST == "127.0.0.1"
    for fn in (serve_app.deploy, serve_app.start_serve, demo.main):
        assert inspect.signature(fn).parameters["host"].default == "127.0.0.1", fn.__qualname__
    # `serve run configs/serve.yaml` binds what the file says; Ray Serve's own default is loopback too.
    for path in sorted((ROOT / "configs").glob("*.yaml")):
        cfg = yaml.safe_load(path.read_text()) or {}
        if "http_options" in cfg or "applications" in cfg:
            assert cfg.get("http_options", {}).get("host", HTTPOptions().host) == "127.0.0.1", path.name
    assert HTTPOptions().host == "127.0.0.1"


# ---- bearer token ------------------------------------------------------------------------------------------
def test_token_guards_every_route_but_health():
    app = create_app(TinyBackend(), token_sha256=token_digest("s3cret"))
    routes = [(m, r.path) for r in app.routes for m in sorted(getattr(r, "methods", None) or ())]
    paths = {p for _, p in routes}
    assert {"/search", "/healthz", "/readyz", "/openapi.json", "/docs", "/redoc"} <= paths
    good = {"Authorization": "Bearer s3cret"}
    wrong = [{}, {"Authorization": "Bearer nope"}, {"Authorization": "s3cret"},
             {"Authorization": "Basic s3cret"}, {"Authorization": "Bearer "}, {"X-Token": "s3cret"}]
    with TestClient(app) as c:
        for method, path in routes + [("GET", "/nope"), ("DELETE", "/search"), ("GET", "/healthz/")]:
            body = {"json": {"query": "a"}} if method == "POST" else {}
            if path in OPEN_PATHS:
                assert c.request(method, path, **body).status_code == 200, path
                continue
            for headers in wrong:
                r = c.request(method, path, headers=headers, **body)
                assert r.status_code == 401, (method, path, headers)
                assert r.headers["www-authenticate"] == "Bearer"
            r = c.request(method, path, headers=good, **body)
            assert r.status_code != 401, (method, path)
            assert c.request(method, path + "?token=s3cret", **body).status_code == 401
        lower = {"Authorization": "bearer s3cret"}  # the scheme is case-insensitive
        assert c.post("/search", json={"query": "a"}, headers=lower).status_code == 200


def test_no_token_means_no_auth_and_the_token_never_sits_in_the_deployment(tmp_path, monkeypatch):
    from serve.app import build_app
    from serve.testing import make_serve_run

    with TestClient(create_app(TinyBackend())) as c:
        assert c.post("/search", json={"query": "a"}).status_code == 200
    run = make_serve_run(tmp_path / "run", teacher=False)["run_dir"]
    monkeypatch.setenv(TOKEN_ENV, "  the-secret  ")
    bound = build_app({"run_dir": str(run)})._bound_deployment  # SearchIngress and its init args
    assert bound.init_args[2] == token_digest("the-secret")
    assert "the-secret" not in repr(bound.init_args) + repr(bound.init_kwargs)
    monkeypatch.delenv(TOKEN_ENV)
    assert build_app({"run_dir": str(run)})._bound_deployment.init_args[2] is None


# ---- body size ---------------------------------------------------------------------------------------------
def test_body_is_bounded_even_when_the_length_is_unknown():
    from serve.api import MAX_BODY_BYTES

    assert MAX_BODY_BYTES == 64 * 1024
    with TestClient(create_app(TinyBackend())) as c:
        big = b'{"query": "' + b"x" * MAX_BODY_BYTES + b'"}'
        ctype = {"content-type": "application/json"}
        assert c.post("/search", content=big, headers=ctype).status_code == 413
        chunks = iter([big[i:i + 1000] for i in range(0, len(big), 1000)])  # no Content-Length
        assert c.post("/search", content=chunks, headers=ctype).status_code == 413
        for method in ("PUT", "PATCH", "DELETE"):
            assert c.request(method, "/search", content=big).status_code == 413, method
        r = c.post("/search", content=b"{}", headers={**ctype, "content-length": "abc"})
        assert r.status_code == 400


# ---- trust_remote_code -------------------------------------------------------------------------------------
def test_trust_remote_code_defaults_off_everywhere():
    import pydantic

    from distill import config
    from serve.core import RunArtifacts, TeacherSpec

    sections = [c for c in vars(config).values() if isinstance(c, type) and issubclass(c, pydantic.BaseModel)
                and "trust_remote_code" in c.model_fields]
    assert {"EncoderConfig", "TeacherConfig", "QueryGenConfig"} <= {c.__name__ for c in sections}
    for c in sections:
        assert c.model_fields["trust_remote_code"].default is False, c.__name__
    for path in sorted((ROOT / "configs").glob("*.yaml")):
        if path.name == "serve.yaml":
            continue
        cfg = config.load_config(path)
        flags = [cfg.student.trust_remote_code, cfg.teacher.trust_remote_code,
                 cfg.mining.querygen.trust_remote_code]
        assert flags == [False, False, False], path.name
    assert TeacherSpec("x").trust_remote_code is False
    art = RunArtifacts(Path("/r"), Path("/r/student"), Path("/r/index"), None, {},
                       {"config": {"teacher": {"model": "m", "trust_remote_code": True}}})
    assert art.teacher("m").trust_remote_code is False  # the caller's flag, never the manifest's
    assert art.teacher("m", trust_remote_code=True).trust_remote_code is True


def _model_with_custom_code(root: Path, marker: Path, model_type: str = "bert") -> Path:
    """A tiny BERT whose config.json maps the Auto classes to code in the directory (which, when imported,
    writes ``marker``)."""
    from builders import make_tiny_bert

    d = make_tiny_bert(root / f"remote{uuid.uuid4().hex[:10]}", ["alpha", "beta"])
    cfg = json.loads((d / "config.json").read_text())
    cfg["model_type"] = model_type
    cfg["auto_map"] = {"AutoConfig": "custom.CustomConfig", "AutoModel": "custom.CustomModel",
                       "AutoModelForSequenceClassification": "custom.CustomForSequenceClassification"}
    (d / "config.json").write_text(json.dumps(cfg))
    (d / "custom.py").write_text(
        f"open({str(marker)!r}, 'w').write('ran')\n"
        "from transformers import BertConfig, BertForSequenceClassification, BertModel\n"
        "class CustomConfig(BertConfig):\n    model_type = 'bert'\n"
        "class CustomModel(BertModel):\n    config_class = CustomConfig\n"
        "class CustomForSequenceClassification(BertForSequenceClassification):\n"
        "    config_class = CustomConfig\n")
    return d


def test_custom_code_in_a_model_dir_runs_only_when_the_config_asks(tmp_path):
    from distill.config import EncoderConfig
    from distill.models import CrossEncoder, DualEncoder

    marker = tmp_path / "ran"
    d = _model_with_custom_code(tmp_path, marker)
    assert type(DualEncoder.from_config(EncoderConfig(model=str(d))).backbone).__name__ == "BertModel"
    assert type(CrossEncoder(str(d), 32).model).__name__ == "BertForSequenceClassification"
    assert not marker.exists()
    # Turned on, the flag reaches transformers: the directory's code is imported and used.
    enc = DualEncoder.from_config(EncoderConfig(model=str(d), trust_remote_code=True))
    assert type(enc.backbone).__name__ == "CustomModel" and marker.exists()
    # A model type transformers does not know, with the flag off: a clear error, nothing run.
    marker.unlink()
    d2 = _model_with_custom_code(tmp_path, marker, model_type="custom-bert")
    with pytest.raises(ValueError, match="trust_remote_code"):
        DualEncoder(str(d2))
    assert not marker.exists()


# ---- weights: static scan -------------------------------------------------------------------------------
FORBIDDEN_CALLS = {"pickle.load", "pickle.loads", "pickle.Unpickler", "cPickle.load", "dill.load",
                   "dill.loads", "cloudpickle.load", "cloudpickle.loads", "joblib.load", "marshal.load",
                   "marshal.loads", "shelve.open", "torch.serialization.load", "np.lib.format.read_array"}


def _dotted(node: ast.AST) -> str:
    if isinstance(node, ast.Name):
        return node.id
    if isinstance(node, ast.Attribute):
        return f"{_dotted(node.value)}.{node.attr}"
    return "?"


def _kw(call: ast.Call, name: str):
    for k in call.keywords:
        if k.arg == name:
            return k.value.value if isinstance(k.value, ast.Constant) else "<expr>"
    return "<absent>"


def unsafe_loads(source: str, filename: str = "<src>") -> list[str]:
    """Every call in ``source`` that could unpickle code, as 'file:line: why'."""
    tree = ast.parse(source, filename)
    parents = {child: node for node in ast.walk(tree) for child in ast.iter_child_nodes(node)}

    def inside_guard(node: ast.AST) -> bool:
        while node in parents:
            node = parents[node]
            if isinstance(node, ast.With) and any(
                    isinstance(i.context_expr, ast.Call) and _dotted(i.context_expr.func).endswith(
                        "deepspeed_weights_only") for i in node.items):
                return True
        return False

    out = []
    for node in ast.walk(tree):
        if not isinstance(node, ast.Call):
            continue
        name = _dotted(node.func)
        where = f"{filename}:{node.lineno}"
        if name in FORBIDDEN_CALLS or name.endswith("read_pickle"):
            out.append(f"{where}: {name}")
        elif name == "torch.load" and _kw(node, "weights_only") is not True:
            out.append(f"{where}: torch.load without weights_only=True")
        elif name in ("np.load", "numpy.load") and _kw(node, "allow_pickle") not in ("<absent>", False):
            out.append(f"{where}: {name} with allow_pickle")
        elif name.endswith(".from_pretrained") and (
                _kw(node, "weights_only") not in ("<absent>", True) or _kw(node, "use_safetensors") is False):
            out.append(f"{where}: from_pretrained allowing pickled weights")
        elif name.endswith(".from_pretrained") and _kw(node, "trust_remote_code") is True:
            out.append(f"{where}: trust_remote_code=True hard-coded")
        elif (name.endswith(".from_pretrained") and ".Auto" in f".{name}"
              and _kw(node, "trust_remote_code") == "<absent>"):
            out.append(f"{where}: Auto*.from_pretrained without the config's trust_remote_code")
        elif name.endswith(".save_pretrained") and _kw(node, "safe_serialization") is False:
            out.append(f"{where}: save_pretrained writing pickle")
        elif name.endswith(".load_checkpoint") and not inside_guard(node):
            out.append(f"{where}: load_checkpoint outside deepspeed_weights_only()")
    return out


def test_the_scan_catches_what_it_looks_for():
    bad = ("torch.load(p)\ntorch.load(p, weights_only=False)\npickle.loads(b)\ndf = pd.read_pickle(p)\n"
           "np.load(p, allow_pickle=True)\nengine.load_checkpoint(d)\n"
           "AutoModel.from_pretrained(p)\nAutoModel.from_pretrained(p, trust_remote_code=True)\n"
           "m.save_pretrained(p, safe_serialization=False)\n"
           "with deepspeed_weights_only():\n    engine.load_checkpoint(d)\n"
           "torch.load(p, weights_only=True)\nnp.load(p)\n"
           "AutoModel.from_pretrained(p, trust_remote_code=t)\n")
    assert [x.split(": ", 1)[0] for x in unsafe_loads(bad)] == [f"<src>:{i}" for i in range(1, 10)]


def test_package_never_unpickles_code():
    files = sorted(p for pkg in PACKAGES for p in pkg.rglob("*.py"))
    assert len(files) > 20
    problems = [x for f in files for x in unsafe_loads(f.read_text(), str(f.relative_to(ROOT)))]
    assert problems == []
    assert any("load_checkpoint" in f.read_text() for f in files)  # the guarded call is really there


def _pickle_like(path: Path) -> bool:
    head = path.read_bytes()[:4]
    if head[:1] == b"\x80" and head[1:2] in (b"\x02", b"\x03", b"\x04", b"\x05"):
        return True
    if head == b"PK\x03\x04":  # torch's zip format holds data.pkl
        import zipfile

        return any(n.endswith(".pkl") for n in zipfile.ZipFile(path).namelist())
    return path.suffix in (".pkl", ".pickle", ".pt", ".pth", ".bin", ".joblib", ".npy", ".npz")


def test_a_served_run_directory_holds_no_pickle(tmp_path):
    from serve.testing import make_serve_run

    run = make_serve_run(tmp_path / "run")["run_dir"]
    files = [p for p in run.rglob("*") if p.is_file()]
    assert {"model.safetensors", "index.faiss", "docids.parquet", "meta.json"} <= {p.name for p in files}
    assert [p for p in files if _pickle_like(p)] == []


def test_pickled_hf_weights_with_code_are_refused(tmp_path):
    from safetensors.torch import load_file

    from distill.models import DualEncoder
    from builders import make_tiny_bert

    marker = tmp_path / "ran"
    d = make_tiny_bert(tmp_path / "binmodel", ["alpha"])
    state = load_file(str(d / "model.safetensors"))
    (d / "model.safetensors").unlink()
    torch.save({**state, "x": Payload(marker)}, d / "pytorch_model.bin")
    with pytest.raises(Exception, match="(?i)weights.only"):
        DualEncoder(str(d))
    assert not marker.exists()


def test_non_loopback_bind_without_token_is_flagged():
    from serve.__main__ import is_loopback

    assert is_loopback("127.0.0.1") and is_loopback("127.0.0.2") and is_loopback("::1") and is_loopback("localhost")
    assert not is_loopback("0.0.0.0") and not is_loopback("10.1.2.3") and not is_loopback("example.org")


# ---- start-up refusals (python -m serve; no Ray: deploy is stubbed) ---------------------------------------
def _servable(root: Path, teacher: dict | None = None) -> Path:
    """Just enough of a run directory for serve.core.RunArtifacts.load (the files are never read)."""
    (root / "student").mkdir(parents=True)
    (root / "student" / "config.json").write_text("{}")
    (root / "index").mkdir()
    for name in ("index.faiss", "docids.parquet", "docs.parquet"):
        (root / "index" / name).write_text("")
    (root / "index" / "meta.json").write_text('{"version": "v"}')
    (root / "manifest.json").write_text(json.dumps({"config": {"teacher": teacher or {"model": "t"}}}))
    return root


@pytest.fixture
def serve_main(monkeypatch, tmp_path):
    """serve.__main__.main with deploy stubbed: returns (exit code, the deploy calls)."""
    import serve.app
    from serve.__main__ import main

    calls = []

    def deploy(run_dir, **kw):
        calls.append(kw)
        raise KeyboardInterrupt  # ends main's wait loop as Ctrl-C would

    monkeypatch.setattr(serve.app, "deploy", deploy)
    monkeypatch.setattr(serve.app, "shutdown", lambda: None)
    monkeypatch.delenv(TOKEN_ENV, raising=False)
    run = _servable(tmp_path / "run")
    return lambda *args: (main([str(run), *args]), calls)


@pytest.mark.parametrize("blank", ["", " ", "\t\n "])
def test_a_blank_token_is_an_error_at_start_up(serve_main, monkeypatch, capsys, blank):
    monkeypatch.setenv(TOKEN_ENV, blank)
    for args in ([], ["--host", "0.0.0.0"]):
        rc, calls = serve_main(*args)
        assert rc == 2 and calls == []
        assert f"{TOKEN_ENV} is set but blank" in capsys.readouterr().err


def test_a_blank_token_fails_the_serve_config_too(tmp_path, monkeypatch):
    from serve.app import build_app
    from serve.core import ServeSetupError

    run = _servable(tmp_path / "run")
    monkeypatch.setenv(TOKEN_ENV, "  ")
    with pytest.raises(ServeSetupError, match="set but blank"):
        build_app({"run_dir": str(run)})


def test_binding_beyond_loopback_without_a_token_needs_insecure(serve_main, monkeypatch, capsys):
    rc, calls = serve_main("--host", "0.0.0.0")
    assert rc == 2 and calls == []
    assert "needs a bearer token" in capsys.readouterr().err
    rc, calls = serve_main("--host", "0.0.0.0", "--insecure")
    assert rc == 0 and calls[-1]["host"] == "0.0.0.0"
    assert "WARNING: --insecure" in capsys.readouterr().err
    monkeypatch.setenv(TOKEN_ENV, "s3cret")
    assert serve_main("--host", "10.1.2.3")[0] == 0, capsys.readouterr().err
    monkeypatch.delenv(TOKEN_ENV)
    rc, calls = serve_main()  # loopback, no token: fine
    assert rc == 0 and calls[-1]["host"] == "127.0.0.1" and calls[-1]["allowed_hosts"] == []
    from serve.__main__ import TOKEN_ENV as MAIN_TOKEN_ENV

    assert MAIN_TOKEN_ENV == TOKEN_ENV


def test_cluster_serving_sets_the_token_from_a_secret():
    """The RayService binds 0.0.0.0: every pod gets DISTILL_SERVE_TOKEN from a Kubernetes Secret, and
    cluster.check refuses a literal value or a missing variable."""
    import copy

    import cluster.check as cc

    rel = "cluster/kuberay/rayservice-serve.yaml"
    doc = yaml.safe_load((ROOT / rel).read_text())
    serve_ref = yaml.safe_load((ROOT / "configs/serve.yaml").read_text())
    cluster = doc["spec"]["rayClusterConfig"]
    groups = [cluster["headGroupSpec"], *cluster["workerGroupSpecs"]]
    for g in groups:
        env = {e["name"]: e for e in g["template"]["spec"]["containers"][0]["env"]}
        assert env[TOKEN_ENV]["valueFrom"]["secretKeyRef"]["name"] == "distill-serve-token"
    assert cc.check_rayservice(doc, rel, ROOT, serve_ref) == []
    literal = copy.deepcopy(doc)
    env = literal["spec"]["rayClusterConfig"]["workerGroupSpecs"][0]["template"]["spec"]["containers"][0]["env"]
    env[:] = [{"name": TOKEN_ENV, "value": "hunter2"}]
    problems = cc.check_rayservice(literal, rel, ROOT, serve_ref)
    assert any(TOKEN_ENV in p and "secretKeyRef" in p for p in problems), problems


# ---- Host allowlist without a token (DNS rebinding) -------------------------------------------------------
def test_without_a_token_only_allowed_host_names_are_answered():
    from serve.api import LOOPBACK_HOSTS

    app = create_app(TinyBackend(), allowed_hosts=[*LOOPBACK_HOSTS, "10.1.2.3"])
    with TestClient(app) as c:
        for host in ("127.0.0.1:8000", "localhost", "LOCALHOST:80", "[::1]:8000", "10.1.2.3:8000", "localhost."):
            assert c.post("/search", json={"query": "a"}, headers={"host": host}).status_code == 200, host
        for host in ("evil.example", "evil.example:8000", "localhost.evil.example", "127.0.0.1.nip.io", "",
                     "10.1.2.4"):
            for method, path in (("POST", "/search"), ("GET", "/docs"), ("GET", "/openapi.json")):
                body = {"json": {"query": "a"}} if method == "POST" else {}
                r = c.request(method, path, headers={"host": host}, **body)
                assert r.status_code == 421, (host, path)
                assert "Host" in r.json()["detail"]
            assert c.get("/healthz", headers={"host": host}).status_code == 200  # health checks stay open
    with TestClient(create_app(TinyBackend(), allowed_hosts=["*"]), base_url="http://evil.example") as c:
        assert c.post("/search", json={"query": "a"}).status_code == 200  # '*': the check is off


def test_the_serve_app_checks_host_only_without_a_token(tmp_path, monkeypatch):
    from serve.app import bound_host_names, build_app

    run = _servable(tmp_path / "run")
    monkeypatch.delenv(TOKEN_ENV, raising=False)
    hosts = build_app({"run_dir": str(run), "allowed_hosts": ["my.box"]})._bound_deployment.init_args[5]
    assert set(hosts) == {"localhost", "127.0.0.1", "::1", "my.box"}
    monkeypatch.setenv(TOKEN_ENV, "s3cret")
    assert build_app({"run_dir": str(run)})._bound_deployment.init_args[5] is None  # the token guards it
    assert bound_host_names("127.0.0.1") == ["127.0.0.1"] and bound_host_names("10.0.0.5") == ["10.0.0.5"]
    assert bound_host_names("0.0.0.0") == [socket.gethostname()]


# ---- the reranker's model: never named by the run directory --------------------------------------------
def test_a_run_manifest_cannot_turn_on_remote_code(tmp_path):
    from serve.core import Reranking, RunArtifacts

    marker = tmp_path / "ran"
    run = _servable(tmp_path / "run", {"kind": "cross-encoder", "model": "x", "max_length": 32,
                                       "trust_remote_code": True})
    _model_with_custom_code(tmp_path, marker).rename(run / "teacher_model")
    spec = RunArtifacts.load(run).teacher()
    assert spec.path == str(run / "teacher_model") and spec.trust_remote_code is False
    rr = Reranking.from_run(run)
    assert type(rr.model.model).__name__ == "BertForSequenceClassification" and not marker.exists()


def test_a_run_manifest_cannot_name_a_module_or_model_to_load(tmp_path, monkeypatch):
    from serve.core import Reranking, RunArtifacts, ServeSetupError

    marker = tmp_path / "imported"
    pkg = tmp_path / "pkgs"
    pkg.mkdir()
    (pkg / "evil_teacher_pkg.py").write_text(f"open({str(marker)!r}, 'w').write('x')\n"
                                             "def get_model_path():\n    return '/nonexistent'\n")
    monkeypatch.syspath_prepend(str(pkg))
    for named in ("python:evil_teacher_pkg", "some-org/some-model", str(tmp_path / "elsewhere")):
        run = _servable(tmp_path / f"run{abs(hash(named))}", {"kind": "cross-encoder", "model": named})
        with pytest.raises(ServeSetupError, match=f"names {named!r}.*--teacher"):
            Reranking.from_run(run)
        assert not marker.exists()
    # a teacher_model/ that is a link out of the run directory is not the run's own either
    (tmp_path / "outside").mkdir()
    (tmp_path / "outside" / "config.json").write_text("{}")
    (run / "teacher_model").symlink_to(tmp_path / "outside", target_is_directory=True)
    with pytest.raises(ServeSetupError, match="no teacher_model/ inside the run directory"):
        RunArtifacts.load(run).teacher()
    # the same names are fine when the user passes them
    assert RunArtifacts.load(run).teacher("python:evil_teacher_pkg").path == "python:evil_teacher_pkg"
    assert not marker.exists()  # naming is not loading


def test_serve_cli_passes_the_teacher_and_refuses_a_run_without_one(serve_main, capsys, tmp_path):
    rc, calls = serve_main("--rerank")
    assert rc == 2 and calls == [] and "pass --teacher t" in capsys.readouterr().err
    rc, calls = serve_main("--rerank", "--teacher", "t", "--teacher-trust-remote-code")
    assert rc == 0 and calls[-1]["teacher"] == "t" and calls[-1]["teacher_trust_remote_code"] is True
