"""The package's shape (issue 17): no import cycle between the modules of ``distill/`` and ``serve/``,
imports inside functions included, no function longer than ``MAX_LINES``, and every module of
``TESTED_PACKAGES`` has a test file named after it where a newcomer looks (``TEST_FILE_RULE``).

Also a script: ``python tests/unit/test_architecture.py`` prints every cycle, every long function and
every module without a test file.
"""

from __future__ import annotations

import ast
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
PACKAGES = ("distill", "serve")
MAX_LINES = 80
# functions still being split (issue 17); remove an entry once it is short. Empty since serve/api.py's
# create_app was split (distill/stages/train.py:train_loop was here until 06cf16e split it)
LONG_FUNCTION_ALLOWLIST: set[str] = set()


# Where a module's tests live: the tests mirror the package tree. distill/X.py -> tests/unit/test_X.py,
# distill/<sub>/X.py -> tests/unit/<sub>/test_X.py, serve/X.py -> tests/unit/serve/test_X.py, cluster/X.py ->
# tests/unit/cluster/test_X.py; or, for a module whose tests need Ray, tests/integration/test_X.py (or the
# same mirrored path under tests/integration/). Package markers (__init__, __main__) need none.
TESTED_PACKAGES = ("distill", "serve", "cluster")
TEST_FILE_RULE = "tests/unit/<package path below distill/>/test_<module>.py or tests/integration/test_<module>.py"
# modules that may go without a test file named after them, each with the reason. Empty: every module has one.
UNTESTED_ALLOWLIST: dict[str, str] = {}


def module_name(path: Path) -> str:
    parts = list(path.relative_to(ROOT).with_suffix("").parts)
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def modules() -> dict[str, Path]:
    """{dotted name: file} of every module of PACKAGES."""
    return {module_name(p): p for pkg in PACKAGES for p in sorted((ROOT / pkg).rglob("*.py"))}


def _imported(node: ast.AST, name: str, is_package: bool, known: dict[str, Path]) -> list[str]:
    """The modules of ``known`` that one import statement of module ``name`` names."""
    if isinstance(node, ast.Import):
        targets = [a.name for a in node.names]
    else:
        base = node.module or ""
        if node.level:  # relative: from the module's package, up level - 1 packages
            pkg = name.split(".") if is_package else name.split(".")[:-1]
            pkg = pkg[: len(pkg) - (node.level - 1)]
            base = ".".join(pkg + ([base] if base else []))
        targets = [f"{base}.{a.name}" if f"{base}.{a.name}" in known else base for a in node.names]
    out = []
    for t in targets:
        while t and t not in known:  # `import distill.stages.encode.x`: the longest known prefix
            t = t.rpartition(".")[0]
        if t:
            out.append(t)
    return out


def import_graph() -> dict[str, set[str]]:
    """{module: modules of PACKAGES it imports anywhere in its body (functions included)}. Importing a
    submodule is an edge to that submodule only, not to the packages above it."""
    known = modules()
    graph: dict[str, set[str]] = {}
    for name, path in known.items():
        tree = ast.parse(path.read_text(encoding="utf-8"))
        edges: set[str] = set()
        for node in ast.walk(tree):
            if isinstance(node, (ast.Import, ast.ImportFrom)):
                edges.update(_imported(node, name, path.name == "__init__.py", known))
        edges.discard(name)
        graph[name] = edges
    return graph


def cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """The strongly connected components of more than one module (Tarjan), each sorted."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on: set[str] = set()
    out: list[list[str]] = []
    sys.setrecursionlimit(max(10_000, sys.getrecursionlimit()))

    def visit(v: str) -> None:
        index[v] = low[v] = len(index)
        stack.append(v)
        on.add(v)
        for w in graph.get(v, ()):
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            comp = []
            while True:
                w = stack.pop()
                on.discard(w)
                comp.append(w)
                if w == v:
                    break
            if len(comp) > 1:
                out.append(sorted(comp))

    for v in sorted(graph):
        if v not in index:
            visit(v)
    return out


def function_lengths() -> dict[str, int]:
    """{"path:qualified.name": lines from ``def`` to its last line} for every function and method."""
    out: dict[str, int] = {}
    for pkg in PACKAGES:
        for path in sorted((ROOT / pkg).rglob("*.py")):
            rel = path.relative_to(ROOT).as_posix()

            def walk(node: ast.AST, prefix: str) -> None:
                for child in ast.iter_child_nodes(node):
                    if isinstance(child, (ast.FunctionDef, ast.AsyncFunctionDef)):
                        out[f"{rel}:{prefix}{child.name}"] = child.end_lineno - child.lineno + 1
                        walk(child, f"{prefix}{child.name}.")
                    elif isinstance(child, ast.ClassDef):
                        walk(child, f"{prefix}{child.name}.")
                    else:
                        walk(child, prefix)

            walk(ast.parse(path.read_text(encoding="utf-8")), "")
    return out


def long_functions() -> dict[str, int]:
    return {k: n for k, n in function_lengths().items() if n > MAX_LINES and k not in LONG_FUNCTION_ALLOWLIST}


def candidate_test_files(module: Path, root: Path = ROOT) -> list[Path]:
    """The test files that count as ``module``'s (``TEST_FILE_RULE``): tests/unit mirrors the package tree
    below distill/ (serve/ and cluster/ keep their folder); tests/integration is flat or mirrored."""
    parts = module.relative_to(root).with_suffix("").parts
    sub = parts[1:-1] if parts[0] == "distill" else parts[:-1]
    name = f"test_{parts[-1]}.py"
    return [root.joinpath("tests", "unit", *sub, name), root / "tests" / "integration" / name,
            root.joinpath("tests", "integration", *sub, name)]


def modules_without_test_file(root: Path = ROOT) -> list[str]:
    """The modules of ``TESTED_PACKAGES`` (not package markers, not allowlisted) with no test file."""
    out = []
    for pkg in TESTED_PACKAGES:
        for path in sorted((root / pkg).rglob("*.py")):
            rel = path.relative_to(root).as_posix()
            if path.stem in ("__init__", "__main__") or "__pycache__" in path.parts or rel in UNTESTED_ALLOWLIST:
                continue
            if not any(c.is_file() for c in candidate_test_files(path, root)):
                out.append(rel)
    return out


# ---- tests --------------------------------------------------------------------------------------------
def test_no_import_cycle_between_modules():
    assert cycles(import_graph()) == []


def test_the_checker_sees_imports_inside_functions(tmp_path):
    graph = {"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}
    assert cycles(graph) == [["a", "b", "c"]]
    known = {"distill.sweep": Path("x"), "distill.pipeline": Path("y"), "distill.stages": Path("z"),
             "distill.stages.encode": Path("w")}
    tree = ast.parse("def f():\n    from distill import pipeline\n    from .stages import encode\n"
                     "    import distill.stages.encode.nothing\n")
    found = [m for n in ast.walk(tree) if isinstance(n, (ast.Import, ast.ImportFrom))
             for m in _imported(n, "distill.sweep", False, known)]
    assert found == ["distill.pipeline", "distill.stages.encode", "distill.stages.encode"]


def test_the_pipeline_and_the_sweep_import_one_way():
    graph = import_graph()
    assert "distill.pipeline" in graph["distill.sweep"]
    assert "distill.sweep" not in graph["distill.pipeline"]


def test_no_function_longer_than_80_lines():
    assert long_functions() == {}


def test_the_allowlist_names_functions_that_exist():
    lengths = function_lengths()
    assert set(LONG_FUNCTION_ALLOWLIST) <= set(lengths)


def test_every_module_has_a_test_file_named_after_it():
    missing = modules_without_test_file()
    assert missing == [], f"no test file by the rule {TEST_FILE_RULE} for: {missing}"


def test_the_test_file_rule_mirrors_the_package_tree(tmp_path):
    def touch(rel: str) -> None:
        (tmp_path / rel).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / rel).write_text("")

    for rel in ("distill/__init__.py", "distill/__main__.py", "distill/models.py", "distill/pipeline.py",
                "distill/losses/__init__.py", "distill/losses/kl.py", "distill/stages/train.py",
                "serve/api.py", "serve/demo.py", "cluster/check.py", "tests/unit/test_models.py",
                "tests/integration/test_pipeline.py", "tests/unit/losses/test_kl.py",
                "tests/unit/test_train.py", "tests/unit/test_api.py", "tests/unit/serve/test_demo.py",
                "tests/unit/cluster/test_check.py"):
        touch(rel)
    # stages/train.py's test is not tests/unit/test_train.py, serve/api.py's not tests/unit/test_api.py
    assert modules_without_test_file(tmp_path) == ["distill/stages/train.py", "serve/api.py"]
    touch("tests/unit/stages/test_train.py")
    touch("tests/integration/serve/test_api.py")
    assert modules_without_test_file(tmp_path) == []
    assert candidate_test_files(tmp_path / "distill/losses/kl.py", tmp_path)[0] == \
        tmp_path / "tests/unit/losses/test_kl.py"


def test_the_untested_allowlist_names_modules_that_exist():
    assert all((ROOT / rel).is_file() and reason for rel, reason in UNTESTED_ALLOWLIST.items())


if __name__ == "__main__":
    found = cycles(import_graph())
    for c in found:
        print("cycle:", " <-> ".join(c))
    lengths = function_lengths()
    for k, n in sorted(lengths.items(), key=lambda kv: -kv[1])[:15]:
        print(f"{n:4d} {k}" + ("  (allowlisted)" if k in LONG_FUNCTION_ALLOWLIST else ""))
    missing = modules_without_test_file()
    for rel in missing:
        print("no test file:", rel)
    sys.exit(1 if found or long_functions() or missing else 0)
