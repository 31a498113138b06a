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
   script msm-plugin drives), :meth:`ExtraLosses.pop_logs` (for a script that logs them itself:
   :func:`msm_plugin.adapters.pop_extra_logs`), or the hook hands them to the host's own logs.
5. **Where is its own step?** :meth:`Host.step_source` (or the hook that sees it) gives the
   generator step each :class:`~msm_plugin.context.LossContext` carries, so that schedules count
   optimiser steps (gradient accumulation) and follow a resume; :attr:`Host.restored_step` says
   when that step survives a resume. :attr:`Host.settings_at` and :attr:`Host.config_keys` are
   what the host adds to the one rule for settings that are not used
   (:func:`msm_plugin.config.refuse_unused_settings`).

``msm-train --host NAME`` also uses :meth:`Host.add_arguments`, :meth:`Host.load_config` and
:meth:`Host.trainer_class`.
"""

from __future__ import annotations

import argparse
import dataclasses
import inspect
import types
from abc import ABC, abstractmethod
from contextlib import contextmanager
from typing import (
    Any,
    Callable,
    ClassVar,
    Dict,
    FrozenSet,
    Iterable,
    Iterator,
    List,
    Mapping,
    NamedTuple,
    Optional,
    Sequence,
    Tuple,
)

import torch
from torch import Tensor

from msm_plugin.config import build_extra_losses, config_mapping
from msm_plugin.context import ExtraLoss, LossContext, compose
from msm_plugin.options import UnequalTimesteps

__all__ = [
    "Call",
    "ExtraLosses",
    "Host",
    "UnequalTimesteps",
    "call_recording_global",
    "generator_steps_before",
    "recorded_calls",
    "scalar_logs",
]


def _scalars(logs: Mapping[str, Any]) -> Dict[str, Any]:
    """The single-number entries of ``logs``: numbers as they are, tensors detached (no device read)."""
    out: Dict[str, Any] = {}
    for k, v in logs.items():
        if isinstance(v, (int, float)) and not isinstance(v, bool):
            out[k] = v
        elif isinstance(v, Tensor) and v.numel() == 1:
            out[k] = v.detach().reshape(())
    return out


def scalar_logs(logs: Mapping[str, Any]) -> Dict[str, float]:
    """The single-number entries of ``logs`` as Python floats (what wandb charts).

    Example:
        >>> scalar_logs({"a": torch.tensor(0.5), "b": 2, "v": torch.ones(3), "flag": True})
        {'b': 2.0, 'a': 0.5}
    """
    scalars = _scalars(logs)
    out = {k: float(v) for k, v in scalars.items() if not isinstance(v, Tensor)}
    tensors = {k: v for k, v in scalars.items() if isinstance(v, Tensor)}
    if tensors:
        # One device-to-host copy for all of them, not one sync per key.
        values = torch.stack([v.double() for v in tensors.values()]).tolist()
        out.update(zip(tensors, values))
    return out


class Call(NamedTuple):
    """One recorded call: its arguments bound to the method's parameter names, and its output."""

    arguments: Dict[str, Any]
    output: Any


_ABSENT = object()


def _recorder(function: Callable, calls: List[Call]) -> Callable:
    """``function`` (called unchanged) appending each call's arguments, by parameter name, and its output to ``calls``."""
    signature = inspect.signature(function)

    def recorder(*args: Any, **kwargs: Any) -> Any:
        output = function(*args, **kwargs)
        bound = signature.bind(*args, **kwargs)
        bound.apply_defaults()
        calls.append(Call(dict(bound.arguments), output))
        return output

    return recorder


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
    saved = vars(obj).get(name, _ABSENT)
    calls: List[Call] = []
    object.__setattr__(obj, name, _recorder(original, calls))  # object.__setattr__: nn.Module bookkeeping stays out
    try:
        yield calls
    finally:
        if saved is _ABSENT:
            object.__delattr__(obj, name)
        else:
            object.__setattr__(obj, name, saved)


