"""The DMD call chain CausVid, Self-Forcing and their forks share, wrapped in place and reversibly.

CausVid's ``causvid/dmd.py`` and Self-Forcing's ``model/dmd.py`` (and forks sharing it, e.g.
thu-ml/Causal-Forcing) have the same chain ``generator_loss -> compute_distribution_matching_loss
-> _compute_kl_grad``; :class:`DMDChainHost` is the base of both host modules, which add only how
to find the DMD object in their trainer, their timestep config keys and their logging route.

Two instance methods of the host's ``DMD`` are wrapped (see :mod:`msm_plugin.hosts.hooks`):

- ``_compute_kl_grad``: unchanged result; while it runs, :class:`~msm_plugin.hosts._capture.ScoreCapture`
  records the score wrappers' outputs, and afterwards the predictions of this step are kept
  (from CausVid's log dict, or recombined from the captured Self-Forcing outputs);
- ``compute_distribution_matching_loss``: calls the host's method, then adds the extra losses
  computed from the generator output it was given and the kept predictions::

      loss = host DMD loss + sum_i weight_i * loss_i          (MSM: + lam * msm_loss, paper eq. 12)

  and returns the host's log dict plus ``dmd_loss`` (the host's own term) and each loss's logs.

The predictions are read the same way for both (the log dict when it has them, the captured
outputs otherwise), so a bare DMD object behaves the same whichever of the two hosts is detected.
Given a trainer, the schedules follow its ``step`` (the generator trains when ``step %
dfake_gen_update_ratio == 0``); a bare DMD object has no step, and a scheduled loss counts its calls.

Nothing else is touched: ``generator_loss``, ``critic_loss``, the timesteps, the sampled noise,
the networks and their ``state_dict()``. No network is called by the adapter.
"""

from __future__ import annotations

import inspect
import warnings
from abc import abstractmethod
from dataclasses import dataclass
from typing import Any, Callable, Dict, List, Mapping, Optional, Sequence, Tuple

from torch import Tensor

from msm_plugin.hosts.hooks import patch_method, unpatch_method
from msm_plugin.hosts._capture import Predictions, ScoreCapture, check_score_modules, predictions_from_log
from msm_plugin.hosts.base import ExtraLosses, Host, generator_steps_before
from msm_plugin.context import ExtraLoss, LossContext

__all__ = ["DMDChainHost", "check_dmd", "is_wrapped", "pop_extra_logs", "unwrap_dmd", "wrap_dmd", "wrap_step_logging"]

#: The attribute wrapping adds to the DMD object (besides the patched methods' bookkeeping).
_STATE_ATTR = "_msm_plugin_state"
#: The host methods replaced on the instance, innermost first.
_WRAPPED_METHODS = ("_compute_kl_grad", "compute_distribution_matching_loss")
_REQUIRED = _WRAPPED_METHODS + ("real_score", "fake_score", "real_guidance_scale")


@dataclass
class _State:
    extra: ExtraLosses
    # Predictions of each _compute_kl_grad call made during the current loss call; None outside
    # one, so that a host calling _compute_kl_grad for anything else neither is hooked nor piles
    # up tensors here.
    calls: Optional[List[Predictions]] = None


def check_dmd(dmd: Any) -> None:
    """Raise TypeError unless ``dmd`` has the DMD interface the adapter relies on.

    Example:
        >>> check_dmd(object())
        Traceback (most recent call last):
        ...
        TypeError: expected a DMD object (CausVid's causvid.dmd.DMD or Self-Forcing's model.dmd.DMD) with _compute_kl_grad, compute_distribution_matching_loss, real_score, fake_score, real_guidance_scale; object lacks _compute_kl_grad, compute_distribution_matching_loss, real_score, fake_score, real_guidance_scale
    """
    missing = [name for name in _REQUIRED if not hasattr(dmd, name)]
    if missing:
        raise TypeError(
            "expected a DMD object (CausVid's causvid.dmd.DMD or Self-Forcing's model.dmd.DMD) with "
            f"{', '.join(_REQUIRED)}; {type(dmd).__name__} lacks {', '.join(missing)}"
        )
    # Checked here, not at the first training step: every _compute_kl_grad call hooks them.
    check_score_modules(dmd)
    # The wrapper finds the generator output and the mask by name, as both hosts call them.
    params = inspect.signature(dmd.compute_distribution_matching_loss).parameters
    if "image_or_video" not in params:
        raise TypeError(
            "expected compute_distribution_matching_loss to take an `image_or_video` parameter (the "
            f"generator output) like CausVid and Self-Forcing, got parameters {list(params)}"
        )


