"""The package's modules depend on each other in one direction: no import cycle, lazy imports included.

Every ``import`` / ``from ... import`` of a ``msm_plugin`` module is an edge, wherever it stands
(module level or inside a function). Importing ``a.b.c`` from outside the package ``a.b`` also
runs ``a/b/__init__.py`` first, so that is an edge to ``a.b`` too; the root package is the one
exception (every module lives inside it, and its ``__init__`` only re-exports).
"""

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1] / "msm_plugin"


def _modules(root: Path = ROOT):
    """``{dotted name: path}`` of every module under ``root`` (a package folder)."""
    modules = {}
    for path in root.rglob("*.py"):
        parts = path.relative_to(root.parent).with_suffix("").parts
        modules[".".join(parts[:-1] if parts[-1] == "__init__" else parts)] = path
    return modules


def _edges(name: str, path: Path, known) -> set:
    is_package = path.name == "__init__.py"
    package = name if is_package else name.rpartition(".")[0]
    targets = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            targets.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:  # relative: resolve against this module's package
                anchor = package.split(".")[: len(package.split(".")) - node.level + 1]
                base = ".".join(anchor + ([base] if base else []))
            targets.add(base)
            targets.update(f"{base}.{alias.name}" for alias in node.names if f"{base}.{alias.name}" in known)
    edges = set()
    for target in targets:
        if not target.startswith("msm_plugin"):
            continue
        while target and target not in known:  # `import msm_plugin.x.y as z` -> the module that exists
            target = target.rpartition(".")[0]
        parts = target.split(".")
        for depth in range(2, len(parts) + 1):  # the target and every package __init__ it runs on the way
            ancestor = ".".join(parts[:depth])
            if ancestor == target or not (name == ancestor or name.startswith(ancestor + ".")):
                edges.add(ancestor)
    edges.discard(name)
    return edges


def _graph(root: Path = ROOT):
    modules = _modules(root)
    return {name: _edges(name, path, modules) for name, path in modules.items()}


def _cycle(graph):
    """One import cycle as a list of modules, or None."""
    state, stack = {}, []

    def visit(node):
        state[node] = "open"
        stack.append(node)
        for nxt in sorted(graph.get(node, ())):
            if state.get(nxt) == "open":
                return stack[stack.index(nxt):] + [nxt]
            if nxt not in state:
                found = visit(nxt)
                if found:
                    return found
        stack.pop()
        state[node] = "done"
        return None

    for node in sorted(graph):
        if node not in state:
            found = visit(node)
            if found:
                return found
    return None


def test_the_package_has_no_import_cycle():
    cycle = _cycle(_graph())
    assert cycle is None, " -> ".join(cycle)


@pytest.mark.parametrize(
    "graph, expected",
    [
        ({"a": {"b"}, "b": {"c"}, "c": set()}, None),
        ({"a": {"b"}, "b": {"c"}, "c": {"a"}}, ["a", "b", "c", "a"]),
    ],
)
def test_the_cycle_finder_finds_a_constructed_cycle(graph, expected):
    assert _cycle(graph) == expected


def test_a_function_level_import_and_a_package_init_count_as_edges(tmp_path):
    root = tmp_path / "msm_plugin"
    (root / "pkg").mkdir(parents=True)
    (root / "__init__.py").write_text("")
    (root / "pkg" / "__init__.py").write_text("from msm_plugin.top import f\n")
    (root / "pkg" / "leaf.py").write_text("")
    (root / "top.py").write_text("def f():\n    from msm_plugin.pkg.leaf import g\n")
    graph = _graph(root)
    assert graph["msm_plugin.top"] == {"msm_plugin.pkg", "msm_plugin.pkg.leaf"}
    assert _cycle(graph) == ["msm_plugin.pkg", "msm_plugin.top", "msm_plugin.pkg"]

