"""Find a host framework's own source, and read its functions without importing the framework.

A source is found from an environment variable naming a checkout (``MSM_PLUGIN_FASTGEN_SRC=/path``
and likewise ``_FASTVIDEO_``, ``_CAUSVID_``, ``_SELF_FORCING_``) or, for the packages that install,
from the installed package; otherwise the test that needs it is skipped, saying how to give it.
Signatures come from the source's syntax tree (the frameworks import CUDA or heavy dependencies
at import time); a function that a test runs is compiled from the checkout, with stubs given by
the test for what it names. Nothing of the frameworks is stored in this repository.
"""

from __future__ import annotations

import ast
import importlib.util
import inspect
import os
import textwrap
from functools import lru_cache
from pathlib import Path
from typing import Any, Callable, Dict, List, Optional, Tuple

import pytest

#: host -> (environment variable, installable package or None, a file that marks its checkout)
HOSTS: Dict[str, Tuple[str, Optional[str], str]] = {
    "causvid": ("MSM_PLUGIN_CAUSVID_SRC", "causvid", "causvid/dmd.py"),
    "self_forcing": ("MSM_PLUGIN_SELF_FORCING_SRC", None, "model/dmd.py"),
    "fastvideo": ("MSM_PLUGIN_FASTVIDEO_SRC", "fastvideo", "fastvideo/train/methods/distribution_matching/dmd2.py"),
    "fastgen": ("MSM_PLUGIN_FASTGEN_SRC", "fastgen", "fastgen/methods/distribution_matching/dmd2.py"),
}

Param = Tuple[str, str, bool]  # name, kind ("positional", "keyword", "*args", "**kwargs"), required


def source(host: str, *files: str) -> "Source":
    """The source of ``host`` holding ``files`` (paths from its top folder); skip when there is none.

    A variable that names a folder without the framework's files is an error, not a skip.
    """
    variable, package, marker = HOSTS[host]
    given = os.environ.get(variable)
    if given:
        root = Path(given)
        if not (root / marker).is_file():
            pytest.fail(f"{variable}={given} is not a {host} checkout: it has no {marker}")
        how = f"{variable}={given}"
    else:
        try:
            spec = importlib.util.find_spec(package) if package else None
        except ValueError:  # a stand-in module in sys.modules, not the framework
            spec = None
        if spec is None or not spec.submodule_search_locations:
            hint = f", or install the package `{package}`" if package else ""
            pytest.skip(f"no {host} source here: set {variable}=/path/to/its/checkout{hint}")
        root = Path(list(spec.submodule_search_locations)[0]).parent
        how = f"the installed {package} at {root}"
    missing = [name for name in files if not (root / name).is_file()]
    if missing:
        pytest.skip(f"{how} has no {', '.join(missing)}")
    return Source(root)


class Source:
    """A framework's source tree, read as syntax."""

    def __init__(self, root: Path) -> None:
        self.root = root

    def tree(self, path: str) -> ast.Module:
        return _parse(self.root / path)

    def text(self, path: str) -> str:
        return (self.root / path).read_text()

    def definition(self, path: str, qualname: str) -> ast.AST:
        """The class or function ``qualname`` (``"Class.method"``) defined in ``path``."""
        node: ast.AST = self.tree(path)
        for part in qualname.split("."):
            found = [n for n in ast.iter_child_nodes(node)
                     if isinstance(n, (ast.ClassDef, ast.FunctionDef, ast.AsyncFunctionDef)) and n.name == part]
            if not found:
                raise AssertionError(f"{path} has no {qualname} (the framework changed: compare again)")
            node = found[-1]
        return node

    def signature(self, path: str, qualname: str) -> List[Param]:
        return _params(self.definition(path, qualname).args)

    def compile(self, path: str, qualname: str, namespace: Dict[str, Any]) -> Callable:
        """The function ``qualname`` of ``path``, compiled alone in ``namespace`` (its globals: the stubs)."""
        node = self.definition(path, qualname)
        code = textwrap.dedent(ast.get_source_segment(self.text(path), node))
        exec(compile(code, str(self.root / path), "exec"), namespace)
        return namespace[node.name]


@lru_cache(maxsize=None)
def _parse(path: Path) -> ast.Module:
    return ast.parse(path.read_text(), filename=str(path))


def _params(args: ast.arguments) -> List[Param]:
    positional = args.posonlyargs + args.args
    first_default = len(positional) - len(args.defaults)
    out: List[Param] = [(a.arg, "positional", i < first_default) for i, a in enumerate(positional)]
    if args.vararg:
        out.append((args.vararg.arg, "*args", False))
    out += [(a.arg, "keyword", d is None) for a, d in zip(args.kwonlyargs, args.kw_defaults)]
    if args.kwarg:
        out.append((args.kwarg.arg, "**kwargs", False))
    return out


def signature_of(function: Callable) -> List[Param]:
    """A Python callable's parameters in the form :meth:`Source.signature` gives (``self`` included)."""
    kinds = {
        inspect.Parameter.POSITIONAL_ONLY: "positional",
        inspect.Parameter.POSITIONAL_OR_KEYWORD: "positional",
        inspect.Parameter.VAR_POSITIONAL: "*args",
        inspect.Parameter.KEYWORD_ONLY: "keyword",
        inspect.Parameter.VAR_KEYWORD: "**kwargs",
    }
    return [
        (p.name, kinds[p.kind], p.default is inspect.Parameter.empty and p.kind not in (p.VAR_POSITIONAL, p.VAR_KEYWORD))
        for p in inspect.signature(function).parameters.values()
    ]


def calls_of(node: ast.AST) -> List[str]:
    """The names called as bare names (global lookups) inside ``node``."""
    return [n.func.id for n in ast.walk(node) if isinstance(n, ast.Call) and isinstance(n.func, ast.Name)]


def attribute_chains(node: ast.AST) -> List[str]:
    """Every dotted attribute chain read inside ``node`` (``self.net.noise_scheduler.max_t``)."""
    chains = []
    for n in ast.walk(node):
        if isinstance(n, ast.Attribute):
            parts, value = [n.attr], n.value
            while isinstance(value, ast.Attribute):
                parts.append(value.attr)
                value = value.value
            if isinstance(value, ast.Name):
                chains.append(".".join([value.id] + parts[::-1]))
    return chains


def returned_dict_keys(function: ast.AST) -> List[str]:
    """The string keys of the dict literal(s) a function returns (its last element when it returns a tuple)."""
    keys: List[str] = []
    for n in ast.walk(function):
        if isinstance(n, ast.Return) and n.value is not None:
            value = n.value.elts[-1] if isinstance(n.value, ast.Tuple) else n.value
            if isinstance(value, ast.Dict):
                keys += [k.value for k in value.keys if isinstance(k, ast.Constant)]
    return keys


def unparse(node: ast.AST) -> str:
    return ast.unparse(node)