def call_recording_global(method: Callable, name: str, *args: Any, **kwargs: Any) -> Tuple[Any, List[Call]]:
    """Call the bound ``method`` and record the calls it makes of the module-level function ``name``.

    For a host whose loss method hands the tensors to a function it looks up as a global name
    (FastGen's ``variational_score_distillation_loss``). The method's own code runs with a copy
    of its module's namespace in which ``name`` records; the module itself is never changed, so
    another model or thread calling the same function at the same time is neither recorded nor
    affected. (A ``global`` statement in that method would write to the copy: none is used there.)

    Returns:
        ``(what the method returned, the recorded calls of name)``.

    Example:
        >>> class Step:
        ...     def run(self, x):
        ...         return scalar_logs({"y": x}), scalar_logs({"z": 2 * x})
        >>> out, calls = call_recording_global(Step().run, "scalar_logs", 3)
        >>> out, [c.arguments["logs"] for c in calls]
        (({'y': 3.0}, {'z': 6.0}), [{'y': 3}, {'z': 6}])
    """
    function = getattr(method, "__func__", None)
    if not isinstance(function, types.FunctionType) or getattr(method, "__self__", None) is None:
        raise TypeError(f"expected a bound method defined in Python, got {method!r}")
    target = function.__globals__.get(name)
    if not callable(target):
        raise TypeError(
            f"expected {function.__qualname__} to call the function {name} of its module {function.__module__}, "
            f"which has no such function"
        )
    calls: List[Call] = []
    local = types.FunctionType(
        function.__code__, {**function.__globals__, name: _recorder(target, calls)}, function.__name__, function.__defaults__, function.__closure__
    )
    local.__kwdefaults__ = function.__kwdefaults__
    return local(method.__self__, *args, **kwargs), calls


