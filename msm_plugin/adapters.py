"""Plug MSM (and any registered extra loss) into a host's DMD training without forking it.

``wrap_trainer`` accepts what a training script has at hand, for any known host
(:mod:`msm_plugin.hosts`), e.g.:

- a CausVid ``causvid.train_distillation.Trainer`` (``.distillation_model``, ``.config``),
- a Self-Forcing ``trainer.distillation.Trainer`` (``.model``, ``.config``),
- or a DMD object itself (CausVid's ``causvid.dmd.DMD`` or Self-Forcing's ``model.dmd.DMD``,
  whose ``.args`` is the config),
- a built FastVideo ``DMD2Method`` / ``SelfForcingMethod`` (config: its ``method_config``),
- a built FastGen ``DMD2Model`` / ``CausVidModel`` / ``SelfForcingModel``,

detects the host (or takes ``host=``) and installs the losses in place. Options come from the
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

from typing import Any, Dict, List, Optional, Tuple, Union

from msm_plugin.config import EXTRA_LOSSES_KEY, unused_setting
from msm_plugin.context import ExtraLoss
from msm_plugin.hosts import Host, detect_host, get_host
from msm_plugin.registry import available_losses, get_loss
from msm_plugin.hosts.dmd_chain import is_wrapped, wrap_dmd

__all__ = [
    "active_losses",
    "apply_extra_losses",
    "check_extra_losses",
    "find_dmd",
    "is_wrapped",
    "pop_extra_logs",
    "unwrap_trainer",
    "wrap_dmd",
    "wrap_trainer",
]

HostArg = Union[None, str, Host]


def _resolve(trainer: Any, host: HostArg) -> Tuple[Host, Any, Any]:
    """``(host, target, config)``; raises before any change."""
    h = detect_host(trainer) if host is None else get_host(host)
    target, config = h.target(trainer)
    return h, target, config


def find_dmd(trainer: Any, *, host: HostArg = None) -> Tuple[Any, Any]:
    """``(dmd, config)`` for a trainer or DMD object of a known host.

    Raises:
        TypeError: ``trainer`` is no known host's (the message lists what each accepts).
    """
    _, target, config = _resolve(trainer, host)
    return target, config


def _check_keywords(options: Dict[str, Any]) -> None:
    """Refuse a keyword that names a loss, a list of losses or another loss's option: wrap_trainer
    takes MSM's options only (the rest comes from the config), and would otherwise report it as
    an unknown MSM option with no hint of what was meant."""
    own = get_loss("msm").options_class.option_names()
    for key in options:
        guess = None if key in own else (key if key == EXTRA_LOSSES_KEY or key in available_losses() else unused_setting(key))
        if guess is not None:
            raise ValueError(
                f"wrap_trainer keyword `{key}` is not used: it takes MSM's options as keywords "
                f"(wrap_trainer(trainer, lam=0.5, order=2)); other losses and their options come from the config (`{guess}`)"
            )


def wrap_trainer(trainer: Any, lam: Optional[float] = None, *, host: HostArg = None, **options: Any) -> Any:
    """Add MSM (``+ lam * msm_loss``, paper eq. 12) to the trainer's DMD generator loss, in place.

    Options not given are read from the config's ``msm:`` section (CausVid/Self-Forcing
    ``trainer.config``, a DMD object's ``.args``, a FastVideo method's ``method_config``, the
    keyword arguments an msm-plugin FastGen model was built with); other losses listed in the config's
    ``extra_losses`` are added too. Wrapping again replaces (never stacks), with a warning that
    lists what changed; the schedules continue. Given a trainer, the schedules follow its step
    (:meth:`~msm_plugin.hosts.Host.step_source`).

    Args:
        trainer: a trainer or DMD object of a known host (:func:`msm_plugin.hosts.available_hosts`).
        lam: MSM weight (>= 0); ``0`` gives exactly the host's loss, with MSM logged.
        host: force a host by name instead of detecting it.
        **options: other MSM options (fields of :class:`~msm_plugin.losses.msm.MSMConfig`:
            ``normalization``, ``order``, ``timestep_policy``, ``per_pair_logs``, ``feature``,
            ``warmup_steps``, ``ramp_steps``, ``start_step``, ``t_min``, ``t_max``, ``smoothing``,
            ``pair_weights``, ``pair_weights_mix``, ``pair_weights_base``).

    Returns:
        ``trainer`` itself.
    """
    _check_keywords(options)
    h, target, config = _resolve(trainer, host)
    msm_options = dict(options)
    if lam is not None:
        msm_options["lam"] = lam
    losses = h.build_losses(config, overrides={"msm": msm_options})
    h.attach(trainer, losses)
    return trainer


def apply_extra_losses(trainer: Any, *, host: HostArg = None) -> Any:
    """Wrap the trainer with exactly the losses its config lists (a no-op when it lists none).

    This is what ``msm-train`` and the upstream patches call: behaviour comes from the config only.
    """
    h, target, config = _resolve(trainer, host)
    losses = h.build_losses(config)
    if losses:
        h.attach(trainer, losses)
    return trainer


def check_extra_losses(config: Any, *, host: Union[str, Host]) -> List[ExtraLoss]:
    """Validate ``config``'s extra losses as ``host`` reads it and build them; raise on any error.

    What a training script calls first thing, before any model is built or file written (the
    shipped patches do): the same checks :func:`apply_extra_losses` makes later, once the trainer
    exists, including the host's own keys (e.g. a causal teacher under MSM's strict policy).

    Example:
        >>> [loss.name for loss in check_extra_losses({"extra_losses": ["msm"]}, host="causvid")]
        ['msm']
        >>> check_extra_losses({"extra_losses": ["msm"], "real_task_type": "causal_video"}, host="causvid")
        Traceback (most recent call last):
        ...
        ValueError: real_task_type is causal_video (one teacher timestep per block), but MSM's timestep_policy is 'strict', which requires one timestep shared by all frames (paper sec. 6.2). Use a bidirectional teacher (real_task_type: bidirectional_video, as CausVid stage 3 does) or set `msm: {timestep_policy: pairs}` to count only frame pairs that share a timestep
    """
    return get_host(host).build_losses(config)


def unwrap_trainer(trainer: Any, *, host: HostArg = None) -> Any:
    """Undo :func:`wrap_trainer` / :func:`apply_extra_losses` (and ``msm-train``'s logging wrap);
    returns ``trainer``."""
    h, _, _ = _resolve(trainer, host)
    h.uninstall(trainer)
    return trainer


def active_losses(trainer: Any, *, host: HostArg = None) -> Tuple[ExtraLoss, ...]:
    """The extra losses installed on ``trainer`` (``()`` when none)."""
    h, target, _ = _resolve(trainer, host)
    extra = h.extra_losses(target)
    return () if extra is None else extra.losses


def pop_extra_logs(trainer: Any, *, host: HostArg = None) -> Dict[str, float]:
    """The extra losses' scalar logs of the last generator step as floats (``{}`` if none); clears them.

    Accepts the same objects as :func:`wrap_trainer`. Meant for the training loop's wandb dict,
    e.g. ``wandb_loss_dict.update(pop_extra_logs(self))``.
    """
    h, target, _ = _resolve(trainer, host)
    extra = h.extra_losses(target)
    return {} if extra is None else extra.pop_logs()
