"""The host interface: what msm-plugin needs to know about one DMD training codebase.

A host adapter is one module under ``msm_plugin/hosts/`` (or in a fork's own package, declared
in the entry-point group ``msm_plugin.hosts``) defining a :class:`Host` subclass. It answers:

1. **Where is the DMD object?** :meth:`Host.matches` tells whether an object (a trainer, a DMD
   object, a method/model class instance) is this host's; :meth:`Host.target` returns the object
   whose generator loss gains the extra losses and the config mapping to read them from.
2. **How does one generator step yield** ``generated``, ``pred_real`` (after CFG), ``pred_fake``,
   ``timestep`` (``[B, F]``) and ``gradient_mask``, frames on dim 1, without any extra network
   call? :meth:`Host.install` arranges it, builds a :class:`~msm_plugin.context.LossContext`
   and adds the losses with :class:`ExtraLosses` (the same engine for every host). A host that
   *wraps* an object patches its methods (:mod:`msm_plugin.hosts.hooks`, as CausVid and
   Self-Forcing do, see :mod:`msm_plugin.hosts.dmd_chain`); a host whose framework picks a class
   from its config *subclasses* instead: the subclass keeps an :class:`ExtraLosses`, builds the
   context where its loss method has the predictions, and calls :meth:`ExtraLosses.add`. Where
   the predictions are local variables of the host's loss method, :func:`recorded_calls` keeps
   the outputs of the prediction calls that method makes anyway (no extra call).
3. **Which config keys mean unequal per-frame score timesteps?**
   :meth:`Host.unequal_timesteps` (MSM's strict policy refuses them, paper sec. 6.2).
4. **How do the extra logs reach the host's logger?** :meth:`Host.route_logs` (for a training
   script msm-plugin drives) or :meth:`Host.pop_logs` (for a script that logs them itself).

``msm-train --host NAME`` also uses :meth:`Host.add_arguments`, :meth:`Host.load_config` and
:meth:`Host.trainer_class`.
"""

from __future__ import annotations

import argparse
import inspect
from abc import ABC, abstractmethod
from contextlib import contextmanager
from typing import Any, Callable, ClassVar, Dict, Iterable, Iterator, List, Mapping, NamedTuple, Optional, Sequence, Tuple

import torch
from torch import Tensor

from msm_plugin.config import build_extra_losses, config_mapping
from msm_plugin.context import ExtraLoss, LossContext, compose
from msm_plugin.options import UnequalTimesteps

__all__ = ["Call", "ExtraLosses", "Host", "UnequalTimesteps", "recorded_calls", "scalar_logs"]


def scalar_logs(logs: Mapping[str, Any]) -> Dict[str, float]:
    """The single-number entries of ``logs`` as Python floats (what wandb charts).

    Example:
        >>> scalar_logs({"a": torch.tensor(0.5), "b": 2, "v": torch.ones(3), "flag": True})
        {'b': 2.0, 'a': 0.5}
    """
    out = {k: float(v) for k, v in logs.items() if isinstance(v, (int, float)) and not isinstance(v, bool)}
    tensors = {k: v for k, v in logs.items() if isinstance(v, Tensor) and v.numel() == 1}
    if tensors:
        # One device-to-host copy for all of them, not one sync per key.
        values = torch.stack([v.detach().reshape(()).double() for v in tensors.values()]).tolist()
        out.update(zip(tensors, values))
    return out


class Call(NamedTuple):
    """One recorded call: its arguments bound to the method's parameter names, and its output."""

    arguments: Dict[str, Any]
    output: Any


_ABSENT = object()


@contextmanager
def recorded_calls(obj: Any, name: str) -> Iterator[List[Call]]:
    """Record every call of ``obj.name`` made inside the block; the method is put back after.

    The output is the host's own object (a reference, not a copy) and the call goes through
    unchanged, so recording adds no computation. Only this instance is affected, and an
    instance patch already in place (e.g. :func:`~msm_plugin.hosts.hooks.patch_method`)
    is called through and restored as it was.

    Example:
        >>> class Teacher:
        ...     def predict_x0(self, noisy, timestep, conditional=True):
        ...         return noisy * (2 if conditional else 1)
        >>> teacher = Teacher()
        >>> with recorded_calls(teacher, "predict_x0") as calls:
        ...     _ = teacher.predict_x0(3, 0.5), teacher.predict_x0(3, 0.5, conditional=False)
        >>> [(c.arguments["conditional"], c.output) for c in calls]
        [(True, 6), (False, 3)]
        >>> "predict_x0" in vars(teacher)
        False
    """
    original = getattr(obj, name, None)
    if not callable(original):
        raise TypeError(f"expected {type(obj).__name__}.{name} to be a method, got {original!r}")
    signature = inspect.signature(original)
    saved = vars(obj).get(name, _ABSENT)
    calls: List[Call] = []

    def recorder(*args: Any, **kwargs: Any) -> Any:
        output = original(*args, **kwargs)
        bound = signature.bind(*args, **kwargs)
        bound.apply_defaults()
        calls.append(Call(dict(bound.arguments), output))
        return output

    object.__setattr__(obj, name, recorder)  # object.__setattr__: nn.Module bookkeeping stays out
    try:
        yield calls
    finally:
        if saved is _ABSENT:
            object.__delattr__(obj, name)
        else:
            object.__setattr__(obj, name, saved)


