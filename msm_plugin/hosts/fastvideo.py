"""FastVideo (hao-ai-lab/FastVideo, the ``fastvideo/train/`` stack): ``MSMDMD2Method``, ``MSMSelfForcingMethod``.

FastVideo builds ``method._target_`` from its YAML with ``(cfg=..., role_models=...)``, so these
subclasses of its ``DMD2Method`` / ``SelfForcingMethod`` add MSM from the same ``method:`` section::

    method:
      _target_: msm_plugin.hosts.fastvideo.MSMDMD2Method
      extra_losses: [msm]
      msm: {lam: 0.5}

- Config: ``method.extra_losses`` and ``method.msm`` are validated first thing in the
  constructor, before the parent's (no optimiser, preprocessor or RNG touched); so is the YAML's
  top level, where an ``msm:`` or ``extra_losses:`` would not be read, and a method with no
  ``method.extra_losses`` at all is refused (an empty list runs without them). FastVideo has
  already built the role models by then (its builder does that before resolving the method).
- Schedule: counted in generator steps from ``single_train_step``'s ``iteration`` (the optimiser
  step, the same for each gradient-accumulation round, restored on resume).
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

from msm_plugin.config import refuse_unused_settings
from msm_plugin.hosts._framework import FrameworkHost, extra_of, following_step, require_listed, set_extra, subclass_getattr
from msm_plugin.hosts.base import Call, generator_steps_before, recorded_calls
from msm_plugin.context import LossContext

__all__ = ["FastVideoHost", "MSMDMD2Method", "MSMSelfForcingMethod"]

INSTALL_HINT = "pip install fastvideo (the fastvideo/train/ stack, e.g. at commit 2f3d4074 or later)"

_METHODS = "fastvideo.train.methods.distribution_matching"
#: The framework classes subclassed on first access, by public name.
SUBCLASSES = {
    "MSMDMD2Method": f"{_METHODS}.dmd2:DMD2Method",
    "MSMSelfForcingMethod": f"{_METHODS}.self_forcing:SelfForcingMethod",
}


#: The top-level keys of FastVideo's run config (``load_run_config``).
TOP_LEVEL_KEYS = frozenset({"models", "method", "training", "callbacks", "pipeline"})


def generator_interval(method: Any) -> int:
    """``method.generator_update_interval`` as FastVideo reads it: the student trains at the
    iterations that are multiples of it (1 when unset, every iteration when <= 0)."""
    raw = method.method_config.get("generator_update_interval")
    return 1 if raw is None else int(float(raw))


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
    """FastVideo's step, its metrics plus the extra scalars of this step (none on critic-only steps).

    The schedules follow ``iteration`` (from 1, the same for every accumulation round, restored on
    resume), counted in generator steps."""
    with following_step(method, lambda: generator_steps_before(iteration, generator_interval(method), first=1)):
        loss_map, outputs, metrics = original(batch, iteration)
    extra = extra_of(method)
    # device scalars as they are: FastVideo sums them over gradient accumulation on the device and
    # reads each once per optimiser step, so the hook adds no device sync
    logs = {} if extra is None else extra.pop_logs(floats=False)
    clash = sorted(set(logs) & set(metrics))
    if clash:
        raise ValueError(f"FastVideo's step metrics already have the keys {clash}; the extra losses would overwrite them")
    return loss_map, outputs, {**metrics, **logs}


def _init(method: Any, original: Any, *, cfg: Any, role_models: Any) -> None:
    """Validate ``cfg.method``'s extra losses (and the YAML's top level, where they are not read)
    before FastVideo's constructor runs, then install them."""
    host = FastVideoHost()
    section = dict(getattr(cfg, "method", None) or {})
    raw = getattr(cfg, "raw", None)  # the whole YAML, as FastVideo's RunConfig keeps it
    if raw is not None:
        refuse_unused_settings(raw, home=host.settings_at, host_keys=TOP_LEVEL_KEYS, listed=section.get("extra_losses") or ())
    losses = host.build_losses(section)
    require_listed(section, type(method).__name__, "`method.extra_losses`", "`extra_losses: [msm]` (and `msm: {lam: ...}`) under `method:`")
    original(cfg=cfg, role_models=role_models)
    set_extra(method, host.extras(losses))


class FastVideoHost(FrameworkHost):
    name = "fastvideo"
    framework_module = "fastvideo"
    description = "a FastVideo DMD2Method / SelfForcingMethod (with _dmd_loss, teacher, critic, method_config)"
    required = ("_dmd_loss", "single_train_step", "teacher", "critic", "method_config")
    hooks = {"_dmd_loss": _dmd_loss, "single_train_step": _single_train_step}
    settings_at = "method."
    restored_step = "FastVideo's training iteration"
    # The `method:` keys FastVideo's methods read or its example configs set (at 2f3d4074).
    config_keys = frozenset({
        "_target_", "adv_clip_max", "adv_mode", "attn_kind", "beta", "betas", "cfg_uncond", "chunk_size",
        "consistency_ratio", "context_noise", "decay_type", "diffusion_ratio", "discrete_cd_N", "dmd_denoising_steps",
        "dmd_score_r_value", "ema", "ema_decay", "ema_start_step", "enable_gradient_in_rollout", "epsilon",
        "fake_score_betas", "fake_score_learning_rate", "fake_score_lr_scheduler", "fuse_guidance_scale",
        "generator_update_interval", "guidance_scale", "kl_beta", "max_grad_norm", "max_timestep_ratio",
        "min_timestep_ratio", "num_batches_per_epoch", "num_frames_per_block", "num_inner_epochs",
        "num_video_per_prompt", "real_score_guidance_scale", "reward_fn", "rollout_mode", "same_step_across_blocks",
        "sample_train_batch_size", "sampling", "start_gradient_frame", "streaming_chunk_size",
        "streaming_fixed_overlap_latents", "streaming_min_new_frame", "student_sample_steps", "student_sample_type",
        "t_list", "t_list_override", "teacher_guidance_scale", "teacher_inference_steps", "teacher_path_cache",
        "terminal_progress", "timestep_fraction", "train_batch_size", "use_mean_velocity", "validation",
        "warp_denoising_step", "weight_type",
    })
    route = (
        "FastVideo builds the method class its YAML names: set `method._target_: "
        "msm_plugin.hosts.fastvideo.MSMDMD2Method` (or MSMSelfForcingMethod) with `extra_losses: [msm]` "
        "and `msm: {lam: ...}` under `method:`, and launch FastVideo's own trainer (examples/train/run.sh)"
    )

    def config_of(self, obj: Any) -> Any:
        return obj.method_config


# The subclasses, built from the installed framework on first access (never on import).
__getattr__ = subclass_getattr(__name__, SUBCLASSES, {"__init__": _init, **FastVideoHost.hooks}, INSTALL_HINT)
