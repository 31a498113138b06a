"""``msm-plugin``: the shipped patches and example configs, and a check of the environment.

    msm-plugin patch NAME DIR [--check]   apply the shipped patch NAME (e.g. causvid) to the checkout DIR
    msm-plugin config [NAME]              print the example config NAME (without NAME: list them)
    msm-plugin config NAME --into DIR     place it where the framework checkout DIR's launcher reads
                                          it (FastGen, FastVideo) and print the command to run
    msm-plugin doctor                     torch and CUDA, hosts (importable here?), extra losses, where each comes from

Exit status: 0 done, 1 the patch does not apply or a host / loss plugin is broken, 2 a usage error
(unknown name, missing folder); errors are one line on stderr.
"""

from __future__ import annotations

import argparse
import functools
import importlib
import importlib.util
import os
import platform
import re
import shutil
import subprocess
import sys
from importlib import metadata
from pathlib import Path
from typing import List, Mapping, Optional

from msm_plugin.launch import FOLDER, place
from msm_plugin.shipped import find_shipped, shipped_files

__all__ = ["build_parser", "main", "probe_host"]


def _first_line(text: str) -> str:
    lines = [line for line in str(text).strip().splitlines() if line.strip()]
    return lines[0].strip() if lines else ""


def probe_host(module: str) -> str:
    """Whether ``module`` imports here: ``"importable"``, ``"not installed"`` or why the import failed.

    Hosts run code at import time (CausVid and Self-Forcing touch CUDA), so any exception is a
    finding, not a crash.

    >>> probe_host("json")
    'importable'
    >>> probe_host("no_such_host_module")
    'not installed'
    """
    top = module.split(".")[0]
    try:
        if importlib.util.find_spec(top) is None:
            return "not installed"
        importlib.import_module(module)
    except Exception as error:  # whatever the host raises while importing
        return f"installed, import fails: {type(error).__name__}: {_first_line(error)}"
    return "importable"


@functools.lru_cache(maxsize=1)
def _distributions() -> Mapping[str, List[str]]:
    """Top-level import names -> the installed distributions providing them (read once)."""
    # Python 3.9 lacks packages_distributions; the module then still says where a plugin comes from.
    return metadata.packages_distributions() if hasattr(metadata, "packages_distributions") else {}


def _owner(obj: object) -> str:
    """``"distribution NAME (module:Qualname)"`` for a loss factory or a host class."""
    module = getattr(obj, "__module__", "?")
    dists = sorted(set(_distributions().get(module.split(".")[0], ())))
    where = f"distribution {', '.join(dists)}" if dists else "no installed distribution"
    return f"{where} ({module}:{getattr(obj, '__qualname__', obj)})"


def _losses() -> List[str]:
    """Per registered extra loss: the distribution that ships its factory and the factory, then its
    config options (when it declares them; MSM's variants such as ``pair_weights`` are options)."""
    from msm_plugin.registry import available_losses, get_loss

    lines = []
    for name in available_losses():
        factory = get_loss(name)
        lines.append(f"  {name:<18} {_owner(factory)}")
        options = getattr(factory, "options_class", None)
        if options is not None:
            lines.append(f"  {'':<18} options: {', '.join(options.option_names())}")
    return lines


def _hosts() -> List[str]:
    """One line per known host: whether its framework imports here, and where the adapter comes from."""
    from msm_plugin.hosts import available_hosts, get_host

    lines = []
    here = os.getcwd()
    added = here not in sys.path  # Self-Forcing imports from its checkout, not from site-packages
    if added:
        sys.path.append(here)
    try:
        for name in available_hosts():
            host = get_host(name)
            module = host.framework_module
            found = f"{probe_host(module)} (import {module})" if module else "no framework module to probe"
            lines.append(f"  {name:<18} {found}; adapter: {_owner(type(host))}")
    finally:
        if added:
            sys.path.remove(here)
    return lines


def doctor() -> int:
    """Print the environment report; 1 when a host or extra-loss plugin fails to load."""
    import torch

    import msm_plugin

    print(f"msm-plugin {msm_plugin.__version__} at {Path(msm_plugin.__file__).parent}")
    print(f"python {platform.python_version()} on {platform.machine()}")
    if torch.cuda.is_available():
        names = ", ".join(torch.cuda.get_device_name(i) for i in range(torch.cuda.device_count()))
        cuda = f"CUDA {torch.version.cuda}, {torch.cuda.device_count()} device(s): {names}"
    else:
        cuda = "built without CUDA" if torch.version.cuda is None else f"CUDA {torch.version.cuda} build, no device visible"
    print(f"torch {torch.__version__}: {cuda}")
    status = 0
    for title, listing in (("hosts", _hosts), ("extra losses", _losses)):
        print(f"{title}:")
        try:
            print("\n".join(listing()))
        except Exception as error:  # a broken plugin: the registry's message names it and its distribution
            print(f"  cannot list them: {type(error).__name__}: {_first_line(error)}")
            status = 1
    print(f"shipped patches: {', '.join(shipped_files('patch')) or 'none'}")
    print(f"shipped configs: {', '.join(shipped_files('config')) or 'none'}")
    return status


