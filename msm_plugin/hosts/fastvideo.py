"""FastVideo (hao-ai-lab/FastVideo, the ``fastvideo/train/`` stack): ``MSMDMD2Method``, ``MSMSelfForcingMethod``.

FastVideo builds ``method._target_`` from its YAML with ``(cfg=..., role_models=...)``, so these
subclasses of its ``DMD2Method`` / ``SelfForcingMethod`` add MSM from the same ``method:`` section::

    method:
      _target_: msm_plugin.hosts.fastvideo.MSMDMD2Method
      extra_losses: [msm]
      msm: {lam: 0.5}

- Config: ``method.extra_losses`` and ``method.msm`` are validated first thing in the
  constructor, before the parent's (no optimiser, preprocessor or RNG touched). FastVideo has
  already built the role models by then (its builder does that before resolving the method).
- Predictions: ``_dmd_loss(generator_pred_x0, batch)`` keeps them as local variables; the hook
  records the outputs of the calls it makes anyway (``critic.predict_x0`` and
  ``teacher.predict_x0`` with ``conditional=True/False`` in ``DMD2Method``;
  ``self._predict_x0_with_scheduler(model, ...)`` in ``SelfForcingMethod``) and recombines CFG as
  the host does, ``uncond + (cond - uncond) * real_score_guidance_scale`` (default 1.0). No
  network call is added and the random stream is untouched.
- Timestep: one score timestep ``[1]`` for the whole batch, expanded to ``[B, F]`` (all equal, so
  the strict policy holds). Layout ``[B, F, C, H, W]``, no gradient mask.
- Normaliser: FastVideo divides by ONE scalar, ``mean |x - real_cfg_x0|`` over the whole batch;
  the context says so (``dmd_over="batch"``), so MSM's ``"dmd"`` normaliser is that same scalar.
- Noise level: the score timestep is on the student's ``num_train_timesteps`` scale (1000).
- Logs: ``single_train_step`` returns its metrics plus the extra scalars of that step
  (``dmd_loss``, ``msm_loss``, ``msm_lambda``, ``msm_gradient_norm``, ``msm_motion_*``, ...),
  which FastVideo's trainer averages and sends to its tracker with its own.
- The critic update (``_critic_flow_matching_loss``) is not touched.
"""

from __future__ import annotations

from contextlib import ExitStack
from typing import Any, Dict, List, Tuple

import torch
from torch import Tensor

from msm_plugin.hosts._framework import FrameworkHost, extra_of, set_extra, subclass_getattr
from msm_plugin.hosts.base import Call, recorded_calls
from msm_plugin.context import LossContext

__all__ = ["FastVideoHost", "MSMDMD2Method", "MSMSelfForcingMethod"]

INSTALL_HINT = "pip install fastvideo (the fastvideo/train/ stack, e.g. at commit 2f3d4074 or later)"

_METHODS = "fastvideo.train.methods.distribution_matching"
#: The framework classes subclassed on first access, by public name.
SUBCLASSES = {
    "MSMDMD2Method": f"{_METHODS}.dmd2:DMD2Method",
    "MSMSelfForcingMethod": f"{_METHODS}.self_forcing:SelfForcingMethod",
}


def guidance_scale(method: Any) -> float:
    """``method.real_score_guidance_scale`` as FastVideo reads it (1.0 when unset)."""
    raw = method.method_config.get("real_score_guidance_scale")
    return 1.0 if raw is None else float(raw)


def score_timestep(timestep: Tensor, batch: int, frames: int) -> Tensor:
    """FastVideo's score timestep (``[1]`` shared, or one per sample ``[B]``) as ``[B, F]``.

    Example:
        >>> score_timestep(torch.tensor([750]), 2, 3).tolist()
        [[750, 750, 750], [750, 750, 750]]
    """
    if timestep.numel() == 1:
        return timestep.reshape(1, 1).expand(batch, frames)
    if tuple(timestep.shape) == (batch,):
        return timestep.reshape(batch, 1).expand(batch, frames)
    if tuple(timestep.shape) == (batch, frames):
        return timestep
    raise ValueError(f"expected FastVideo's score timestep of shape [1], [B] or [B, F] with B, F = {batch}, {frames}, got {tuple(timestep.shape)}")


