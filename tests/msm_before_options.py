"""MSM as it was before the schedule, noise-range and smoothing options (commit cb065e2), frozen.

Kept verbatim (only the config, module and registry parts left out) so that the options-off
bit-equality test compares the current code with the old code on the same machine, instead of
with itself or with numbers stored from another machine's kernels.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import Callable, Optional

import torch
from einops import rearrange
from torch import Tensor

from msm_plugin.motion import motion_score, motion_score_adjoint, pair_mask, shared_timestep_mask

logger = logging.getLogger("msm_plugin")


def _check_inputs(generated: Tensor, pred_real: Tensor, pred_fake: Tensor, timestep: Optional[Tensor], order: int) -> None:
    for name, t in (("generated", generated), ("pred_real", pred_real), ("pred_fake", pred_fake)):
        if not isinstance(t, Tensor):
            raise TypeError(f"expected `{name}` to be a torch.Tensor, got {type(t).__name__}")
        if t.dim() != 5 or t.shape[1] < order + 1:
            raise ValueError(
                f"expected `{name}` to be a video tensor [B, F, C, H, W] with F >= {order + 1}, "
                f"got shape {tuple(t.shape)}"
            )
        if not t.is_floating_point():
            raise TypeError(f"expected `{name}` to be a floating-point tensor, got {t.dtype}")
    if pred_real.shape != generated.shape or pred_fake.shape != generated.shape:
        raise ValueError(
            "expected `generated`, `pred_real` and `pred_fake` to have one shape, got "
            f"{tuple(generated.shape)}, {tuple(pred_real.shape)} and {tuple(pred_fake.shape)}"
        )
    if timestep is not None and (not isinstance(timestep, Tensor) or tuple(timestep.shape) != tuple(generated.shape[:2])):
        got = tuple(timestep.shape) if isinstance(timestep, Tensor) else type(timestep).__name__
        raise ValueError(f"expected `timestep` of shape [B, F] = {tuple(generated.shape[:2])}, got {got}")


def _check_uniform_timestep(timestep: Tensor) -> None:
    differs = (timestep != timestep[:, :1]).any(dim=1)
    if differs.any():
        b = int(differs.nonzero()[0, 0])
        f = int((timestep[b] != timestep[b, 0]).nonzero()[0, 0])
        raise ValueError(
            f"sample {b} has timesteps that differ across frames ({timestep[b, 0].item()} at frame 0, "
            f"{timestep[b, f].item()} at frame {f}); the motion score is only meaningful at one noise "
            "level (paper sec. 6.2). Use a teacher that shares one timestep across frames "
            "(real_task_type: bidirectional_video) or timestep_policy='pairs' to count only frame "
            "pairs that share a timestep"
        )


def _per_frame(feature: Optional[Callable[[Tensor], Tensor]], y: Tensor) -> Tensor:
    """Apply ``feature`` to every frame (``[B*F, C, H, W] -> [B*F, ...]``), identity when None."""
    if feature is None:
        return y
    b = y.shape[0]
    out = feature(rearrange(y, "b f c h w -> (b f) c h w"))
    if not isinstance(out, Tensor) or out.dim() == 0 or out.shape[0] != y.shape[0] * y.shape[1]:
        raise ValueError(
            f"`feature` must map frames [N, C, H, W] to a tensor [N, ...] with N = B*F = {y.shape[0] * y.shape[1]}, "
            f"got {tuple(out.shape) if isinstance(out, Tensor) else type(out).__name__}"
        )
    return out.reshape(b, y.shape[1], *out.shape[1:])


def _frame_level(mask: Tensor, generated: Tensor, feature_dims: Optional[int]) -> Tensor:
    """The gradient mask in a shape that broadcasts against the (feature) motion tensor."""
    if mask.shape == generated.shape:
        if feature_dims is None:
            return mask.bool()
        mask = mask.flatten(2).all(dim=2)  # a frame counts under a feature map only if all of it does
    elif tuple(mask.shape) != tuple(generated.shape[:2]):
        raise ValueError(
            f"expected `gradient_mask` of shape [B, F, C, H, W] = {tuple(generated.shape)} or [B, F] = "
            f"{tuple(generated.shape[:2])}, got {tuple(mask.shape)}"
        )
    trailing = (generated.dim() - 2) if feature_dims is None else feature_dims
    return mask.bool().reshape(*mask.shape[:2], *([1] * trailing))


class _MotionMatch(torch.autograd.Function):
    """``0.5 * sum(g**2) / N`` with gradient ``D^T g / N`` w.r.t. ``y`` (``g`` fixed).

    Equal in value and gradient to ``0.5 * mean((D y - sg[D y - g])**2)``, the hosts' DMD
    surrogate applied to motion, without materialising ``D y``, its target or the residual:
    the backward pass is one adjoint difference of ``g``.
    """

    @staticmethod
    def forward(ctx, y: Tensor, g: Tensor, order: int, count: int) -> Tensor:
        ctx.save_for_backward(g)
        ctx.order, ctx.count, ctx.y_dtype = order, count, y.dtype
        return 0.5 * torch.sum(g * g) / count

    @staticmethod
    def backward(ctx, grad_out: Tensor):
        (g,) = ctx.saved_tensors
        grad_y = motion_score_adjoint(g, order=ctx.order).mul_(grad_out / ctx.count)
        return grad_y.to(ctx.y_dtype), None, None, None


@dataclass
class _Terms:
    """The pieces of one MSM evaluation (shared by the function, the module and the registry term)."""

    loss: Tensor  # float64 scalar, unweighted
    grad: Tensor  # g, float64 [B, F - order, ...], zero where not counted
    num_counted: int
    num_total: int


def _msm_terms(
    generated: Tensor,
    pred_real: Tensor,
    pred_fake: Tensor,
    timestep: Optional[Tensor],
    gradient_mask: Optional[Tensor],
    config,
) -> _Terms:
    """Evaluate MSM and keep its intermediate tensors (see :func:`msm_loss` for the maths).

    ``config`` is already valid (checked once when it was built); only the tensors are checked.
    """
    order, feature, normalization, timestep_policy = config.order, config.feature, config.normalization, config.timestep_policy
    _check_inputs(generated, pred_real, pred_fake, timestep, order)
    if timestep is not None and timestep_policy == "strict":
        _check_uniform_timestep(timestep)

    fx = _per_frame(feature, generated)  # carries the generator's graph
    with torch.no_grad():
        fr = _per_frame(feature, pred_real.detach())
        # Work in float64 copies: in bf16 the small inter-frame differences would round away.
        # By linearity D f(fake) - D f(real) = D (f(fake) - f(real)): one difference, not two.
        delta = motion_score(_per_frame(feature, pred_fake.detach()).to(torch.float64, copy=True).sub_(fr), order=order)
        shape = delta.shape
        counted = None
        if gradient_mask is not None:
            counted = pair_mask(_frame_level(gradient_mask, generated, None if feature is None else fx.dim() - 2), order=order)
        if timestep is not None and timestep_policy == "pairs":
            shared = shared_timestep_mask(timestep, order=order).reshape(*shape[:2], *([1] * (len(shape) - 2)))
            counted = shared if counted is None else counted & shared
        weights = None if counted is None else counted.to(torch.float64).expand(shape)
        per_sample = weights.sum(dim=tuple(range(1, len(shape)))) if weights is not None else None
        num_counted = int(per_sample.sum().item()) if weights is not None else delta.numel()

        if normalization == "none":
            normalizer = None
        elif normalization == "dmd":  # the host's own: mean |x - pred_real| over (F, C, H, W)
            normalizer = (generated.detach().to(torch.float64, copy=True).sub_(pred_real.detach())).abs_().flatten(1).mean(1)
        else:  # mean |D f(x) - D f(real)| = mean |D (f(x) - f(real))| over the counted entries
            gap = motion_score(fx.detach().to(torch.float64, copy=True).sub_(fr), order=order).abs_()
            if weights is None:
                normalizer = gap.flatten(1).mean(1)
            else:
                normalizer = gap.mul_(weights).flatten(1).sum(1) / per_sample.clamp(min=1)
        g = delta
        if normalizer is not None:
            g = torch.nan_to_num_(g.div_(normalizer.reshape(-1, *([1] * (len(shape) - 1)))))
        if weights is not None:
            g = g.mul_(weights)

    if num_counted == 0:
        logger.warning(
            "MSM counted 0 of %d motion entries (gradient_mask / timestep_policy=%r): the MSM term is 0 for this batch",
            delta.numel(), timestep_policy,
        )
    loss = _MotionMatch.apply(fx, g, order, max(num_counted, 1))
    return _Terms(loss=loss, grad=g, num_counted=num_counted, num_total=delta.numel())

