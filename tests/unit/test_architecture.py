"""The package's shape (issue 17): no import cycle between the modules of ``distill/`` and ``serve/``,
imports inside functions included, and no function longer than ``MAX_LINES``.

Also a script: ``python tests/unit/test_architecture.py`` prints every cycle and every long function.
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


if __name__ == "__main__":
    found = cycles(import_graph())
    for c in found:
        print("cycle:", " <-> ".join(c))
    lengths = function_lengths()
    for k, n in sorted(lengths.items(), key=lambda kv: -kv[1])[:15]:
        print(f"{n:4d} {k}" + ("  (allowlisted)" if k in LONG_FUNCTION_ALLOWLIST else ""))
    sys.exit(1 if found or long_functions() else 0)