def is_wrapped(dmd: Any) -> bool:
    """Whether :func:`wrap_dmd` is in effect on ``dmd``."""
    return _STATE_ATTR in vars(dmd)


def _arguments(method: Callable, args: tuple, kwargs: dict) -> Dict[str, Any]:
    bound = inspect.signature(method).bind(*args, **kwargs)
    bound.apply_defaults()
    return bound.arguments


def _kl_grad_wrapper(dmd: Any, state: _State) -> Callable[[Callable], Callable]:
    def make(original: Callable) -> Callable:
        def _compute_kl_grad(*args: Any, **kwargs: Any):
            if state.calls is None:
                return original(*args, **kwargs)
            arguments = _arguments(original, args, kwargs)
            with ScoreCapture(dmd, arguments.get("conditional_dict"), arguments.get("unconditional_dict")) as capture:
                grad, log = original(*args, **kwargs)
            predictions = predictions_from_log(log)
            if predictions is None:  # Self-Forcing: predictions not in the log dict
                pred_real, pred_fake = capture.combined()
                timestep = log.get("timestep", arguments.get("timestep"))
                predictions = Predictions(pred_real, pred_fake, timestep.detach() if isinstance(timestep, Tensor) else None, "self_forcing")
            state.calls.append(predictions)
            return grad, log

        return _compute_kl_grad

    return make


def _loss_wrapper(dmd: Any, state: _State) -> Callable[[Callable], Callable]:
    def make(original: Callable) -> Callable:
        def compute_distribution_matching_loss(*args: Any, **kwargs: Any):
            arguments = _arguments(original, args, kwargs)
            generated = arguments["image_or_video"]
            gradient_mask = arguments.get("gradient_mask")
            state.calls = []
            try:
                host_loss, host_logs = original(*args, **kwargs)
            finally:
                calls, state.calls = state.calls, None
            if len(calls) != 1:
                raise RuntimeError(
                    f"expected the host's compute_distribution_matching_loss to call _compute_kl_grad once, "
                    f"it called it {len(calls)} times; the extra losses need exactly one set of predictions"
                )
            pred = calls[0]
            ctx = LossContext(
                generated=generated,
                pred_real=pred.pred_real,
                pred_fake=pred.pred_fake,
                timestep=pred.timestep,
                gradient_mask=gradient_mask,
                host=pred.host,
                # both hosts draw score timesteps in [0, num_train_timestep] (1000 in their configs)
                timestep_scale=getattr(dmd, "num_train_timestep", None),
            )
            return state.extra.add(host_loss, host_logs, ctx)

        return compute_distribution_matching_loss

    return make


def wrap_dmd(dmd: Any, losses: Sequence[ExtraLoss]) -> Any:
    """Add ``losses`` to ``dmd``'s generator loss, in place; returns ``dmd``.

    Wrapping an already wrapped object replaces the previous losses (never stacks) with a warning
    that says what changed; their schedules continue (:meth:`ExtraLosses.take_over`).

    Args:
        dmd: a CausVid or Self-Forcing ``DMD`` (or anything with the same interface).
        losses: built extra losses (``registry.get_loss(name)(**options)``).

    Returns:
        ``dmd`` itself.
    """
    check_dmd(dmd)
    extra = ExtraLosses(losses)
    if is_wrapped(dmd):
        changes = extra.take_over(vars(dmd)[_STATE_ATTR].extra)
        warnings.warn(
            f"{type(dmd).__name__} is already wrapped by msm_plugin; replacing the previous extra losses "
            f"(wrappers never stack): {changes}",
            UserWarning,
            stacklevel=2,
        )
        unwrap_dmd(dmd)
    state = _State(extra)
    object.__setattr__(dmd, _STATE_ATTR, state)
    patch_method(dmd, "_compute_kl_grad", _kl_grad_wrapper(dmd, state))
    patch_method(dmd, "compute_distribution_matching_loss", _loss_wrapper(dmd, state))
    return dmd


