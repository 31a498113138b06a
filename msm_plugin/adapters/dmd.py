"""Add extra losses to a host DMD object's generator loss, in place and reversibly.

Two instance methods of the host's ``DMD`` are wrapped (see :mod:`msm_plugin.adapters.hooks`):

- ``_compute_kl_grad``: unchanged result; while it runs, :class:`~msm_plugin.adapters.capture.ScoreCapture`
  records the score wrappers' outputs, and afterwards the predictions of this step are kept
  (from CausVid's log dict, or recombined from the captured Self-Forcing outputs);
- ``compute_distribution_matching_loss``: calls the host's method, then adds the extra losses
  computed from the generator output it was given and the kept predictions::

      loss = host DMD loss + sum_i weight_i * loss_i          (MSM: + lam * msm_loss, paper eq. 12)

  and returns the host's log dict plus ``dmd_loss`` (the host's own term) and each loss's logs.

Nothing else is touched: ``generator_loss``, ``critic_loss``, the timesteps, the sampled noise,
the networks and their ``state_dict()``. No network is called by the adapter.
"""

from __future__ import annotations

import inspect
import warnings
from dataclasses import dataclass, field
from typing import Any, Callable, Dict, List, Optional, Sequence, Tuple

import torch
from torch import Tensor

from msm_plugin.adapters.capture import Predictions, ScoreCapture, check_score_modules, predictions_from_log
from msm_plugin.adapters.hooks import patch_method, unpatch_method
from msm_plugin.registry import ExtraLoss, LossContext, compose

__all__ = ["STATE_ATTR", "WRAPPED_METHODS", "check_dmd", "is_wrapped", "pop_extra_logs", "unwrap_dmd", "wrap_dmd"]

#: The attribute wrapping adds to the DMD object (besides the patched methods' bookkeeping).
STATE_ATTR = "_msm_plugin_state"
#: The host methods replaced on the instance, innermost first.
WRAPPED_METHODS = ("_compute_kl_grad", "compute_distribution_matching_loss")
_REQUIRED = WRAPPED_METHODS + ("real_score", "fake_score", "real_guidance_scale")


@dataclass
class _State:
    losses: Tuple[ExtraLoss, ...]
    # Predictions of each _compute_kl_grad call made during the current loss call; None outside
    # one, so that a host calling _compute_kl_grad for anything else neither is hooked nor piles
    # up tensors here.
    calls: Optional[List[Predictions]] = None
    # Scalar logs the extra losses added at the last generator step (for wandb, see pop_extra_logs).
    last_logs: Dict[str, float] = field(default_factory=dict)


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
    return STATE_ATTR in vars(dmd)


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


def _scalar_logs(logs: Dict[str, Any]) -> Dict[str, float]:
    """The single-number entries of ``logs`` as Python floats (what wandb charts)."""
    out = {k: float(v) for k, v in logs.items() if isinstance(v, (int, float)) and not isinstance(v, bool)}
    tensors = {k: v for k, v in logs.items() if isinstance(v, Tensor) and v.numel() == 1}
    if tensors:
        # One device-to-host copy for all of them, not one sync per key.
        values = torch.stack([v.detach().reshape(()).double() for v in tensors.values()]).tolist()
        out.update(zip(tensors, values))
    return out


def _loss_wrapper(state: _State) -> Callable[[Callable], Callable]:
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
            )
            if "dmd_loss" in host_logs:
                raise ValueError("the host's log dict already has a `dmd_loss` key; the adapter would overwrite it")
            total, logs = compose(host_loss, {**host_logs, "dmd_loss": host_loss.detach()}, state.losses, ctx)
            state.last_logs = _scalar_logs({k: v for k, v in logs.items() if k not in host_logs})
            return total, logs

        return compute_distribution_matching_loss

    return make


def wrap_dmd(dmd: Any, losses: Sequence[ExtraLoss]) -> Any:
    """Add ``losses`` to ``dmd``'s generator loss, in place; returns ``dmd``.

    Wrapping an already wrapped object warns and replaces the previous losses (never stacks).

    Args:
        dmd: a CausVid or Self-Forcing ``DMD`` (or anything with the same interface).
        losses: built extra losses (``registry.get_loss(name)(**options)``).

    Returns:
        ``dmd`` itself.
    """
    check_dmd(dmd)
    losses = tuple(losses)
    for loss in losses:
        if not (callable(loss) and isinstance(getattr(loss, "name", None), str) and isinstance(getattr(loss, "weight", None), (int, float))):
            raise TypeError(f"expected built extra losses with `name`, `weight` and __call__(ctx), got {loss!r}")
    if is_wrapped(dmd):
        warnings.warn(
            f"{type(dmd).__name__} is already wrapped by msm_plugin; replacing the previous extra losses "
            "(wrappers never stack)",
            UserWarning,
            stacklevel=2,
        )
        unwrap_dmd(dmd)
    state = _State(losses)
    object.__setattr__(dmd, STATE_ATTR, state)
    patch_method(dmd, "_compute_kl_grad", _kl_grad_wrapper(dmd, state))
    patch_method(dmd, "compute_distribution_matching_loss", _loss_wrapper(state))
    return dmd


def unwrap_dmd(dmd: Any) -> Any:
    """Undo :func:`wrap_dmd`: the original methods and no added attribute; returns ``dmd``."""
    for name in reversed(WRAPPED_METHODS):
        unpatch_method(dmd, name)
    if is_wrapped(dmd):
        object.__delattr__(dmd, STATE_ATTR)
    return dmd


def pop_extra_logs(dmd: Any) -> Dict[str, float]:
    """The scalar logs the extra losses added at the last generator step, then forgets them.

    ``{}`` when ``dmd`` is not wrapped or no generator step ran since the last pop, so it can be
    called every training step. Host keys are not included (the host logs those itself).
    """
    state: Optional[_State] = vars(dmd).get(STATE_ATTR)
    if state is None:
        return {}
    logs, state.last_logs = state.last_logs, {}
    return logs
