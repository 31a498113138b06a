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
  a loss whose ``normalization`` is ``"dmd"`` sees the batch as one sample (frames kept, the
  batch folded into channels) so that its normaliser is that same scalar.
- Logs: ``single_train_step`` returns its metrics plus the extra scalars of that step
  (``dmd_loss``, ``msm_loss``, ``msm_lambda``, ``msm_gradient_norm``, ``msm_motion_*``, ...),
  which FastVideo's trainer averages and sends to its tracker with its own.
- The critic update (``_critic_flow_matching_loss``) is not touched.
"""

from __future__ import annotations

from contextlib import ExitStack
from typing import Any, Dict, List, Optional, Sequence, Tuple

import torch
from einops import rearrange
from torch import Tensor

from msm_plugin.hosts._framework import FrameworkHost, build_subclass, extra_of, set_extra
from msm_plugin.hosts.base import Call, recorded_calls
from msm_plugin.registry import ExtraLoss, LossContext

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


def _fold_batch(t: Optional[Tensor]) -> Optional[Tensor]:
    """``[B, F, C, ...] -> [1, F, B*C, ...]``: one sample, the same frames (a view when B = 1)."""
    return None if t is None else rearrange(t, "b f c ... -> () f (b c) ...")


class _WholeBatch:
    """A loss whose ``dmd`` normaliser must be FastVideo's one scalar: it sees the batch as one sample.

    Motion is taken along frames within each sample as before; only the per-sample reductions
    (the normaliser) now run over the whole batch. Anything else is the wrapped loss's.
    """

    def __init__(self, loss: ExtraLoss) -> None:
        self.loss = loss

    def __getattr__(self, name: str) -> Any:
        if name == "loss":  # not set yet (e.g. during unpickling): no recursion
            raise AttributeError(name)
        return getattr(self.loss, name)

    def __call__(self, ctx: LossContext) -> Any:
        if ctx.generated.shape[0] == 1:
            return self.loss(ctx)
        timestep = ctx.timestep
        if timestep is not None:
            if (timestep != timestep[:1]).any():
                raise ValueError("FastVideo's batch shares one score timestep, but this context's timesteps differ across samples")
            timestep = timestep[:1]
        mask = ctx.gradient_mask
        if mask is not None and mask.dim() == 2:
            mask = mask[:, :, None, None, None].expand(ctx.generated.shape)
        folded = LossContext(
            generated=_fold_batch(ctx.generated),
            pred_real=_fold_batch(ctx.pred_real),
            pred_fake=_fold_batch(ctx.pred_fake),
            timestep=timestep,
            gradient_mask=_fold_batch(mask),
            host=ctx.host,
        )
        return self.loss(folded)

    def __repr__(self) -> str:
        return f"{self.loss!r} (normalised over the whole batch, as FastVideo)"


class FastVideoHost(FrameworkHost):
    name = "fastvideo"
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

    def prepare(self, losses: Sequence[ExtraLoss]) -> List[ExtraLoss]:
        return [_WholeBatch(loss) if getattr(getattr(loss, "config", None), "normalization", None) == "dmd" else loss for loss in losses]

    def build_losses(self, method_config: Dict[str, Any]) -> List[ExtraLoss]:
        from msm_plugin.config import build_extra_losses

        return build_extra_losses(method_config, host=self)


def __getattr__(name: str) -> type:
    """Build ``MSMDMD2Method`` / ``MSMSelfForcingMethod`` from the installed FastVideo on first access."""
    if name not in SUBCLASSES:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    cls = build_subclass(name, __name__, SUBCLASSES[name], {"__init__": _init, **FastVideoHost.hooks}, INSTALL_HINT)
    globals()[name] = cls  # later lookups (FastVideo's resolve_target, pickling) find it directly
    return cls