def unwrap_dmd(dmd: Any) -> Any:
    """Undo :func:`wrap_dmd`: the original methods and no added attribute; returns ``dmd``."""
    for name in reversed(_WRAPPED_METHODS):
        unpatch_method(dmd, name)
    if is_wrapped(dmd):
        object.__delattr__(dmd, _STATE_ATTR)
    return dmd


def pop_extra_logs(dmd: Any) -> Dict[str, float]:
    """The scalar logs the extra losses added at the last generator step, then forgets them.

    ``{}`` when ``dmd`` is not wrapped or no generator step ran since the last pop, so it can be
    called every training step. Host keys are not included (the host logs those itself).
    """
    state: Optional[_State] = vars(dmd).get(_STATE_ATTR)
    return {} if state is None else state.extra.pop_logs()


def wrap_step_logging(trainer: Any, dmd: Any, method: str, step: Callable[[Any], int], log: Optional[Callable[..., Any]]) -> None:
    """Wrap ``trainer.method`` (on the instance) so that after each call, the extra scalars that
    call produced are passed to ``log(logs, step=step(trainer))`` on the main process, unless the
    trainer disabled wandb; ``log`` defaults to ``wandb.log``. Other ranks drop them."""

    def make(original: Callable) -> Callable:
        def wrapper(*args: Any, **kwargs: Any) -> Any:
            result = original(*args, **kwargs)
            logs = pop_extra_logs(dmd)
            if logs and getattr(trainer, "is_main_process", True) and not getattr(trainer, "disable_wandb", False):
                sink = log
                if sink is None:
                    import wandb

                    sink = wandb.log
                sink(logs, step=step(trainer))
            return result

        return wrapper

    patch_method(trainer, method, make)


def _is_dmd(obj: Any) -> bool:
    return hasattr(obj, "compute_distribution_matching_loss")


class DMDChainHost(Host):
    """Base of the hosts whose DMD object has the CausVid/Self-Forcing call chain.

    Subclasses say where the DMD object lives in their trainer (:meth:`trainer_dmd`), their
    timestep keys and their logging route; a DMD object itself (config at ``.args``) is
    accepted by every subclass.
    """

    #: Trainer methods a subclass's :meth:`route_logs` patches (undone by :meth:`uninstall`).
    logging_methods: Tuple[str, ...] = ()

    @abstractmethod
    def trainer_dmd(self, trainer: Any) -> Optional[Tuple[Any, Any]]:
        """``(dmd, config)`` when ``trainer`` is this host's trainer, else None."""

    def matches(self, obj: Any) -> bool:
        return self.trainer_dmd(obj) is not None or _is_dmd(obj)

    def step_source(self, obj: Any) -> Optional[Callable[[], int]]:
        """The trainer's ``step`` (from 0; the generator trains when ``step %
        dfake_gen_update_ratio == 0``) as a generator step; None for a bare DMD object."""
        found = self.trainer_dmd(obj)
        if found is None or not hasattr(obj, "step"):
            return None
        config = found[1]

        def step() -> int:
            every = config.get("dfake_gen_update_ratio") if isinstance(config, Mapping) else getattr(config, "dfake_gen_update_ratio", None)
            return generator_steps_before(obj.step, int(every or 1), first=0)

        return step

    def target(self, obj: Any) -> Tuple[Any, Any]:
        found = self.trainer_dmd(obj)
        if found is None:
            if not _is_dmd(obj):
                raise TypeError(f"expected {self.description}, got {type(obj).__name__}")
            found = (obj, getattr(obj, "args", None))  # both hosts keep the config as .args
        check_dmd(found[0])
        return found

    def install(self, target: Any, losses: Sequence[ExtraLoss]) -> None:
        wrap_dmd(target, losses)

    def uninstall(self, obj: Any) -> None:
        dmd, _ = self.target(obj)
        unwrap_dmd(dmd)
        if obj is not dmd:
            for name in self.logging_methods:
                unpatch_method(obj, name)

    def extra_losses(self, target: Any) -> Optional[ExtraLosses]:
        state: Optional[_State] = vars(target).get(_STATE_ATTR)
        return None if state is None else state.extra
