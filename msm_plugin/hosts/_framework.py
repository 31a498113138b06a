"""What the hosts whose framework picks its method class from a config share (FastVideo, FastGen).

Such a framework builds ``_target_`` / ``model_class`` itself, so msm-plugin ships a *subclass*
of its method class, built on first access from the installed framework (msm-plugin never
imports a framework on its own import). A host module declares:

- ``hooks``: ``{method name: fn(obj, original, *args, **kwargs)}``, the host's methods that gain
  the extra losses; ``original`` is the framework's method bound to ``obj``;
- ``subclasses``: ``{public name: "module:Class"}`` of the framework classes to subclass.

The same ``hooks`` serve both ways in: the subclass overrides each method with
``fn(self, super().method, ...)``; :meth:`FrameworkHost.install` on an upstream instance (what
``wrap_trainer(method, lam=...)`` gets) patches them on that instance only, reversibly
(:mod:`msm_plugin.hosts.hooks`). Either way the installed :class:`ExtraLosses` lives in one
instance attribute, so ``wrap_trainer`` on a subclass instance just replaces it.
"""

from __future__ import annotations

import argparse
import functools
import importlib
import sys
import warnings
from abc import abstractmethod
from contextlib import contextmanager
from typing import Any, Callable, ClassVar, Dict, Iterator, Mapping, Optional, Sequence, Tuple

from msm_plugin.config import EXTRA_LOSSES_KEY
from msm_plugin.hosts.hooks import patch_method, unpatch_method
from msm_plugin.hosts.base import ExtraLosses, Host
from msm_plugin.context import ExtraLoss

__all__ = ["FrameworkHost", "build_subclass", "extra_of", "following_step", "require_listed", "set_extra", "subclass_getattr"]

#: The instance attribute holding the installed :class:`ExtraLosses`.
_STATE_ATTR = "_msm_plugin_extra"
#: The class attribute marking a subclass built by :func:`build_subclass` (its hooks are methods).
_HOOKED_ATTR = "_msm_plugin_hooked"

Hook = Callable[..., Any]


def extra_of(obj: Any) -> Optional[ExtraLosses]:
    """The :class:`ExtraLosses` installed on ``obj``, None when none is."""
    return vars(obj).get(_STATE_ATTR)


def set_extra(obj: Any, extra: Optional[ExtraLosses]) -> None:
    """Install ``extra`` on ``obj`` (None removes it); object.__setattr__ keeps nn.Module bookkeeping out."""
    if extra is None:
        if _STATE_ATTR in vars(obj):
            object.__delattr__(obj, _STATE_ATTR)
    else:
        object.__setattr__(obj, _STATE_ATTR, extra)


@contextmanager
def following_step(obj: Any, step: Callable[[], int]) -> Iterator[None]:
    """During one training step of ``obj``, its extra losses read the host's generator step from ``step``."""
    extra = extra_of(obj)
    if extra is None:
        yield
        return
    saved, extra.step_source = extra.step_source, step
    try:
        yield
    finally:
        extra.step_source = saved


def require_listed(options: Mapping[str, Any], cls: str, where: str, example: str) -> None:
    """Refuse an msm-plugin class chosen with no ``extra_losses`` at all: it would train the host's
    plain loss. An explicit empty list (a baseline run with the same config) is accepted.

    Example:
        >>> require_listed({}, "MSMDMD2Method", "`method.extra_losses`", "`extra_losses: [msm]` under `method:`")
        Traceback (most recent call last):
        ...
        ValueError: MSMDMD2Method adds the extra losses `method.extra_losses` lists, but there is none: add `extra_losses: [msm]` under `method:`, or an empty list for a run without extra losses
    """
    if EXTRA_LOSSES_KEY not in options:
        raise ValueError(
            f"{cls} adds the extra losses {where} lists, but there is none: add {example}, "
            "or an empty list for a run without extra losses"
        )


def _override(name: str, hook: Hook, owner: list) -> Callable:
    def method(self: Any, *args: Any, **kwargs: Any) -> Any:
        return hook(self, getattr(super(owner[0], self), name), *args, **kwargs)

    method.__name__ = name
    method.__doc__ = hook.__doc__
    return method


