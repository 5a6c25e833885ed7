"""Operations: install profiles (a serving node without DeepSpeed), ``--version``, ``ray-distill serve``,
a closed stdout without a traceback, and the run's log copied to ``runs/<name>/run.log``."""

import logging
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

from distill import __version__, cli
from distill.config import build_config
from distill.data import DataError
from distill.pipeline import LOG_FILE, logged, run_log, run_pipeline

ROOT = Path(__file__).resolve().parents[2]
PIPELINE_ONLY = ("deepspeed", "matplotlib", "ranx", "sentence-transformers")


def _name(req: str) -> str:
    return re.split(r"[\[<>=!~; ]", req, maxsplit=1)[0].lower()


# ---- install profiles ----------------------------------------------------------------------------------
def test_extras_keep_pipeline_packages_out_of_the_serving_install():
    tomllib = pytest.importorskip("tomllib")
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    base = {_name(r) for r in project["dependencies"]}
    extras = project["optional-dependencies"]
    assert project["version"] == __version__
    assert not base & set(PIPELINE_ONLY), base & set(PIPELINE_ONLY)
    assert set(PIPELINE_ONLY) <= {_name(r) for r in extras["train"]}
    assert "ray[train]>=2.50" in extras["train"] and not any("train" in r for r in project["dependencies"])
    assert extras["serve"] == [] and {"pytest", "sentence-transformers"} <= {_name(r) for r in extras["test"]}
    make = (ROOT / "Makefile").read_text()
    assert "-e '.[train]'" in make and "-e '.[train,test]'" in make  # make demo / make test


def test_serving_code_imports_without_the_pipeline_packages():
    """What serve/ imports (and the distill modules it calls) needs none of the [train] extra."""
    code = """
import importlib.abc, sys
class Block(importlib.abc.MetaPathFinder):
    def find_spec(self, name, path, target=None):
        if name.split(".")[0] in ("deepspeed", "matplotlib", "ranx", "sentence_transformers"):
            raise ImportError("not installed: " + name)
sys.meta_path.insert(0, Block())
import serve.__main__, serve.app, serve.core, serve.api, serve.client, serve.demo
import distill.models, distill.index, distill.ensemble, distill.reader, distill.stages.score
print("ok")
"""
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300, cwd=ROOT)
    assert r.returncode == 0 and r.stdout.strip() == "ok", r.stderr[-2000:]


# ---- --version, serve ----------------------------------------------------------------------------------
def test_version_flag_prints_the_package_version(capsys):
    with pytest.raises(SystemExit) as exit_:
        cli.main(["--version"])
    assert exit_.value.code == 0 and capsys.readouterr().out.strip() == f"ray-distill {__version__}"
    r = subprocess.run([sys.executable, "-m", "distill", "--version"], capture_output=True, text=True,
                       timeout=120, cwd=ROOT)
    assert r.returncode == 0 and r.stdout.strip() == f"ray-distill {__version__}", r.stderr


def test_serve_subcommand_hands_its_arguments_to_python_m_serve(monkeypatch):
    import serve.__main__ as serve_main

    calls = []
    monkeypatch.setattr(serve_main, "main", lambda argv, prog: calls.append((argv, prog)) or 7)
    assert cli.main(["serve", "runs/demo", "--rerank", "--port", "8001"]) == 7
    assert calls == [(["runs/demo", "--rerank", "--port", "8001"], "ray-distill serve")]


def test_serve_subcommand_help_and_a_missing_run_dir(tmp_path, capsys):
    with pytest.raises(SystemExit) as exit_:
        cli.main(["serve", "--help"])
    out = capsys.readouterr().out
    assert exit_.value.code == 0 and out.startswith("usage: ray-distill serve") and "--rerank" in out
    assert cli.main(["serve", str(tmp_path / "nope")]) == 2  # python -m serve's own check and message
    assert f"error: run directory {tmp_path / 'nope'} does not exist" in capsys.readouterr().err


# ---- a closed pipe -------------------------------------------------------------------------------------
def test_show_config_into_a_closed_pipe_ends_without_a_traceback():
    read, write = os.pipe()
    os.close(read)  # the reader is gone before anything is written: the first write fails (EPIPE)
    try:
        r = subprocess.run([sys.executable, "-m", "distill", "show-config", "configs/demo.yaml"], stdout=write,
                           stderr=subprocess.PIPE, text=True, timeout=120, cwd=ROOT)
    finally:
        os.close(write)
    assert r.returncode == cli.EXIT_BROKEN_PIPE and r.stderr == ""


def test_show_config_piped_to_head_leaves_no_traceback():
    r = subprocess.run(f"{sys.executable} -m distill show-config configs/demo.yaml | head -1", shell=True,
                       capture_output=True, text=True, timeout=120, cwd=ROOT)
    assert r.stdout == "{\n" and "Traceback" not in r.stderr and "BrokenPipeError" not in r.stderr, r.stderr


# ---- run.log -------------------------------------------------------------------------------------------
def test_run_log_copies_the_lines_for_the_block_only(tmp_path, capsys):
    printed = []
    log = logged(printed.append)
    assert logged(log) is log  # a sweep's nested runs do not copy twice
    before = logging.getLogger("distill").handlers[:]
    with run_log(tmp_path / LOG_FILE):
        log("[data] 3 rows")
        logging.getLogger("distill.stages.train").debug("not at INFO")
    log("[after] not copied")
    assert printed == ["[data] 3 rows", "[after] not copied"]
    text = (tmp_path / LOG_FILE).read_text()
    assert re.search(r"^\S+ \S+ INFO distill\.pipeline: \[data\] 3 rows$", text, re.M), text
    assert "not at INFO" not in text and "[after]" not in text
    assert logging.getLogger("distill").handlers == before
    assert capsys.readouterr() == ("", "")  # logging adds nothing to the console


def test_a_run_that_fails_on_its_data_still_leaves_run_log(tmp_path):
    cfg = build_config({"teacher": {"model": "t"}, "student": {"model": "s"}},
                       [f"runs_dir={tmp_path / 'runs'}", "name=badrun", f"data.dir={tmp_path / 'missing'}"])
    printed = []
    with pytest.raises(DataError, match="data directory not found"):
        run_pipeline(cfg, log=printed.append)
    text = (tmp_path / "runs" / "badrun" / LOG_FILE).read_text()
    assert printed == [f"[run] badrun: run directory {tmp_path / 'runs' / 'badrun'}"]
    assert f"ray-distill {__version__}: run badrun, stages teacher, mine" in text
    assert printed[0] in text
    assert "ERROR distill.pipeline: [run] stopped by DataError: data directory not found" in text
    assert "Traceback" in text  # the file keeps the traceback; the console gets the CLI's one-line error