class ExtraLosses:
    """The extra losses of one host object, and the logs of its last generator step.

    ``add`` is what every host calls once per generator step, wrapped or subclassed::

        total = host_loss + sum_i weight_i * loss_i(ctx)      (MSM: + lam * msm_loss, eq. 12)

    with logs = the host's + ``dmd_loss`` (the host's own term) + each loss's keys.

    Example:
        >>> from msm_plugin.registry import get_loss
        >>> x = torch.zeros(1, 3, 1, 1, 1, requires_grad=True)
        >>> real = torch.tensor([0.0, 1.0, 2.0]).reshape(1, 3, 1, 1, 1)
        >>> extra = ExtraLosses([get_loss("msm")(lam=0.5, normalization="none", per_pair_logs=False)])
        >>> total, logs = extra.add(torch.tensor(1.0, dtype=torch.float64), {}, LossContext(x, real, torch.zeros_like(real)))
        >>> total.item(), sorted(extra.pop_logs())[:3]
        (1.25, ['dmd_loss', 'msm_gradient_norm', 'msm_lambda'])
    """

    def __init__(self, losses: Iterable[ExtraLoss]) -> None:
        losses = tuple(losses)
        for loss in losses:
            if not (callable(loss) and isinstance(getattr(loss, "name", None), str) and isinstance(getattr(loss, "weight", None), (int, float))):
                raise TypeError(f"expected built extra losses with `name`, `weight` and __call__(ctx), got {loss!r}")
        self.losses: Tuple[ExtraLoss, ...] = losses
        self._last_logs: Dict[str, float] = {}

    def add(self, host_loss: Tensor, host_logs: Mapping[str, Any], ctx: LossContext) -> Tuple[Tensor, Dict[str, Any]]:
        """``(host_loss + sum weight * loss, logs)``; remembers the new scalar logs for :meth:`pop_logs`."""
        if "dmd_loss" in host_logs:
            raise ValueError("the host's log dict already has a `dmd_loss` key; the adapter would overwrite it")
        total, logs = compose(host_loss, {**host_logs, "dmd_loss": host_loss.detach()}, self.losses, ctx)
        self._last_logs = scalar_logs({k: v for k, v in logs.items() if k not in host_logs})
        return total, logs

    def pop_logs(self) -> Dict[str, float]:
        """The scalar logs of the last generator step (``{}`` when none ran since the last pop)."""
        logs, self._last_logs = self._last_logs, {}
        return logs


class Host(ABC):
    """One DMD training codebase (see the module docstring for the contract).

    Subclasses set ``name`` (a lower-case identifier, the ``--host`` value with ``-`` for ``_``),
    ``description`` (how :func:`msm_plugin.wrap_trainer`'s error names what it accepts) and
    ``framework_module`` (the module whose import says the codebase is usable here, for
    ``msm-plugin doctor``; empty when there is none to probe).
    """

    name: ClassVar[str] = ""
    description: ClassVar[str] = ""
    framework_module: ClassVar[str] = ""

    @abstractmethod
    def matches(self, obj: Any) -> bool:
        """Whether ``obj`` is this host's trainer / DMD object (no side effects)."""

    @abstractmethod
    def target(self, obj: Any) -> Tuple[Any, Any]:
        """``(target, config)``: the object to install the losses on and its config; TypeError
        when ``obj`` lacks what the host needs (before any change)."""

    def unequal_timesteps(self, config: Mapping[str, Any]) -> Optional[UnequalTimesteps]:
        """Why this config gives frames of one sample different score timesteps, or None."""
        return None

    def build_losses(self, config: Any, overrides: Optional[Mapping[str, Mapping[str, Any]]] = None) -> List[ExtraLoss]:
        """The extra losses ``config`` (and ``overrides`` given in code) ask for, validated with this
        host's reading of its config (:func:`msm_plugin.config.build_extra_losses`)."""
        return build_extra_losses(config, overrides, unequal=self.unequal_timesteps(config_mapping(config)))

    @abstractmethod
    def install(self, target: Any, losses: Sequence[ExtraLoss]) -> None:
        """Add ``losses`` to ``target``'s generator loss (replacing earlier ones, with a warning)."""

    @abstractmethod
    def uninstall(self, obj: Any) -> None:
        """Undo :meth:`install` and :meth:`route_logs` on ``obj`` (trainer or target) exactly."""

    @abstractmethod
    def extra_losses(self, target: Any) -> Optional[ExtraLosses]:
        """The installed :class:`ExtraLosses` of ``target``, None when nothing is installed."""

    @abstractmethod
    def route_logs(self, trainer: Any, log: Optional[Callable[..., Any]] = None) -> None:
        """Make each generator step's extra scalars reach the host's logger (default: wandb)."""

    # -- msm-train --------------------------------------------------------------------------

    def add_arguments(self, parser: argparse.ArgumentParser) -> None:
        """The flags of the host's own training script."""

    def load_config(self, args: argparse.Namespace) -> Any:
        """The config exactly as the host's own script would build it from ``args``."""
        raise NotImplementedError(f"host {self.name!r} has no msm-train route; wrap its trainer in code (wrap_trainer)")

    def trainer_class(self) -> Callable[[Any], Any]:
        """The host's unmodified trainer class; ModuleNotFoundError naming what to install."""
        raise NotImplementedError(f"host {self.name!r} has no msm-train route; wrap its trainer in code (wrap_trainer)")
