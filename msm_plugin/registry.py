"""Registry of extra generator losses that compose with a host's DMD loss.

An extra loss is registered under a short name by a *factory*: ``factory(**options)`` returns an
:class:`ExtraLoss`, i.e. an object with ``name``, ``weight`` and ``__call__(ctx) -> (loss, logs)``.
Built-in losses (``msm``) register themselves in code, next to their definition, with
:func:`register_loss`, so they exist in a source tree that was never pip-installed. Third-party
losses come from installed distributions through the entry-point group :data:`ENTRY_POINT_GROUP`::

    [project.entry-points."msm_plugin.losses"]
    my_loss = "my_package.losses:MyLoss"

A factory may declare ``options_class``, a :class:`~msm_plugin.options.LossOptions` dataclass:
a config section is then validated into it and the factory is called with that one object.
A config only ever names a registered loss; no config string is imported as a module path.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from functools import cached_property
from importlib import metadata
from typing import Any, Callable, Dict, Iterable, List, Mapping, Optional, Protocol, Sequence, Tuple, runtime_checkable

import torch
from torch import Tensor

__all__ = [
    "ENTRY_POINT_GROUP",
    "DuplicateLossError",
    "ExtraLoss",
    "LossContext",
    "LossPluginError",
    "UnknownLossError",
    "available_losses",
    "compose",
    "dmd_normalizer",
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


@dataclass(frozen=True)
class LossContext:
    """What the host computed for one generator step, handed to every extra loss.

    Attributes:
        generated: generator output ``[B, F, C, H, W]``, carrying the generator's graph.
        pred_real: teacher (real score) x0 prediction after CFG, ``[B, F, C, H, W]``, detached.
        pred_fake: critic (fake score) x0 prediction, ``[B, F, C, H, W]``, detached.
        timestep: the score timestep ``[B, F]``, or None when the host does not say.
        gradient_mask: the host's ``gradient_mask`` (``[B, F, C, H, W]`` or ``[B, F]``) or None.
        host: which host produced it (``"causvid"``, ``"self_forcing"``, ``"toy"``, ...).
        timestep_scale: the host's largest timestep, so that ``timestep / timestep_scale`` is the
            noise level in [0, 1] (1: pure noise): 1000 for CausVid / Self-Forcing / FastVideo
            (their ``num_train_timestep``), 1 for FastGen; None when the host does not say.
        dmd_over: over what the host averages its DMD normaliser: ``"sample"`` (CausVid,
            Self-Forcing, FastGen) or ``"batch"`` (FastVideo's one scalar).
        dmd_eps: what the host adds to it (FastGen: 1e-6; the others: 0).
    """

    generated: Tensor
    pred_real: Tensor
    pred_fake: Tensor
    timestep: Optional[Tensor] = None
    gradient_mask: Optional[Tensor] = None
    host: str = "unknown"
    timestep_scale: Optional[float] = None
    dmd_over: str = "sample"
    dmd_eps: float = 0.0

    @cached_property
    def dmd_normalizer(self) -> Tensor:
        """The host's own DMD normaliser in float64, ``[B]`` (see :func:`dmd_normalizer`).

        Computed on first use only: most losses never read it, and it is a full pass over the video.
        """
        return dmd_normalizer(self.generated, self.pred_real, over=self.dmd_over, eps=self.dmd_eps)


def dmd_normalizer(generated: Tensor, pred_real: Tensor, *, over: str = "sample", eps: float = 0.0) -> Tensor:
    """The DMD normaliser ``n = mean |generated - pred_real| + eps`` in float64, one per sample ``[B]``.

    The hosts divide the DMD gradient by it: averaged over ``(F, C, H, W)`` per sample
    (``over="sample"``: CausVid, Self-Forcing, FastGen with ``eps=1e-6``) or over the whole batch
    (``over="batch"``: FastVideo's one scalar, repeated for every sample).

    Example:
        >>> x, real = torch.tensor([[1.0, 3.0], [0.0, 0.0]]), torch.zeros(2, 2)
        >>> dmd_normalizer(x, real).tolist(), dmd_normalizer(x, real, over="batch").tolist()
        ([2.0, 0.0], [1.0, 1.0])
    """
    if over not in ("sample", "batch"):
        raise ValueError(f"`over` should be 'sample' or 'batch', got {over!r}")
    with torch.no_grad():
        gap = generated.detach().to(torch.float64, copy=True).sub_(pred_real.detach()).abs_()
        n = gap.flatten(1).mean(1) if over == "sample" else gap.mean().expand(gap.shape[0])
        return n + eps if eps else n


@runtime_checkable
class ExtraLoss(Protocol):
    """A built extra loss: ``weight * loss`` is added to the host's generator loss."""

    name: str
    weight: float

    def __call__(self, ctx: LossContext) -> Tuple[Tensor, Dict[str, Any]]: ...


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


def _entry_points(group: str) -> Sequence[metadata.EntryPoint]:
    eps = metadata.entry_points()
    if hasattr(eps, "select"):
        return list(eps.select(group=group))
    return list(eps.get(group, []))  # Python 3.9: a dict of groups


def load_entry_points(group: str = ENTRY_POINT_GROUP) -> int:
    """Load every extra-loss plugin declared by installed distributions; return how many were added.

    Loaded once per process (later calls return 0). A plugin that fails to import, a malformed
    name, or a name two distributions claim raises, naming the plugin and its distribution.
    """
    if _registry.entry_points_loaded:
        return 0
    import msm_plugin.losses  # noqa: F401 - the built-in losses register themselves on import

    eps = _entry_points(group)
    claimed: Dict[str, metadata.EntryPoint] = {}
    for ep in eps:
        _check_name(ep.name, _origin(ep))
        first = claimed.setdefault(ep.name, ep)
        if first.value != ep.value:
            raise DuplicateLossError(f"extra loss {ep.name!r} is declared twice: by {_origin(first)} and by {_origin(ep)}")
    added = 0
    for ep in claimed.values():
        dist, origin = _dist_name(ep), _origin(ep)
        try:
            factory = ep.load()
        except Exception as exc:
            raise LossPluginError(
                f"extra-loss plugin {ep.name!r} ({ep.value}) from distribution {dist!r} failed to load: "
                f"{type(exc).__name__}: {exc}"
            ) from exc
        known = ep.name in _registry.factories
        _add(ep.name, factory, origin)
        added += not known
    _registry.entry_points_loaded = True
    return added


def _origin(ep: metadata.EntryPoint) -> str:
    return f"entry point {ep.name!r} = {ep.value!r} of distribution {_dist_name(ep)!r}"


def _dist_name(ep: metadata.EntryPoint) -> str:
    dist = getattr(ep, "dist", None)
    return getattr(dist, "name", None) or "<unknown distribution>"


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


def compose(
    host_loss: Tensor,
    host_logs: Mapping[str, Any],
    losses: Iterable[ExtraLoss],
    ctx: LossContext,
) -> Tuple[Tensor, Dict[str, Any]]:
    """Add the extra losses to the host's loss: ``host_loss + sum_i weight_i * loss_i``.

    Args:
        host_loss: the host's scalar generator loss (DMD).
        host_logs: the host's log dict; every key is kept.
        losses: built extra losses (see :func:`get_loss`).
        ctx: what the host computed this step.

    Returns:
        ``(total_loss, logs)``: logs are the host's plus each loss's own keys.

    Example:
        >>> import torch
        >>> x = torch.zeros(1, 3, 1, 2, 2, requires_grad=True)
        >>> ctx = LossContext(generated=x, pred_real=torch.zeros(1, 3, 1, 2, 2), pred_fake=torch.ones(1, 3, 1, 2, 2))
        >>> total, logs = compose(torch.tensor(1.0, dtype=torch.float64), {"k": 1}, [get_loss("msm")(lam=0.0)], ctx)
        >>> total.item(), sorted(logs)[:3]
        (1.0, ['k', 'msm_gradient_norm', 'msm_lambda'])
    """
    total = host_loss
    logs: Dict[str, Any] = dict(host_logs)
    for term in losses:
        weight = term.weight  # read first: a scheduled term advances its step in its call
        value, term_logs = term(ctx)
        if not isinstance(value, Tensor) or value.numel() != 1:
            raise TypeError(f"extra loss {term.name!r} must return a scalar tensor, got {value!r}")
        clash = sorted(set(logs) & set(term_logs))
        if clash:
            raise ValueError(f"extra loss {term.name!r} logs keys that are already present: {clash}")
        total = total + weight * value.reshape(())
        logs.update(term_logs)
    return total, logs