def build_subclass(name: str, module: str, target: str, hooks: Mapping[str, Hook], install_hint: str) -> type:
    """``class name(Base)`` overriding ``hooks``, with ``Base`` imported now from ``target``
    (``"package.module:Class"``); ModuleNotFoundError with ``install_hint`` when the framework is absent.

    Example:
        >>> build_subclass("X", __name__, "no_such_framework.methods:Method", {}, "pip install no-such-framework")
        Traceback (most recent call last):
        ...
        ModuleNotFoundError: X subclasses no_such_framework.methods.Method, but no_such_framework is not installed: pip install no-such-framework
    """
    module_path, class_name = target.split(":")
    top = module_path.split(".")[0]
    try:
        base = getattr(importlib.import_module(module_path), class_name)
    except ModuleNotFoundError as exc:
        if (exc.name or "").split(".")[0] != top:
            raise  # the framework is there but one of its own dependencies is missing: say that
        raise ModuleNotFoundError(
            f"{name} subclasses {module_path}.{class_name}, but {top} is not installed: {install_hint}", name=top
        ) from None
    owner: list = []
    namespace: Dict[str, Any] = {"__module__": module, "__qualname__": name, _HOOKED_ATTR: True}
    namespace.update({method: _override(method, hook, owner) for method, hook in hooks.items()})
    namespace["__doc__"] = f"{base.__qualname__} plus the extra generator losses of its config (msm-plugin)."
    cls = type(name, (base,), namespace)
    owner.append(cls)
    return cls


def subclass_getattr(module: str, subclasses: Mapping[str, str], methods: Mapping[str, Hook], install_hint: str) -> Callable[[str], type]:
    """A host module's ``__getattr__``: builds each of ``subclasses`` (:func:`build_subclass`) on
    first access and keeps it in the module, so later lookups (the framework resolving a dotted
    path, pickling) find it directly."""

    def __getattr__(name: str) -> type:
        if name not in subclasses:
            raise AttributeError(f"module {module!r} has no attribute {name!r}")
        cls = build_subclass(name, module, subclasses[name], methods, install_hint)
        setattr(sys.modules[module], name, cls)
        return cls

    return __getattr__


class FrameworkHost(Host):
    """Base of the hosts whose method class a config selects (see the module docstring).

    Subclasses set ``required`` (attributes that identify the framework's object), ``hooks``
    (without ``__init__``: an existing instance is already built) and :meth:`config_of`.
    """

    required: ClassVar[Tuple[str, ...]] = ()
    hooks: ClassVar[Mapping[str, Hook]] = {}
    #: How the framework's own launcher selects the subclass (msm-train does not run it).
    route: ClassVar[str] = ""

    @abstractmethod
    def config_of(self, obj: Any) -> Any:
        """The mapping holding ``extra_losses`` and the per-loss sections for ``obj``."""

    def extras(self, losses: Sequence[ExtraLoss]) -> Optional[ExtraLosses]:
        """The :class:`ExtraLosses` a constructor installs for ``losses`` (None for none)."""
        return ExtraLosses(losses) if losses else None

    def matches(self, obj: Any) -> bool:
        return not isinstance(obj, type) and all(hasattr(obj, name) for name in self.required)

    def target(self, obj: Any) -> Tuple[Any, Any]:
        if not self.matches(obj):
            missing = [name for name in self.required if not hasattr(obj, name)]
            raise TypeError(f"expected {self.description}; {type(obj).__name__} lacks {', '.join(missing) or 'nothing but is a class'}")
        return obj, self.config_of(obj)

    def install(self, target: Any, losses: Sequence[ExtraLoss]) -> None:
        extra = ExtraLosses(losses)  # checks the losses before any change
        previous = extra_of(target)
        if previous is not None:
            warnings.warn(
                f"{type(target).__name__} already has msm_plugin extra losses; replacing them (they never stack): "
                f"{extra.take_over(previous)}",
                UserWarning,
                stacklevel=4,
            )
        if not getattr(type(target), _HOOKED_ATTR, False):
            for name, hook in self.hooks.items():
                if name != "__init__":
                    patch_method(target, name, lambda original, hook=hook: functools.partial(hook, target, original))
        set_extra(target, extra)

    def uninstall(self, obj: Any) -> None:
        target, _ = self.target(obj)
        for name in self.hooks:
            unpatch_method(target, name)
        set_extra(target, None)

    def extra_losses(self, target: Any) -> Optional[ExtraLosses]:
        return extra_of(target)

    def route_logs(self, trainer: Any, log: Optional[Callable[..., Any]] = None) -> None:
        """Nothing to do: the hooks hand the extra scalars to the framework's own per-step logging."""

    def load_config(self, args: argparse.Namespace) -> Any:
        raise NotImplementedError(self.route)

    def trainer_class(self) -> Callable[[Any], Any]:
        raise NotImplementedError(self.route)