def generator_steps_before(step: int, every: int, first: int) -> int:
    """The generator steps a host has made before its step ``step``, when it trains the generator at
    its steps ``first, first + 1, ...`` that are multiples of ``every`` (every step when ``every <= 0``).

    What a host's own step counter says about the schedule of an extra loss: the same number with
    gradient accumulation (the host's step is the optimiser step) and after a resume.

    Example:
        >>> [generator_steps_before(s, 5, first=0) for s in (0, 5, 10, 11)]  # CausVid: step 0, 5, ... train it
        [0, 1, 2, 3]
        >>> [generator_steps_before(s, 5, first=1) for s in (0, 5, 10, 11)]  # FastGen: from iteration 1
        [0, 0, 1, 2]
    """
    if every <= 0:
        return max(0, step - first)
    return max(0, (step - 1) // every - (first - 1) // every)


def _options(loss: Any) -> Dict[str, Any]:
    """A built loss's options by name (the fields of its ``config`` dataclass), else its repr."""
    config = getattr(loss, "config", None)
    if dataclasses.is_dataclass(config) and not isinstance(config, type):
        return {f.name: getattr(config, f.name) for f in dataclasses.fields(config)}
    return {"": repr(loss)}


class ExtraLosses:
    """The extra losses of one host object, and the logs of its last generator step.

    ``add`` is what every host calls once per generator step, wrapped or subclassed::

        total = host_loss + sum_i weight_i * loss_i(ctx)      (MSM: + lam * msm_loss, eq. 12)

    with logs = the host's + ``dmd_loss`` (the host's own term) + each loss's keys.

    Example:
        >>> from msm_plugin.registry import get_loss
        >>> x = torch.zeros(1, 3, 1, 1, 1, requires_grad=True)
        >>> real = torch.tensor([0.0, 1.0, 2.0]).reshape(1, 3, 1, 1, 1)
        >>> extra = ExtraLosses([get_loss("msm")(lam=0.5, normalization="none")])
        >>> total, logs = extra.add(torch.tensor(1.0, dtype=torch.float64), {}, LossContext(x, real, torch.zeros_like(real)))
        >>> total.item(), sorted(extra.pop_logs())[:4]
        (1.25, ['dmd_loss', 'msm_grad_ratio', 'msm_gradient_norm', 'msm_lambda'])
    """

    def __init__(self, losses: Iterable[ExtraLoss]) -> None:
        losses = tuple(losses)
        for loss in losses:
            if not (callable(loss) and isinstance(getattr(loss, "name", None), str) and isinstance(getattr(loss, "weight", None), (int, float))):
                raise TypeError(f"expected built extra losses with `name`, `weight` and __call__(ctx), got {loss!r}")
        self.losses: Tuple[ExtraLoss, ...] = losses
        self._last_logs: Dict[str, Any] = {}
        #: The host's generator step, read for each context that has none (see :meth:`Host.step_source`).
        self.step_source: Optional[Callable[[], int]] = None

    def take_over(self, previous: "ExtraLosses") -> str:
        """Replace ``previous`` (a second wrap): what changed, for the warning that says so.

        The schedules continue: a loss whose step counter is still at 0 takes the step the same
        loss had reached (a new ``start_step`` is kept; ``set_step(0)`` restarts it).

        Example:
            >>> from msm_plugin.losses import MSMTerm
            >>> old, new = ExtraLosses([MSMTerm(lam=0.5, order=2)]), ExtraLosses([MSMTerm(lam=1.0)])
            >>> old.losses[0].set_step(37)
            >>> new.take_over(old), new.losses[0].step
            ('msm.lam 0.5 -> 1.0, msm.order 2 -> 1; the schedule of msm continues at step 37', 37)
        """
        before = {loss.name: loss for loss in previous.losses}
        after = {loss.name: loss for loss in self.losses}
        changes = [f"removed {name}" for name in before if name not in after]
        changes += [f"added {name}" for name in after if name not in before]
        steps = []
        for name, new in after.items():
            old = before.get(name)
            if old is None:
                continue
            a, b = _options(old), _options(new)
            changes += [f"{name}{'.' + k if k else ''} {a.get(k)!r} -> {b[k]!r}" for k in b if a.get(k) != b[k]]
            reached = getattr(old, "step", None)
            if callable(getattr(new, "set_step", None)) and isinstance(reached, int) and reached > 0:
                if new.step == 0:
                    new.set_step(reached)
                    steps.append(f"the schedule of {name} continues at step {reached}")
                elif new.step != reached:
                    steps.append(f"the schedule of {name} moves from step {reached} to {new.step}")
        text = ", ".join(changes) or "the same losses and options"
        return "; ".join([text] + steps)

    def add(self, host_loss: Tensor, host_logs: Mapping[str, Any], ctx: LossContext) -> Tuple[Tensor, Dict[str, Any]]:
        """``(host_loss + sum weight * loss, logs)``; remembers the new scalar logs for :meth:`pop_logs`
        (as they are: nothing is read from the device here)."""
        if "dmd_loss" in host_logs:
            raise ValueError("the host's log dict already has a `dmd_loss` key; the adapter would overwrite it")
        if ctx.step is None and self.step_source is not None:
            ctx = dataclasses.replace(ctx, step=self.step_source())
        total, logs = compose(host_loss, {**host_logs, "dmd_loss": host_loss.detach()}, self.losses, ctx)
        self._last_logs = _scalars({k: v for k, v in logs.items() if k not in host_logs})
        return total, logs

    def pop_logs(self, *, floats: bool = True) -> Dict[str, Any]:
        """The scalar logs of the last generator step (``{}`` when none ran since the last pop).

        ``floats=True``: Python floats, read from the device in one transfer (:func:`scalar_logs`);
        ``False``: Python numbers and detached 0-d tensors as logged, for a host whose logger
        reads device scalars itself (FastVideo reads them once per optimiser step).
        """
        logs, self._last_logs = self._last_logs, {}
        return scalar_logs(logs) if floats else logs


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
    #: How the user writes the path of the level of its config that holds ``extra_losses``
    #: (``""``: the top; FastVideo: ``"method."``), for the messages.
    settings_at: ClassVar[str] = ""
    #: The host's own keys at that level: never taken for a misplaced extra-loss setting (and no
    #: loss or option name may equal one; a test checks).
    config_keys: ClassVar[FrozenSet[str]] = frozenset()
    #: The host's own step that its training loop restores on resume and the schedules follow
    #: (e.g. "FastGen's training iteration"), which makes ``start_step`` unused; empty when the
    #: host has none (its step, if any, restarts at 0 in every run: ``start_step`` places a resume).
    restored_step: ClassVar[str] = ""

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
        host's reading of its config (:func:`msm_plugin.config.build_extra_losses`): its unequal
        timesteps, the level and own keys of its config, and its restored step."""
        return build_extra_losses(
            config,
            overrides,
            unequal=self.unequal_timesteps(config_mapping(config)),
            at=self.settings_at,
            host_keys=self.config_keys,
            host_step=self.restored_step or None,
        )

    def step_source(self, obj: Any) -> Optional[Callable[[], int]]:
        """A function giving the host's generator step (:func:`generator_steps_before` its own
        step) for the object a user passed, or None when that object does not know it (a bare DMD
        object). A host whose hooks see the step themselves (FastVideo, FastGen) needs none."""
        return None

    def attach(self, obj: Any, losses: Sequence[ExtraLoss]) -> None:
        """Install ``losses`` on the target of ``obj`` (what a user passed: a trainer, a DMD object,
        a method or model) and have them follow the host's step where ``obj`` knows it."""
        target, _ = self.target(obj)
        self.install(target, losses)
        extra = self.extra_losses(target)
        if extra is not None:
            extra.step_source = self.step_source(obj)

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
