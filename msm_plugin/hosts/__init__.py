"""Host adapters: one module per DMD training codebase, behind the :class:`~msm_plugin.hosts.base.Host` interface.

Built-in hosts register themselves here in code (``causvid``, ``self_forcing``, ``fastvideo``,
``fastgen``), so a source tree that was never installed has them; the installed package also
declares them in the entry-point group :data:`HOST_ENTRY_POINT_GROUP`, and loading an entry point
that resolves to a host already registered is a no-op. A fork or a framework ships its own
adapter without touching msm-plugin through the same group::

    [project.entry-points."msm_plugin.hosts"]
    my_fork = "my_fork.msm_host:MyForkHost"      # a Host subclass (or instance) whose name is my_fork

Detection (:func:`detect_host`) asks plugin hosts first, then the built-ins, in this order: a
fork's adapter is more specific than the upstream it derives from.

Example:
    >>> available_hosts()
    ['causvid', 'fastgen', 'fastvideo', 'self_forcing']
    >>> get_host("self-forcing").name
    'self_forcing'
"""

from __future__ import annotations

import re
from typing import Any, Dict, List, Union

from msm_plugin.hosts.base import Call, ExtraLosses, Host, UnequalTimesteps, recorded_calls
from msm_plugin.hosts.causvid import CausVidHost
from msm_plugin.hosts.fastgen import FastGenHost
from msm_plugin.hosts.fastvideo import FastVideoHost
from msm_plugin.hosts.self_forcing import SelfForcingHost
from msm_plugin.plugins import dist_name, entry_points, first_line, origin

__all__ = [
    "HOST_ENTRY_POINT_GROUP",
    "Call",
    "ExtraLosses",
    "Host",
    "UnequalTimesteps",
    "available_hosts",
    "detect_host",
    "get_host",
    "recorded_calls",
    "register_host",
]

HOST_ENTRY_POINT_GROUP = "msm_plugin.hosts"

_NAME = re.compile(r"^[a-z][a-z0-9_]*$")
_hosts: Dict[str, Host] = {}
_plugins: List[str] = []  # names first registered from entry points, asked first by detect_host
_loaded = False


def register_host(host: Union[Host, type], *, plugin: bool = False, origin: str = "") -> Host:
    """Register a :class:`Host` (class or instance) under its ``name``; returns the registered instance.

    Registering a host of the class already registered under that name is a no-op (the first
    instance stays, and a built-in stays a built-in). A name taken by another class raises,
    naming both. ``plugin``: asked first by :func:`detect_host`; ``origin``: how errors name it.
    """
    where = f" from {origin}" if origin else ""
    instance = host() if isinstance(host, type) else host
    if not isinstance(instance, Host):
        raise TypeError(f"expected a msm_plugin.hosts.Host subclass or instance{where}, got {host!r}")
    name = instance.name
    if not isinstance(name, str) or not _NAME.match(name):
        raise ValueError(f"host names are lower-case identifiers matching [a-z][a-z0-9_]*, got {name!r} from {host!r}{where}")
    existing = _hosts.get(name)
    if existing is not None:
        if type(existing) is not type(instance):
            raise ValueError(
                f"host {name!r} of {type(instance).__qualname__}{where} is already registered by {type(existing).__qualname__}"
            )
        return existing
    _hosts[name] = instance
    if plugin:
        _plugins.append(name)
    return instance


def _load() -> None:
    """Register the hosts installed distributions declare (once per process).

    An entry point must name the host it loads (``my_fork = "...:MyForkHost"`` with
    ``MyForkHost.name == "my_fork"``); one that fails to import, or two distributions declaring
    one name differently, raise in one line naming the plugin and its distribution.
    """
    global _loaded
    if _loaded:
        return
    claimed: Dict[str, Any] = {}
    for ep in entry_points(HOST_ENTRY_POINT_GROUP):
        first = claimed.setdefault(ep.name, ep)
        if first.value != ep.value:
            raise ValueError(f"host {ep.name!r} is declared twice: by {origin(first)} and by {origin(ep)}")
    for ep in claimed.values():
        try:
            host = ep.load()
        except Exception as exc:
            raise RuntimeError(
                f"host plugin {ep.name!r} ({ep.value}) from distribution {dist_name(ep)!r} failed to load: "
                f"{type(exc).__name__}: {first_line(exc)}"
            ) from exc
        is_host = isinstance(host, Host) or (isinstance(host, type) and issubclass(host, Host))
        if is_host and host.name != ep.name:  # anything else: register_host says what it expected
            raise ValueError(f"{origin(ep)} loads a host named {host.name!r}; the entry point's name must be the host's name")
        register_host(host, plugin=True, origin=origin(ep))
    _loaded = True


def available_hosts() -> List[str]:
    """Sorted names of the known hosts, plugins included."""
    _load()
    return sorted(_hosts)


def get_host(name: Union[str, Host]) -> Host:
    """The host registered under ``name`` (``-`` may stand for ``_``); a Host passes through.

    Example:
        >>> get_host("fast_video")
        Traceback (most recent call last):
        ...
        ValueError: unknown host 'fast_video'; known hosts: causvid, fastgen, fastvideo, self_forcing
    """
    if isinstance(name, Host):
        return name
    if not isinstance(name, str):
        raise TypeError(f"a host name must be a string, got {type(name).__name__} {name!r}")
    _load()
    host = _hosts.get(name.replace("-", "_"))
    if host is None:
        raise ValueError(f"unknown host {name!r}; known hosts: {', '.join(sorted(_hosts))}")
    return host


def detect_host(obj: Any) -> Host:
    """The first host (plugins first) whose :meth:`~Host.matches` accepts ``obj``.

    Raises:
        TypeError: no host does; the message lists what each accepts.
    """
    _load()
    order = _plugins + [n for n in _hosts if n not in _plugins]
    for name in order:
        if _hosts[name].matches(obj):
            return _hosts[name]
    accepted = ", or ".join(_hosts[n].description for n in order)
    raise TypeError(
        f"expected {accepted} (known hosts: {', '.join(order)}; pass host=... to force one), got {type(obj).__name__}"
    )


# The built-in hosts, registered in code so that a source tree that was never installed has them.
for _builtin in (CausVidHost, SelfForcingHost, FastVideoHost, FastGenHost):
    register_host(_builtin)
