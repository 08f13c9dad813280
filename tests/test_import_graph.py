"""Every module of segger imports, and the import graph has no cycle.

The graph is read from the source (AST) over ``src/segger``, module-level imports *and* imports
inside functions (a function-local import hides a cycle, it does not remove it). ``segger.napari``
sits on top of the core: it may import the core, the core never imports it.
"""

from __future__ import annotations

import ast
import importlib
from pathlib import Path

import pytest

SRC = Path(__file__).resolve().parents[1] / "src"
PKG = SRC / "segger"


def _modules() -> dict[str, Path]:
    out = {}
    for p in sorted(PKG.rglob("*.py")):
        rel = p.relative_to(SRC).with_suffix("")
        parts = list(rel.parts)
        if parts[-1] == "__init__":
            parts = parts[:-1]
        out[".".join(parts)] = p
    return out


MODULES = _modules()


def _target(name: str, modules: dict[str, Path]) -> str | None:
    """The segger module ``name`` refers to (itself, or the package holding an imported attribute)."""
    while name and name not in modules:
        name = name.rpartition(".")[0]
    return name or None


def import_graph(modules: dict[str, Path] = MODULES) -> dict[str, set[str]]:
    graph: dict[str, set[str]] = {}
    for mod, path in modules.items():
        pkg = mod if path.name == "__init__.py" else mod.rpartition(".")[0]
        deps: set[str] = set()
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"), str(path))):
            names: list[str] = []
            if isinstance(node, ast.Import):
                names = [a.name for a in node.names]
            elif isinstance(node, ast.ImportFrom):
                base = node.module or ""
                if node.level:
                    up = pkg.split(".")[: len(pkg.split(".")) - node.level + 1]
                    base = ".".join(up + ([base] if base else []))
                # ``from pkg import submodule`` needs the submodule (its package runs first anyway);
                # ``from pkg import attribute`` needs the package
                names = [f"{base}.{a.name}" if f"{base}.{a.name}" in modules else base for a in node.names]
            for n in names:
                if n.startswith("segger"):
                    t = _target(n, modules)
                    # an attribute of a package (``from segger.data import X``) depends on the package
                    if t and t != mod:
                        deps.add(t)
                        # importing pkg.sub runs pkg/__init__.py first: a dependency on each package
                        # above the target, except the importer's own (they are running already)
                        parts = t.split(".")
                        for i in range(1, len(parts)):
                            anc = ".".join(parts[:i])
                            if anc in modules and not (mod == anc or mod.startswith(anc + ".")):
                                deps.add(anc)
        graph[mod] = deps
    return graph


def cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """Strongly connected components with more than one module (Tarjan), each sorted."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on: set[str] = set()
    out: list[list[str]] = []
    counter = [0]

    def visit(v: str) -> None:
        index[v] = low[v] = counter[0]
        counter[0] += 1
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


def _core(graph):
    return {m: {d for d in deps if not d.startswith("segger.napari")} for m, deps in graph.items()
            if not m.startswith("segger.napari")}


def test_no_import_cycles_in_the_core():
    found = cycles(_core(import_graph()))
    assert not found, "import cycles: " + "; ".join(" <-> ".join(c) for c in found)


def test_no_import_cycles_in_the_gui():
    found = cycles(import_graph())
    assert not found, "import cycles: " + "; ".join(" <-> ".join(c) for c in found)


def test_the_cycle_check_finds_a_cycle(tmp_path):
    fake = {"segger.a": tmp_path / "a.py", "segger.b": tmp_path / "b.py", "segger.c": tmp_path / "c.py"}
    fake["segger.a"].write_text("def f():\n    from segger.b import g\n")
    fake["segger.b"].write_text("import segger.a\n")
    fake["segger.c"].write_text("from segger import a\n")
    assert cycles(import_graph(fake)) == [["segger.a", "segger.b"]]


def test_the_core_never_imports_the_gui():
    graph = import_graph()
    bad = sorted(m for m, deps in graph.items() if not m.startswith("segger.napari")
                 and any(d.startswith("segger.napari") for d in deps))
    assert not bad, f"core modules importing segger.napari: {bad}"


@pytest.mark.parametrize("mod", [m for m in MODULES if not m.startswith("segger.napari")])
def test_every_core_module_imports(mod):
    importlib.import_module(mod)