def _git_apply(directory: Path, patch: Path, *flags: str) -> subprocess.CompletedProcess:
    # The ceiling keeps git from treating DIR as a subfolder of an enclosing repository, whose
    # root would then anchor the patch's paths instead of DIR.
    env = {**os.environ, "GIT_CEILING_DIRECTORIES": str(directory.resolve().parent)}
    return subprocess.run(
        ["git", "apply", *flags, str(patch.resolve())], cwd=directory, env=env, capture_output=True, text=True
    )


def patch(name: str, directory: Path, check: bool = False) -> int:
    """Apply (or with ``check`` only test) the shipped patch ``name`` to the host checkout ``directory``."""
    path = find_shipped("patch", name)
    if not directory.is_dir():
        raise ValueError(f"expected DIR to be a {name} checkout folder, got {directory} (not a folder)")
    targets = re.findall(r"^diff --git a/(\S+) b/", path.read_text(), flags=re.M)
    missing = [target for target in targets if not (directory / target).is_file()]
    if missing:
        raise ValueError(f"{directory} is not a {name} checkout: it has no {missing[0]}")
    if shutil.which("git") is None:
        raise ValueError("applying a patch needs git on PATH, found none")
    if _git_apply(directory, path, "--check", "--reverse").returncode == 0:
        print(f"{path.name} is already applied in {directory}; nothing to do")
        return 0
    test = _git_apply(directory, path, "--check")
    if test.returncode != 0:
        print(f"msm-plugin: {path.name} does not apply to {directory}: {_first_line(test.stderr)}", file=sys.stderr)
        return 1
    if check:
        print(f"{path.name} applies cleanly to {directory}")
        return 0
    done = _git_apply(directory, path)
    if done.returncode != 0:
        print(f"msm-plugin: git apply failed in {directory}: {_first_line(done.stderr)}", file=sys.stderr)
        return 1
    print(f"applied {path.name} to {directory} ({', '.join(targets)})")
    return 0


def config(name: Optional[str], into: Optional[Path] = None) -> int:
    """Print the example config ``name``, list the shipped ones, or place ``name`` in the checkout
    ``into`` and print the command that launches it (:func:`msm_plugin.launch.place`)."""
    if name is None:
        if into is not None:
            raise ValueError("--into needs the name of the config to place")
        for known, path in shipped_files("config").items():
            print(f"{known:<28} {_first_line(path.read_text()).lstrip('# ').strip(chr(34))}")  # YAML comment or docstring
        return 0
    source = find_shipped("config", name)
    if into is None:
        print(source.read_text(), end="")
        return 0
    command = place(source, into)
    print(f"placed {source.name} in {into / FOLDER}; launch it with:")
    print(command)
    return 0


def build_parser() -> argparse.ArgumentParser:
    """The ``msm-plugin`` argument parser."""
    parser = argparse.ArgumentParser(prog="msm-plugin", description="msm-plugin's shipped files and an environment check.")
    commands = parser.add_subparsers(dest="command", required=True, metavar="{patch,config,doctor}")
    patches = ", ".join(shipped_files("patch")) or "none"
    sub = commands.add_parser("patch", help="apply a shipped patch to a host checkout")
    sub.add_argument("name", help=f"which patch (shipped: {patches})")
    sub.add_argument("directory", type=Path, metavar="DIR", help="the host's checkout (its top folder)")
    sub.add_argument("--check", action="store_true", help="only say whether it applies; change nothing")
    sub = commands.add_parser("config", help="print a shipped example config, or place it in a framework checkout")
    sub.add_argument("name", nargs="?", default=None, help="which config (omit to list them)")
    sub.add_argument("--into", type=Path, default=None, metavar="DIR",
                     help="a FastGen / FastVideo checkout: write the config there and print the launch command")
    commands.add_parser("doctor", help="torch and CUDA, hosts, extra losses and where each comes from")
    return parser


def main(argv=None) -> int:
    """Run ``msm-plugin``; returns the exit status."""
    args = build_parser().parse_args(argv)
    try:
        if args.command == "patch":
            return patch(args.name, args.directory, check=args.check)
        if args.command == "config":
            return config(args.name, args.into)
        return doctor()
    except ValueError as error:  # a bad name or path: find_shipped and patch say which
        print(f"msm-plugin: error: {error}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
