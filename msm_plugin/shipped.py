"""The files msm-plugin ships next to its code: patches for host scripts and example configs.

The repository keeps one copy of each, at the top level (``patches/*.patch``,
``examples/configs/*.yaml`` and ``*.py`` for FastGen's Python experiment configs); building the wheel copies them into ``msm_plugin/_shipped/``
(see ``setup.py``). An installed package reads that copy, a source checkout the top-level folders.

Names: a patch ``<host>-extra-losses.patch`` is called ``<host>`` (``causvid``), a config
by its file stem (``causvid_wan_stage1_msm``), so a file dropped into either folder is found
without code changes.

>>> "causvid" in shipped_files("patch")
True
>>> find_shipped("config", "causvid_wan_stage1_msm.yaml").name
'causvid_wan_stage1_msm.yaml'
"""

from __future__ import annotations

from pathlib import Path
from typing import Dict, NamedTuple, Tuple

__all__ = ["KINDS", "find_shipped", "shipped_files"]


class _Kind(NamedTuple):
    source: str  # folder in the repository
    packaged: str  # folder under msm_plugin/_shipped in a built wheel
    suffixes: Tuple[str, ...]
    name_suffix: str  # dropped from the file stem to form the name


#: What ships: kind -> where it lives in the repository and in the wheel.
KINDS: Dict[str, _Kind] = {
    "patch": _Kind("patches", "patches", (".patch",), "-extra-losses"),
    "config": _Kind("examples/configs", "configs", (".yaml", ".py"), ""),
}
_PACKAGE = Path(__file__).resolve().parent


def _folder(kind: str) -> Path:
    spec = KINDS[kind]
    installed = _PACKAGE / "_shipped" / spec.packaged
    return installed if installed.is_dir() else _PACKAGE.parent / spec.source


def _name(path: Path, kind: str) -> str:
    stem, cut = path.stem, KINDS[kind].name_suffix
    return stem[: -len(cut)] if cut and stem.endswith(cut) else stem


def shipped_files(kind: str) -> Dict[str, Path]:
    """Every shipped file of ``kind`` (``"patch"`` or ``"config"``) as ``{name: path}``, sorted by name."""
    if kind not in KINDS:
        raise ValueError(f"`kind` should be one of {tuple(KINDS)}, got {kind!r}")
    folder = _folder(kind)
    files = [path for path in folder.iterdir() if path.suffix in KINDS[kind].suffixes] if folder.is_dir() else []
    return dict(sorted((_name(path, kind), path) for path in files))


def find_shipped(kind: str, name: str) -> Path:
    """The shipped file of ``kind`` called ``name`` (its file name works too); an unknown name lists the known ones."""
    files = shipped_files(kind)
    key = _name(Path(name), kind) if name.endswith(KINDS[kind].suffixes) else name
    if key not in files:
        raise ValueError(f"no shipped {kind} named {name!r}; shipped: {', '.join(files) or 'none'}")
    return files[key]