def _predictions(method: Any, scored: List[Tuple[str, Call]]) -> Tuple[Tensor, Tensor, Tensor]:
    """``(pred_real after CFG, pred_fake, timestep)`` from the recorded ``(role, call)`` pairs."""
    found: Dict[str, Call] = {}
    for role, call in scored:
        if not {"timestep", "conditional"} <= set(call.arguments):
            raise TypeError(
                "expected FastVideo's prediction calls to take `timestep` and `conditional` (as "
                f"ModelBase.predict_x0(noisy_latents, timestep, batch, *, conditional, ...)), got parameters {list(call.arguments)}"
            )
        key = f"{role}/{'cond' if call.arguments['conditional'] else 'uncond'}"
        if key in found:
            raise RuntimeError(f"FastVideo's _dmd_loss called the {key} prediction twice; expected one critic and two teacher calls")
        found[key] = call
    need = ("critic/cond", "teacher/cond", "teacher/uncond")
    if sorted(found) != sorted(need):
        raise RuntimeError(f"expected FastVideo's _dmd_loss to make the calls {list(need)}, it made {sorted(found)}")
    with torch.no_grad():
        cond, uncond = found["teacher/cond"].output, found["teacher/uncond"].output
        real = uncond + (cond - uncond) * guidance_scale(method)  # FastVideo's CFG, same order of operations
    return real, found["critic/cond"].output.detach(), found["critic/cond"].arguments["timestep"]


def _dmd_loss(method: Any, original: Any, generator_pred_x0: Tensor, batch: Any) -> Tensor:
    """FastVideo's DMD loss ``+ sum weight * extra loss`` from the predictions it made."""
    extra = extra_of(method)
    if extra is None:
        return original(generator_pred_x0, batch)
    with ExitStack() as stack:
        teacher = stack.enter_context(recorded_calls(method.teacher, "predict_x0"))
        critic = stack.enter_context(recorded_calls(method.critic, "predict_x0"))
        routed: List[Call] = []
        if hasattr(method, "_predict_x0_with_scheduler"):  # SelfForcingMethod: x0 through its scheduler
            routed = stack.enter_context(recorded_calls(method, "_predict_x0_with_scheduler"))
        loss = original(generator_pred_x0, batch)
    if routed:  # the scheduler route is what _dmd_loss used (a model's predict_noise may call its predict_x0)
        roles = {id(method.teacher): "teacher", id(method.critic): "critic"}
        scored = [(roles.get(id(c.arguments["model"]), "other"), c) for c in routed]
    else:
        scored = [("teacher", c) for c in teacher] + [("critic", c) for c in critic]
    pred_real, pred_fake, timestep = _predictions(method, scored)
    b, f = generator_pred_x0.shape[:2]
    ctx = LossContext(
        generated=generator_pred_x0,
        pred_real=pred_real,
        pred_fake=pred_fake,
        timestep=score_timestep(timestep.detach(), b, f),
        host="fastvideo",
        timestep_scale=getattr(method.student, "num_train_timesteps", None),
        dmd_over="batch",  # FastVideo divides by one scalar over the whole batch
    )
    total, _ = extra.add(loss, {}, ctx)
    return total.to(loss.dtype)  # the host's dtype: with lam = 0 this is its loss bit for bit


def _single_train_step(method: Any, original: Any, batch: Any, iteration: int) -> Tuple[Dict[str, Any], Dict[str, Any], Dict[str, Any]]:
    """FastVideo's step, its metrics plus the extra scalars of this step (none on critic-only steps)."""
    loss_map, outputs, metrics = original(batch, iteration)
    extra = extra_of(method)
    logs = {} if extra is None else extra.pop_logs()
    clash = sorted(set(logs) & set(metrics))
    if clash:
        raise ValueError(f"FastVideo's step metrics already have the keys {clash}; the extra losses would overwrite them")
    return loss_map, outputs, {**metrics, **logs}


def _init(method: Any, original: Any, *, cfg: Any, role_models: Any) -> None:
    """Validate ``cfg.method``'s extra losses before FastVideo's constructor runs, then install them."""
    host = FastVideoHost()
    losses = host.build_losses(dict(getattr(cfg, "method", None) or {}))
    original(cfg=cfg, role_models=role_models)
    set_extra(method, host.extras(losses))


class FastVideoHost(FrameworkHost):
    name = "fastvideo"
    framework_module = "fastvideo"
    description = "a FastVideo DMD2Method / SelfForcingMethod (with _dmd_loss, teacher, critic, method_config)"
    required = ("_dmd_loss", "single_train_step", "teacher", "critic", "method_config")
    hooks = {"_dmd_loss": _dmd_loss, "single_train_step": _single_train_step}
    route = (
        "FastVideo builds the method class its YAML names: set `method._target_: "
        "msm_plugin.hosts.fastvideo.MSMDMD2Method` (or MSMSelfForcingMethod) with `extra_losses: [msm]` "
        "and `msm: {lam: ...}` under `method:`, and launch FastVideo's own trainer (examples/train/run.sh)"
    )

    def config_of(self, obj: Any) -> Any:
        return obj.method_config


# The subclasses, built from the installed framework on first access (never on import).
__getattr__ = subclass_getattr(__name__, SUBCLASSES, {"__init__": _init, **FastVideoHost.hooks}, INSTALL_HINT)
