"""FastGen (NVlabs/FastGen): ``MSMDMD2Model``, ``MSMCausVidModel``, ``MSMSelfForcingModel``.

FastGen instantiates the experiment config's ``model_class`` (a ``LazyCall``) with the model
config, so these subclasses of its ``DMD2Model`` / ``CausVidModel`` / ``SelfForcingModel`` take
the extra losses as keyword arguments of that same call::

    config.model_class = L(MSMDMD2Model)(config=None, extra_losses=["msm"], msm=dict(lam=0.5))

- Config: ``extra_losses`` and the per-loss sections are validated before FastGen's constructor,
  i.e. before any network is built or weight loaded; any other keyword is refused, as FastGen's
  own classes do (``lam=0.5`` or ``+model_class.lam=0.5``: did you mean ``msm.lam``?), and so is
  a class chosen without ``extra_losses`` (``extra_losses=[]`` runs without them).
- Predictions: ``_student_update_step`` (inherited by CausVid and Self-Forcing) passes
  ``gen_data``, the teacher's x0 after CFG and the fake score's x0 to
  ``variational_score_distillation_loss``, a name of the module defining that method; the hook
  runs that method with the name recording in a copy of the module's namespace
  (:func:`~msm_plugin.hosts.base.call_recording_global`): the module is never changed, so other
  models and threads are not affected. No network call added, the random stream untouched.
- Layout ``[B, C, T, H, W]``: the context is its ``[B, T, C, H, W]`` view (frames on dim 1, the
  gradient flows through the view; a loss of weight 0 stays out of the graph, so the student's
  gradients are FastGen's bit for bit). Timestep ``t``: ``[B]``, one per sample, expanded to
  ``[B, T]``, on the scale of the model's noise schedule (``net.noise_scheduler.max_t``: 80 for
  EDM, pi / 2 trigonometric, 0.999 rectified flow), which is the context's ``timestep_scale``.
- Schedule: counted in student steps from ``single_train_step``'s ``iteration`` (the same for each
  gradient-accumulation round, restored on resume).
- Normaliser: FastGen's is per sample, ``1 / (mean |gen - teacher| + 1e-6)``; MSM's ``dmd``
  normaliser is the same (the context carries ``dmd_eps=1e-6``).
- Loss and logs: ``loss_map["total_loss"]`` (VSD + GAN, what FastGen back-propagates) gains
  ``sum weight * loss``; ``loss_map`` gains ``dmd_loss`` (FastGen's total before the extra
  losses) and the extra losses' scalars (``msm_loss``, ``msm_lambda``, ``msm_grad_ratio``, the
  motion diagnostics, ...), as 0-d tensors: FastGen's wandb callback reads each with
  ``.float().item()`` (tensors only, charted in float32) and logs it as ``train/<key>``.
- The fake-score / discriminator step (``_fake_score_discriminator_update_step``) is not touched.
"""

from __future__ import annotations

from typing import Any, Dict, List, Optional, Tuple

import torch
from einops import rearrange
from torch import Tensor

from msm_plugin.config import refuse_unused_settings
from msm_plugin.hosts._framework import FrameworkHost, extra_of, following_step, require_listed, set_extra, subclass_getattr
from msm_plugin.hosts.base import call_recording_global, generator_steps_before
from msm_plugin.context import LossContext

__all__ = ["FastGenHost", "MSMCausVidModel", "MSMDMD2Model", "MSMSelfForcingModel"]

INSTALL_HINT = "install NVlabs/FastGen from a checkout: git clone https://github.com/NVlabs/FastGen && pip install -e FastGen"

_METHODS = "fastgen.methods.distribution_matching"
#: The framework classes subclassed on first access, by public name.
SUBCLASSES = {
    "MSMDMD2Model": f"{_METHODS}.dmd2:DMD2Model",
    "MSMCausVidModel": f"{_METHODS}.causvid:CausVidModel",
    "MSMSelfForcingModel": f"{_METHODS}.self_forcing:SelfForcingModel",
}
#: The loss function ``_student_update_step`` calls with the three tensors MSM needs.
VSD_LOSS = "variational_score_distillation_loss"
#: The attribute keeping the options the constructor got (what ``wrap_trainer`` reads as config).
OPTIONS_ATTR = "msm_plugin_options"


def frames_first(video: Tensor) -> Tensor:
    """FastGen's ``[B, C, T, H, W]`` as ``[B, T, C, H, W]`` (a view).

    Example:
        >>> frames_first(torch.zeros(2, 16, 5, 3, 4)).shape
        torch.Size([2, 5, 16, 3, 4])
    """
    if not isinstance(video, Tensor) or video.dim() != 5:
        got = tuple(video.shape) if isinstance(video, Tensor) else type(video).__name__
        raise ValueError(f"expected FastGen video latents [B, C, T, H, W], got {got}; MSM needs frames")
    return rearrange(video, "b c t h w -> b t c h w")


def max_time(model: Any) -> Optional[float]:
    """The largest time of the model's noise schedule, ``model.net.noise_scheduler.max_t``: the
    scale of ``t`` (EDM: 80, trigonometric: pi / 2, rectified flow: 0.999); None when absent."""
    value = getattr(getattr(getattr(model, "net", None), "noise_scheduler", None), "max_t", None)
    return float(value) if isinstance(value, (int, float)) and not isinstance(value, bool) else None


def _loss_map_entry(value: Any, device: torch.device) -> Tensor:
    """A log value as FastGen's loss_map holds it: a detached scalar tensor.

    FastGen's wandb callback reads every entry as ``value.float().item()``: a Python float would
    break it, and every value is charted in float32 (``msm_lambda`` 0.7 shows as 0.699999988;
    FastGen's own losses too). A number is written in float64 with ``torch.full``, a fill kernel:
    ``torch.tensor(value, device=...)`` would be a host-to-device copy that waits for the device.
    """
    if isinstance(value, Tensor):
        return value.detach().reshape(())
    return torch.full((), float(value), dtype=torch.float64, device=device)


