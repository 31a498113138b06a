"""Place a shipped example config where a framework's own launcher reads it, and say how to launch.

FastGen's ``train.py --config=PATH`` imports the config as a module named after the path
(``PATH`` with ``/`` as ``.`` and without ``.py``), from the checkout: the file must lie inside
the checkout and be named relative to it (an absolute path becomes a relative import and fails).
FastVideo's ``examples/train/run.sh CONFIG`` takes any path (a relative one from where it is run),
so placing is only a convenience there. Either way the config goes to ``CHECKOUT/msm_configs/``
and the command printed is the one to run, as written.

Example:
    >>> LAUNCHERS["fastgen"].command("msm_configs/fastgen_wan_t2v_dmd2_msm.py")
    'torchrun --nproc_per_node=8 train.py --config=msm_configs/fastgen_wan_t2v_dmd2_msm.py - trainer.fsdp=True'
"""

from __future__ import annotations

import shlex
from pathlib import Path
from typing import Dict, NamedTuple

__all__ = ["FOLDER", "LAUNCHERS", "Launcher", "launcher_for", "place"]

#: The folder of the checkout the configs go to (a namespace package for FastGen's import).
FOLDER = "msm_configs"


class Launcher(NamedTuple):
    """A framework's launcher: the file that marks its checkout and its command line."""

    framework: str
    marker: str  # relative to the checkout
    template: str  # the command, run from the checkout, with {path} relative to it

    def command(self, path: str) -> str:
        return self.template.format(path=shlex.quote(path))


#: By the prefix of a shipped config's name.
LAUNCHERS: Dict[str, Launcher] = {
    "fastgen": Launcher("FastGen", "fastgen/configs/config_utils.py",
                        "torchrun --nproc_per_node=8 train.py --config={path} - trainer.fsdp=True"),
    "fastvideo": Launcher("FastVideo", "examples/train/run.sh", "bash examples/train/run.sh {path}"),
}


def launcher_for(name: str) -> Launcher:
    """The launcher of the shipped config ``name`` (by its prefix); ValueError for a config that
    any path serves (CausVid and Self-Forcing read ``--config_path`` from anywhere)."""
    prefix = name.split("_")[0]
    if prefix not in LAUNCHERS:
        raise ValueError(
            f"--into places configs for {', '.join(sorted(LAUNCHERS))}; {name} is read from any path: "
            f"msm-plugin config {name} > FILE, then pass FILE to the launcher"
        )
    return LAUNCHERS[prefix]


def place(source: Path, checkout: Path) -> str:
    """Copy ``source`` (a shipped config) into ``checkout/msm_configs/`` and return the command to run.

    A file already there is kept: used as it is when identical, else refused (nothing a user
    wrote is overwritten).

    Raises:
        ValueError: ``checkout`` is not the framework's checkout, or holds another file of that name.
    """
    launcher = launcher_for(source.stem)
    if not (checkout / launcher.marker).is_file():
        raise ValueError(f"expected {checkout} to be a {launcher.framework} checkout (its top folder), but it has no {launcher.marker}")
    relative = f"{FOLDER}/{source.name}"
    target = checkout / relative
    text = source.read_text()
    if target.exists():
        if target.read_text() != text:
            raise ValueError(f"{target} exists and differs from the shipped {source.name}; move it away, or launch it as it is")
    else:
        target.parent.mkdir(exist_ok=True)
        target.write_text(text)
    return f"cd {shlex.quote(str(checkout.resolve()))} && {launcher.command(relative)}"
