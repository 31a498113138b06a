"""Entry points of installed distributions: the one place both registries (losses, hosts) read them.

Example:
    >>> entry_points("msm_plugin.no_such_group")
    []
"""

from __future__ import annotations

from importlib import metadata
from typing import List

__all__ = ["dist_name", "entry_points", "first_line", "origin"]


def entry_points(group: str) -> List[metadata.EntryPoint]:
    """The entry points every installed distribution declares in ``group``."""
    eps = metadata.entry_points()
    if hasattr(eps, "select"):
        return list(eps.select(group=group))
    return list(eps.get(group, []))  # Python 3.9: a dict of groups


def dist_name(ep: metadata.EntryPoint) -> str:
    """The distribution that declares ``ep`` (``"<unknown distribution>"`` when metadata lacks it)."""
    dist = getattr(ep, "dist", None)
    return getattr(dist, "name", None) or "<unknown distribution>"


def origin(ep: metadata.EntryPoint) -> str:
    """How error messages name ``ep``: its name, value and distribution."""
    return f"entry point {ep.name!r} = {ep.value!r} of distribution {dist_name(ep)!r}"


def first_line(error: BaseException) -> str:
    """The first non-empty line of ``error``'s message, so that a plugin's failure reads in one line.

    Example:
        >>> first_line(SyntaxError("invalid syntax\\n  x = = 1"))
        'invalid syntax'
    """
    lines = [line.strip() for line in str(error).splitlines() if line.strip()]
    return lines[0] if lines else ""
