"""Registry of extra generator losses that compose with a host's DMD loss.

An extra loss is registered under a short name by a *factory*: ``factory(**options)`` returns an
:class:`ExtraLoss`, i.e. an object with ``name``, ``weight`` and ``__call__(ctx) -> (loss, logs)``.
Built-in losses register themselves in code, next to their definition, with :func:`register_loss`
when ``msm_plugin`` is imported (the package imports :mod:`msm_plugin.losses`), so they exist in a
source tree that was never pip-installed; the installed package also declares them as entry
points. Third-party losses come from installed distributions through the entry-point group
:data:`ENTRY_POINT_GROUP`::

    [project.entry-points."msm_plugin.losses"]
    my_loss = "my_package.losses:MyLoss"

A factory may declare ``options_class``, a :class:`~msm_plugin.options.LossOptions` dataclass:
a config section is then validated into it and the factory is called with that one object.
A config only ever names a registered loss; no config string is imported as a module path.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Any, Callable, Dict, List

from msm_plugin.context import ExtraLoss
from msm_plugin.plugins import dist_name, entry_points, first_line, origin

__all__ = [
    "ENTRY_POINT_GROUP",
    "DuplicateLossError",
    "LossPluginError",
    "UnknownLossError",
    "available_losses",
    "get_loss",
    "load_entry_points",
    "register_loss",
]

ENTRY_POINT_GROUP = "msm_plugin.losses"

_NAME = re.compile(r"^[a-z][a-z0-9_]*$")


class DuplicateLossError(ValueError):
    """A loss name is already taken by another factory."""


class UnknownLossError(ValueError):
    """No loss is registered under the requested name."""


class LossPluginError(RuntimeError):
    """An entry-point plugin could not be loaded or is malformed."""


@dataclass
class _Registry:
    factories: Dict[str, Callable[..., ExtraLoss]] = field(default_factory=dict)
    origins: Dict[str, str] = field(default_factory=dict)
    entry_points_loaded: bool = False


_registry = _Registry()


def _check_name(name: Any, origin: str) -> str:
    if not isinstance(name, str) or not _NAME.match(name):
        raise ValueError(
            f"extra-loss names are lower-case identifiers matching [a-z][a-z0-9_]*, "
            f"got {name!r} from {origin}"
        )
    return name


def _add(name: str, factory: Any, origin: str) -> str:
    _check_name(name, origin)
    if not callable(factory):
        raise TypeError(f"extra loss {name!r} from {origin} must be a callable factory, got {type(factory).__name__}")
    existing = _registry.factories.get(name)
    if existing is factory:
        return name
    if existing is not None:
        raise DuplicateLossError(
            f"extra loss {name!r} from {origin} is already registered by {_registry.origins[name]}"
        )
    _registry.factories[name] = factory
    _registry.origins[name] = origin
    return name


def register_loss(name: str) -> Callable[[Callable[..., ExtraLoss]], Callable[..., ExtraLoss]]:
    """Class/function decorator registering an extra-loss factory under ``name``.

    Args:
        name: lower-case identifier used in configs (``extra_losses: [name]``).

    Returns:
        The decorator; it returns the factory unchanged.

    Example:
        >>> import torch
        >>> from msm_plugin import registry
        >>> @registry.register_loss("doc_zero")
        ... class Zero:
        ...     name, weight = "doc_zero", 1.0
        ...     def __call__(self, ctx):
        ...         return ctx.generated.sum() * 0, {"doc_zero": 0.0}
        >>> "doc_zero" in registry.available_losses()
        True
        >>> registry._registry.factories.pop("doc_zero") is Zero
        True
    """
    _check_name(name, "register_loss()")

    def decorator(factory: Callable[..., ExtraLoss]) -> Callable[..., ExtraLoss]:
        _add(name, factory, f"module {getattr(factory, '__module__', '?')}")
        return factory

    return decorator


def load_entry_points(group: str = ENTRY_POINT_GROUP) -> int:
    """Load every extra-loss plugin declared by installed distributions; return how many were added.

    Loaded once per process (later calls return 0). A plugin that fails to import, a malformed
    name, or a name two distributions claim raises, naming the plugin and its distribution.
    """
    if _registry.entry_points_loaded:
        return 0
    claimed: Dict[str, Any] = {}
    for ep in entry_points(group):
        _check_name(ep.name, origin(ep))
        first = claimed.setdefault(ep.name, ep)
        if first.value != ep.value:
            raise DuplicateLossError(f"extra loss {ep.name!r} is declared twice: by {origin(first)} and by {origin(ep)}")
    added = 0
    for ep in claimed.values():
        dist, where = dist_name(ep), origin(ep)
        try:
            factory = ep.load()
        except Exception as exc:
            raise LossPluginError(
                f"extra-loss plugin {ep.name!r} ({ep.value}) from distribution {dist!r} failed to load: "
                f"{type(exc).__name__}: {first_line(exc)}"
            ) from exc
        known = ep.name in _registry.factories
        _add(ep.name, factory, where)
        added += not known
    _registry.entry_points_loaded = True
    return added


def available_losses() -> List[str]:
    """Sorted names of every registered extra loss, entry-point plugins included.

    Example:
        >>> "msm" in available_losses()
        True
    """
    load_entry_points()
    return sorted(_registry.factories)


def get_loss(name: str) -> Callable[..., ExtraLoss]:
    """The factory registered under ``name``; an unknown name lists the known ones.

    Example:
        >>> term = get_loss("msm")(lam=0.5)
        >>> term.name, term.weight
        ('msm', 0.5)
    """
    load_entry_points()
    if not isinstance(name, str):
        raise TypeError(f"an extra-loss name must be a string, got {type(name).__name__} {name!r}")
    if name not in _registry.factories:
        known = ", ".join(sorted(_registry.factories)) or "none"
        raise UnknownLossError(f"unknown extra loss {name!r}; known losses: {known}")
    return _registry.factories[name]