def _student_update_step(
    model: Any,
    original: Any,
    input_student: Tensor,
    t_student: Tensor,
    t: Tensor,
    eps: Tensor,
    data: Dict[str, Any],
    condition: Optional[Any] = None,
    neg_condition: Optional[Any] = None,
) -> Tuple[Dict[str, Tensor], Dict[str, Any]]:
    """FastGen's student step with ``total_loss + sum weight * extra loss`` and their logs in ``loss_map``."""
    extra = extra_of(model)
    if extra is None:
        return original(input_student, t_student, t, eps, data, condition=condition, neg_condition=neg_condition)
    if not isinstance(t, Tensor) or tuple(t.shape) != (input_student.shape[0],):
        # checked before the step runs: MSM needs one score time per sample (all frames share it)
        got = tuple(t.shape) if isinstance(t, Tensor) else type(t).__name__
        raise ValueError(f"expected FastGen's score time t of shape [B] = ({input_student.shape[0]},), got {got}")
    # Recorded for this call only: FastGen's module is never changed (other models, other threads).
    (loss_map, outputs), calls = call_recording_global(
        original, VSD_LOSS, input_student, t_student, t, eps, data, condition=condition, neg_condition=neg_condition
    )
    if len(calls) != 1:
        raise RuntimeError(f"expected FastGen's _student_update_step to call {VSD_LOSS} once, it called it {len(calls)} times")
    args = calls[0].arguments
    generated = frames_first(args["gen_data"])
    b, f = generated.shape[:2]
    ctx = LossContext(
        generated=generated,
        pred_real=frames_first(args["teacher_x0"].detach()),
        pred_fake=frames_first(args["fake_score_x0"].detach()),
        timestep=t.detach().reshape(b, 1).expand(b, f),
        host="fastgen",
        timestep_scale=max_time(model),
        dmd_eps=1e-6,  # its normaliser is mean |gen - teacher| + 1e-6
    )
    host_loss = loss_map["total_loss"]
    total, logs = extra.add(host_loss, loss_map, ctx)
    added = {k: _loss_map_entry(v, host_loss.device) for k, v in logs.items() if k not in loss_map}
    # the host's dtype: with lam = 0 this is its loss bit for bit
    return {**loss_map, **added, "total_loss": total.to(host_loss.dtype)}, outputs


def _plain(value: Any) -> Any:
    """OmegaConf containers (what a LazyCall may hand over) as plain Python."""
    from omegaconf import DictConfig, ListConfig, OmegaConf

    return OmegaConf.to_container(value, resolve=True) if isinstance(value, (DictConfig, ListConfig)) else value


def _single_train_step(model: Any, original: Any, data: Dict[str, Any], iteration: int) -> Tuple[Dict[str, Tensor], Dict[str, Any]]:
    """FastGen's step; the schedules follow ``iteration`` (from 1, the same for every accumulation
    round, restored on resume), counted in student steps."""
    with following_step(model, lambda: generator_steps_before(iteration, int(model.config.student_update_freq), first=1)):
        return original(data, iteration)


_ABSENT: Any = object()


def _init(model: Any, original: Any, config: Any, extra_losses: Optional[List[str]] = _ABSENT, **sections: Any) -> None:
    """Validate the extra losses before FastGen's constructor builds any network, then install them.

    Like FastGen's own classes, the constructor refuses a keyword it does not use (``lam=`` or a
    ``+model_class.lam=`` override: did you mean ``msm.lam``?), and a class chosen without
    ``extra_losses`` would be plain DMD2: refused too (``extra_losses=[]`` is a run without them)."""
    cls = type(model).__name__
    given = {} if extra_losses is _ABSENT else {"extra_losses": _plain(extra_losses)}
    options = {**given, **{k: _plain(v) for k, v in sections.items()}}
    host = FastGenHost()
    refuse_unused_settings(options, at=host.settings_at, accepts=f"{cls} takes `config`, `extra_losses` and one options section per listed loss")
    losses = host.build_losses(options)
    require_listed(given, cls, "its `extra_losses` keyword", f"`L({cls})(config=None, extra_losses=['msm'], msm=dict(lam=...))`")
    original(config)
    object.__setattr__(model, OPTIONS_ATTR, options)
    set_extra(model, host.extras(losses))


class FastGenHost(FrameworkHost):
    name = "fastgen"
    framework_module = "fastgen"
    description = "a FastGen DMD2Model / CausVidModel / SelfForcingModel (with _student_update_step, teacher, fake_score)"
    required = ("_student_update_step", "single_train_step", "teacher", "fake_score")
    hooks = {"_student_update_step": _student_update_step, "single_train_step": _single_train_step}
    settings_at = "model_class."
    restored_step = "FastGen's training iteration"
    config_keys = frozenset({"config"})  # the only keyword of FastGen's model classes
    route = (
        "FastGen builds the experiment config's model_class: set `config.model_class = "
        "L(MSMDMD2Model)(config=None, extra_losses=['msm'], msm=dict(lam=...))` (from "
        "msm_plugin.hosts.fastgen) and launch FastGen's own train.py"
    )

    def config_of(self, obj: Any) -> Dict[str, Any]:
        return dict(vars(obj).get(OPTIONS_ATTR, {}))


# The subclasses, built from the installed framework on first access (never on import).
__getattr__ = subclass_getattr(__name__, SUBCLASSES, {"__init__": _init, **FastGenHost.hooks}, INSTALL_HINT)
