"""FastGen (NVlabs/FastGen): ``MSMDMD2Model``, ``MSMCausVidModel``, ``MSMSelfForcingModel``.

FastGen instantiates the experiment config's ``model_class`` (a ``LazyCall``) with the model
config, so these subclasses of its ``DMD2Model`` / ``CausVidModel`` / ``SelfForcingModel`` take
the extra losses as keyword arguments of that same call::

    config.model_class = L(MSMDMD2Model)(config=None, extra_losses=["msm"], msm=dict(lam=0.5))

- Config: ``extra_losses`` and the per-loss sections are validated before FastGen's constructor,
  i.e. before any network is built or weight loaded.
- Predictions: ``_student_update_step`` (inherited by CausVid and Self-Forcing) passes
  ``gen_data``, the teacher's x0 after CFG and the fake score's x0 to
  ``variational_score_distillation_loss``, a name of the module defining that method; the hook
  records that one call's arguments (no network call added, the random stream untouched).
- Layout ``[B, C, T, H, W]``: the context is its ``[B, T, C, H, W]`` view (frames on dim 1, the
  gradient flows through the view). Timestep ``t``: ``[B]`` in [0, 1], one per sample, expanded
  to ``[B, T]``.
- Normaliser: FastGen's is per sample, ``1 / (mean |gen - teacher| + 1e-6)``; MSM's ``dmd``
  normaliser is the same (the context carries ``dmd_eps=1e-6``).
- Loss and logs: ``loss_map["total_loss"]`` (VSD + GAN, what FastGen back-propagates) gains
  ``sum weight * loss``; ``loss_map`` gains ``dmd_loss`` (FastGen's total before the extra
  losses), ``msm_loss``, ``msm_lambda``, ``msm_gradient_norm`` and the motion diagnostics, as
  tensors, which FastGen's wandb callback logs as ``train/<key>``.
- The fake-score / discriminator step (``_fake_score_discriminator_update_step``) is not touched.
"""

from __future__ import annotations

import sys
from typing import Any, Dict, List, Optional, Tuple

import torch
from einops import rearrange
from torch import Tensor

from msm_plugin.hosts._framework import FrameworkHost, extra_of, set_extra, subclass_getattr
from msm_plugin.hosts.base import recorded_calls
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


def _loss_map_entry(value: Any, device: torch.device) -> Tensor:
    """A log value as FastGen's loss_map holds it: a detached scalar tensor."""
    if isinstance(value, Tensor):
        return value.detach().reshape(())
    return torch.tensor(float(value), device=device)


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
    # The name is looked up in the module that defines the method (dmd2.py for all three classes).
    namespace = sys.modules[original.__module__]
    with recorded_calls(namespace, VSD_LOSS) as calls:
        loss_map, outputs = original(input_student, t_student, t, eps, data, condition=condition, neg_condition=neg_condition)
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
        timestep_scale=1.0,  # FastGen's t is the noise level in [0, 1]
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


def _init(model: Any, original: Any, config: Any, extra_losses: Optional[List[str]] = None, **sections: Any) -> None:
    """Validate the extra losses before FastGen's constructor builds any network, then install them."""
    options = {"extra_losses": _plain(extra_losses), **{k: _plain(v) for k, v in sections.items()}}
    host = FastGenHost()
    losses = host.build_losses(options)
    original(config)
    object.__setattr__(model, OPTIONS_ATTR, options)
    set_extra(model, host.extras(losses))


class FastGenHost(FrameworkHost):
    name = "fastgen"
    framework_module = "fastgen"
    description = "a FastGen DMD2Model / CausVidModel / SelfForcingModel (with _student_update_step, teacher, fake_score)"
    required = ("_student_update_step", "single_train_step", "teacher", "fake_score")
    hooks = {"_student_update_step": _student_update_step}
    route = (
        "FastGen builds the experiment config's model_class: set `config.model_class = "
        "L(MSMDMD2Model)(config=None, extra_losses=['msm'], msm=dict(lam=...))` (from "
        "msm_plugin.hosts.fastgen) and launch FastGen's own train.py"
    )

    def config_of(self, obj: Any) -> Dict[str, Any]:
        return dict(vars(obj).get(OPTIONS_ATTR, {}))


# The subclasses, built from the installed framework on first access (never on import).
__getattr__ = subclass_getattr(__name__, SUBCLASSES, {"__init__": _init, **FastGenHost.hooks}, INSTALL_HINT)
