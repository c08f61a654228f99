"""No import cycles in ktg_search/ and trainables/ (DESIGN.md: imports inside functions
count), read from the source with `ast`, without importing anything.

Top-level imports must form no cycle at all. An import inside a function that closes a
cycle (with any other imports, top-level or not) fails too, unless the cycle goes through
a module of ALLOWED below, each with its reason. `fileio.py` is the bottom layer: it
imports nothing from ktg_search.
"""
from __future__ import annotations

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
PACKAGES = ("ktg_search", "trainables")

# module -> why a function-level cycle through it is tolerated for now
ALLOWED: dict[str, str] = {
    # training -> teachers (load_pretrained) -> training (Trainer, inside pretrain)
    "ktg_search.method.teachers": "teachers.py holds both halves of teacher handling (issue 13): "
                           "`load_pretrained`, which Trainer needs to build a graph's "
                           "teachers, and `pretrain`, which drives a Trainer; the import "
                           "of Trainer inside `pretrain` is the one place this closes",
}


def _modules() -> dict[str, Path]:
    mods = {}
    for pkg in PACKAGES:
        for path in sorted((ROOT / pkg).rglob("*.py")):
            parts = list(path.relative_to(ROOT).with_suffix("").parts)
            if parts[-1] == "__init__":
                parts = parts[:-1]
            mods[".".join(parts)] = path
    return mods


MODULES = _modules()


def _targets(module: str, path: Path, node: ast.Import | ast.ImportFrom) -> set[str]:
    """The project modules an import statement reads (a package's `from . import x` is
    the module x when x is one)."""
    if isinstance(node, ast.Import):
        names = [a.name for a in node.names]
    else:
        if node.level:
            base = module.split(".")
            if path.name != "__init__.py":
                base = base[:-1]
            base = base[:len(base) - (node.level - 1)]
            stem = ".".join(base + ([node.module] if node.module else []))
        else:
            stem = node.module or ""
        names = [f"{stem}.{a.name}" if f"{stem}.{a.name}" in MODULES else stem
                 for a in node.names]
    out = set()
    for name in names:
        while name and name not in MODULES:  # a name inside a module -> the module
            name = name.rpartition(".")[0]
        if name and name != module:
            out.add(name)
    return out


def _graphs() -> tuple[dict[str, set[str]], dict[str, set[str]]]:
    """(top-level imports, imports inside functions or other blocks) per module."""
    top: dict[str, set[str]] = {}
    inner: dict[str, set[str]] = {}
    for module, path in MODULES.items():
        tree = ast.parse(path.read_text(), filename=str(path))
        top[module], inner[module] = set(), set()
        for node in tree.body:
            if isinstance(node, (ast.Import, ast.ImportFrom)):
                top[module] |= _targets(module, path, node)
        for node in ast.walk(tree):
            if isinstance(node, (ast.Import, ast.ImportFrom)) and node not in tree.body:
                inner[module] |= _targets(module, path, node)
    return top, inner


def _path(graph: dict[str, set[str]], start: str, goal: str) -> list[str] | None:
    """A shortest import path start -> ... -> goal, or None."""
    prev: dict[str, str | None] = {start: None}
    queue = [start]
    while queue:
        node = queue.pop(0)
        if node == goal:
            out = [node]
            while prev[out[-1]] is not None:
                out.append(prev[out[-1]])
            return out[::-1]
        for nxt in sorted(graph.get(node, ())):
            if nxt not in prev:
                prev[nxt] = node
                queue.append(nxt)
    return None


def _cycles(graph: dict[str, set[str]], edges: dict[str, set[str]]) -> list[list[str]]:
    """For every edge a -> b of `edges`: the cycle a -> b -> ... -> a in `graph`."""
    found = []
    for a in sorted(edges):
        for b in sorted(edges[a]):
            back = _path(graph, b, a)
            if back is not None:
                found.append([a, *back])
    return found


TOP, INNER = _graphs()
ALL = {m: TOP[m] | INNER[m] for m in MODULES}


def test_the_modules_are_found():
    assert {"ktg_search.registry", "ktg_search.method.gates", "trainables.ktg_gan"} <= set(MODULES)
    assert "ktg_search.method.gates" in TOP["ktg_search.registry"]


def test_top_level_imports_form_no_cycle():
    cycles = _cycles(TOP, TOP)
    assert not cycles, "top-level import cycles: " + "; ".join(
        " -> ".join(c) for c in cycles)


def test_imports_inside_functions_close_no_cycle():
    cycles = [c for c in _cycles(ALL, INNER) if not set(c) & set(ALLOWED)]
    assert not cycles, "import cycles through imports inside functions: " + "; ".join(
        " -> ".join(c) for c in cycles)


def test_every_allowed_module_still_needs_its_place():
    # an entry that no longer lets a cycle through is stale: remove it
    for module in ALLOWED:
        assert module in MODULES, module
        assert any(module in c for c in _cycles(ALL, INNER)), \
            f"{module} is in ALLOWED but no cycle goes through it any more"


def test_the_cycle_finder_finds_a_function_level_cycle():
    # teeth: a made-up a -> b (top) and b -> a (inside a function) is reported
    top, inner = {"a": {"b"}, "b": set()}, {"a": set(), "b": {"a"}}
    graph = {m: top[m] | inner[m] for m in top}
    assert _cycles(graph, inner) == [["b", "a", "b"]]
    assert _cycles(top, top) == []


@pytest.mark.parametrize("module", ["ktg_search.files.fileio"])
def test_the_bottom_layer_imports_nothing_from_the_package(module):
    assert not ALL[module], f"{module} imports {sorted(ALL[module])}"
    text = MODULES[module].read_text()
    assert "ktg_search" not in "".join(
        ast.unparse(n) for n in ast.walk(ast.parse(text))
        if isinstance(n, (ast.Import, ast.ImportFrom)))
