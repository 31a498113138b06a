"""Plug MSM (and any registered extra loss) into CausVid and Self-Forcing without forking them.

``wrap_trainer`` accepts what a training script has at hand:

- a CausVid ``causvid.train_distillation.Trainer`` (``.distillation_model``, ``.config``),
- a Self-Forcing ``trainer.distillation.Trainer`` (``.model``, ``.config``),
- or a DMD object itself (CausVid's ``causvid.dmd.DMD`` or Self-Forcing's ``model.dmd.DMD``,
  whose ``.args`` is the config),

and wraps its DMD object in place (see :mod:`msm_plugin.adapters.dmd`). Options come from the
arguments, else from the config's ``msm:`` section; the config's ``extra_losses`` list adds any
other registered loss. ``unwrap_trainer`` restores the original exactly.

Example:
    >>> import torch
    >>> from torch import nn
    >>> class Score(nn.Module):  # a toy x0 predictor: scales its input
    ...     def __init__(self, s):
    ...         super().__init__(); self.s = s
    ...     def forward(self, noisy_image_or_video, conditional_dict, timestep):
    ...         return noisy_image_or_video * self.s
    >>> class ToyDMD(nn.Module):  # the CausVid call chain, no noise, no normaliser
    ...     real_guidance_scale = 0.0
    ...     def __init__(self):
    ...         super().__init__(); self.real_score, self.fake_score = Score(2.0), Score(1.0)
    ...     def _compute_kl_grad(self, noisy_image_or_video, estimated_clean_image_or_video, timestep, conditional_dict, unconditional_dict):
    ...         fake = self.fake_score(noisy_image_or_video=noisy_image_or_video, conditional_dict=conditional_dict, timestep=timestep)
    ...         real = self.real_score(noisy_image_or_video=noisy_image_or_video, conditional_dict=conditional_dict, timestep=timestep)
    ...         return fake - real, {"dmdtrain_pred_real_image": real, "dmdtrain_pred_fake_image": fake, "timestep": timestep}
    ...     def compute_distribution_matching_loss(self, image_or_video, conditional_dict, unconditional_dict, gradient_mask=None):
    ...         x = image_or_video
    ...         with torch.no_grad():
    ...             grad, log = self._compute_kl_grad(x, x, torch.zeros(x.shape[:2]), conditional_dict, unconditional_dict)
    ...         return 0.5 * ((x.double() - (x.double() - grad.double()).detach()) ** 2).mean(), log
    >>> dmd = wrap_trainer(ToyDMD(), lam=0.5, normalization="none")
    >>> x = torch.tensor([0.0, 1.0, 3.0]).reshape(1, 3, 1, 1, 1)
    >>> loss, log = dmd.compute_distribution_matching_loss(x, {}, {})
    >>> # grad = fake - real = -x: DMD 0.5 * mean(0, 1, 9) = 5/3; D(-x) = (-1, -2): MSM 0.5 * mean(1, 4) = 1.25
    >>> round(log["dmd_loss"].item(), 4), round(log["msm_loss"].item(), 4), round(loss.item(), 4)
    (1.6667, 1.25, 2.2917)
    >>> unwrap_trainer(dmd) is dmd, "compute_distribution_matching_loss" in vars(dmd)
    (True, False)
"""

from __future__ import annotations

from typing import Any, Dict, Optional, Tuple

from msm_plugin.adapters.capture import Predictions, ScoreCapture, predictions_from_log
from msm_plugin.adapters.dmd import check_dmd, is_wrapped, unwrap_dmd, wrap_dmd
from msm_plugin.adapters.dmd import pop_extra_logs as _pop_dmd_logs
from msm_plugin.adapters.hooks import is_patched, original_method, patch_method, unpatch_method
from msm_plugin.config import build_extra_losses

__all__ = [
    "Predictions",
    "ScoreCapture",
    "apply_extra_losses",
    "find_dmd",
    "is_patched",
    "is_wrapped",
    "original_method",
    "patch_method",
    "pop_extra_logs",
    "predictions_from_log",
    "unpatch_method",
    "unwrap_dmd",
    "unwrap_trainer",
    "wrap_dmd",
    "wrap_trainer",
]


def find_dmd(trainer: Any) -> Tuple[Any, Any]:
    """``(dmd, config)`` for a CausVid Trainer, a Self-Forcing Trainer or a DMD object.

    Raises:
        TypeError: ``trainer`` is none of these.
    """
    if hasattr(trainer, "distillation_model"):  # CausVid's Trainer
        dmd, config = trainer.distillation_model, getattr(trainer, "config", None)
    elif hasattr(trainer, "model") and hasattr(trainer, "config") and hasattr(trainer.model, "compute_distribution_matching_loss"):
        dmd, config = trainer.model, trainer.config  # Self-Forcing's Trainer
    elif hasattr(trainer, "compute_distribution_matching_loss"):
        dmd, config = trainer, getattr(trainer, "args", None)  # a DMD object; both hosts keep the config as .args
    else:
        raise TypeError(
            "expected a CausVid Trainer (with .distillation_model), a Self-Forcing Trainer (with .model "
            f"and .config) or a DMD object (with compute_distribution_matching_loss), got {type(trainer).__name__}"
        )
    check_dmd(dmd)
    return dmd, config


def wrap_trainer(trainer: Any, lam: Optional[float] = None, **options: Any) -> Any:
    """Add MSM (``+ lam * msm_loss``, paper eq. 12) to the trainer's DMD generator loss, in place.

    Options not given are read from the config's ``msm:`` section (CausVid/Self-Forcing
    ``trainer.config``, or a DMD object's ``.args``); other losses listed in the config's
    ``extra_losses`` are added too. Wrapping again warns and replaces (never stacks).

    Args:
        trainer: CausVid Trainer, Self-Forcing Trainer or DMD object.
        lam: MSM weight (>= 0); ``0`` gives exactly the host's loss, with MSM logged.
        **options: other MSM options (``normalization``, ``order``, ``timestep_policy``,
            ``per_pair_logs``, ``feature``).

    Returns:
        ``trainer`` itself.
    """
    dmd, config = find_dmd(trainer)
    msm_options = dict(options)
    if lam is not None:
        msm_options["lam"] = lam
    losses = build_extra_losses(config, overrides={"msm": msm_options})
    wrap_dmd(dmd, losses)
    return trainer


def apply_extra_losses(trainer: Any) -> Any:
    """Wrap the trainer with exactly the losses its config lists (a no-op when it lists none).

    This is what ``msm-train`` and the upstream patch call: behaviour comes from the config only.
    """
    dmd, config = find_dmd(trainer)
    losses = build_extra_losses(config)
    if losses:
        wrap_dmd(dmd, losses)
    return trainer


def unwrap_trainer(trainer: Any) -> Any:
    """Undo :func:`wrap_trainer` / :func:`apply_extra_losses` (and ``msm-train``'s logging wrap of
    ``train_one_step``); returns ``trainer``."""
    dmd, _ = find_dmd(trainer)
    unwrap_dmd(dmd)
    if trainer is not dmd:
        unpatch_method(trainer, "train_one_step")
    return trainer


def pop_extra_logs(trainer: Any) -> Dict[str, float]:
    """The extra losses' scalar logs of the last generator step as floats (``{}`` if none); clears them.

    Accepts the same objects as :func:`wrap_trainer`. Meant for the training loop's wandb dict,
    e.g. ``wandb_loss_dict.update(pop_extra_logs(self))``.
    """
    dmd, _ = find_dmd(trainer)
    return _pop_dmd_logs(dmd)
