"""The package's import rules, read from the source with `ast`, without importing anything.

1. No import cycles in ktg_search/ and trainables/ by the strict rule: imports inside
   functions count, and a package's `from . import x` is an import of the module x.
   There is no allow-list.
2. Layers point one way (DESIGN.md; each subpackage's `__init__` says the same): LAYERS
   lists what each layer may import. The method imports nothing from the search, results,
   report or commands; the data nothing from the method; `files/fileio.py` nothing from
   ktg_search at all.
3. Only the search (and the Tune trainables) import Ray.
"""
from __future__ import annotations

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
PACKAGES = ("ktg_search", "trainables")

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
    # the registry imports its objective rules (plain arithmetic); the rest it names by
    # where they live (`Ref`), imported on first use, so torch stays out of start-up
    assert "ktg_search.method.scoring" in TOP["ktg_search.registry"]
    assert "ktg_search.method.gates" not in ALL["ktg_search.registry"]


def test_top_level_imports_form_no_cycle():
    cycles = _cycles(TOP, TOP)
    assert not cycles, "top-level import cycles: " + "; ".join(
        " -> ".join(c) for c in cycles)


def test_imports_inside_functions_close_no_cycle():
    cycles = _cycles(ALL, INNER)
    assert not cycles, "import cycles through imports inside functions: " + "; ".join(
        " -> ".join(c) for c in cycles)


def test_the_cycle_finder_finds_a_function_level_cycle():
    # teeth: a made-up a -> b (top) and b -> a (inside a function) is reported
    top, inner = {"a": {"b"}, "b": set()}, {"a": set(), "b": {"a"}}
    graph = {m: top[m] | inner[m] for m in top}
    assert _cycles(graph, inner) == [["b", "a", "b"]]
    assert _cycles(top, top) == []


def test_a_package_from_dot_import_is_an_import_of_the_module():
    # `from . import bench, ...` in commands/__init__.py reads the module commands.bench
    assert "ktg_search.commands.bench" in TOP["ktg_search.commands"]


# ---- layers ------------------------------------------------------------------------------
_BASE = {"errors", "registry"}
# layer -> the layers it may import (its own always). `registry` is the one hub: every
# layer looks kinds up there, and it names the implementations in method/ and data/.
LAYERS: dict[str, set[str]] = {
    "errors": set(),
    "files": {"errors"},
    "registry": {"errors", "files", "data", "method"},
    "data": _BASE | {"files"},
    "method": _BASE | {"files", "data"},
    "results": _BASE | {"files", "data", "method"},
    "search": _BASE | {"files", "data", "method", "results", "trainables"},
    "trainables": _BASE | {"files", "data", "method", "search"},
    "studies": _BASE | {"files", "data", "method", "results", "search"},
    "report": _BASE | {"files", "data", "method", "results", "search"},
    "commands": _BASE | {"files", "data", "method", "results", "search", "studies",
                         "report"},
    "cli": {"errors", "commands"},
    "__init__": _BASE | {"files", "data", "method", "results", "search"},
}
RAY_LAYERS = {"search", "trainables"}


def layer_of(module: str) -> str:
    """ktg_search.method.graph -> method; ktg_search.cli -> cli; trainables.x -> trainables."""
    parts = module.split(".")
    if parts[0] != "ktg_search":
        return parts[0]
    return parts[1] if len(parts) > 1 else "__init__"


def layer_breaks(imports: dict[str, set[str]]) -> list[str]:
    """Every import that goes against LAYERS, as 'a -> b (layer x may not import y)'."""
    out = []
    for module, targets in sorted(imports.items()):
        mine = layer_of(module)
        for target in sorted(targets):
            theirs = layer_of(target)
            if theirs != mine and theirs not in LAYERS[mine]:
                out.append(f"{module} -> {target} ({mine} may not import {theirs})")
    return out


def test_every_module_belongs_to_a_layer():
    assert {layer_of(m) for m in MODULES} <= set(LAYERS)


def test_layers_point_one_way():
    breaks = layer_breaks(ALL)
    assert not breaks, "imports against the layers: " + "; ".join(breaks)


def test_the_layer_check_can_fail():
    # teeth: the method reaching into the search, and the data into the method
    made_up = {"ktg_search.method.training": {"ktg_search.search.driver"},
               "ktg_search.data.metrics": {"ktg_search.method.graph"},
               "ktg_search.files.fileio": {"ktg_search.files.checks"}}
    assert layer_breaks(made_up) == [
        "ktg_search.data.metrics -> ktg_search.method.graph (data may not import method)",
        "ktg_search.method.training -> ktg_search.search.driver "
        "(method may not import search)"]


def _third_party(path: Path) -> set[str]:
    """The top-level names of the non-project modules a file imports, anywhere in it."""
    out = set()
    for node in ast.walk(ast.parse(path.read_text(), filename=str(path))):
        if isinstance(node, ast.Import):
            out |= {a.name.split(".")[0] for a in node.names}
        elif isinstance(node, ast.ImportFrom) and not node.level and node.module:
            out.add(node.module.split(".")[0])
    return out


def test_only_the_search_imports_ray():
    bad = [m for m, path in MODULES.items()
           if "ray" in _third_party(path) and layer_of(m) not in RAY_LAYERS]
    assert not bad, f"modules outside {sorted(RAY_LAYERS)} that import Ray: {bad}"
    # teeth: the search's driver does import Ray, and the check sees it
    assert "ray" in _third_party(MODULES["ktg_search.search.driver"])


@pytest.mark.parametrize("module", ["ktg_search.files.fileio"])
def test_the_bottom_layer_imports_nothing_from_the_package(module):
    assert not ALL[module], f"{module} imports {sorted(ALL[module])}"
    text = MODULES[module].read_text()
    assert "ktg_search" not in "".join(
        ast.unparse(n) for n in ast.walk(ast.parse(text))
        if isinstance(n, (ast.Import, ast.ImportFrom)))


def test_every_registered_reference_resolves():
    # a `Ref` names its module as text, which the import rules above cannot see: resolve
    # every one, so a moved or renamed implementation fails here, not at a user's run
    from ktg_search import registry
    regs = [v for v in vars(registry).values() if isinstance(v, registry.Registry)]
    assert len(regs) >= 7
    for reg in regs:
        for name in reg.names():
            entry = reg.get(name)
            assert not isinstance(entry, registry.Ref), (reg.kind, name)
            for field in ("fn", "load", "check_arg"):
                inner = getattr(entry, field, None)
                if isinstance(inner, registry.Ref):
                    assert callable(inner.resolve()), (reg.kind, name, field)
