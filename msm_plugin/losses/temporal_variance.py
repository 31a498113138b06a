"""Temporal variance regulariser: a hinged penalty on a generated video that barely changes over time.

Adaptive Video Distillation's remedy for static distilled videos, as an extra loss: the negative
log of the video's variance along frames, added only while it is above a threshold (i.e. while
the variance is low). It reads only the generated video: no teacher, critic or timestep, so it
composes with MSM on every host (``extra_losses: [msm, temporal_variance]``).
"""

from __future__ import annotations

import dataclasses
import logging
from dataclasses import dataclass
from typing import Any, Dict, NamedTuple, Optional, Tuple

import torch
from torch import Tensor, nn

from msm_plugin.options import LossOptions, finite_real, option, or_none, real_above, real_at_least
from msm_plugin.registry import register_loss

__all__ = ["TemporalVarianceConfig", "TemporalVarianceLoss", "TemporalVarianceTerm", "temporal_variance_loss"]

logger = logging.getLogger("msm_plugin")


@dataclass(frozen=True)
class TemporalVarianceConfig(LossOptions):
    """The options of the temporal variance regulariser (the ``temporal_variance:`` config section).

    Attributes:
        weight: weight of the term next to the host's loss while the hinge is active, finite and
            >= 0. Not applied by :func:`temporal_variance_loss`, which returns the unweighted loss.
        threshold: the hinge: the term is added only when ``-log(v + eps) >= threshold``, i.e.
            when the temporal variance ``v`` is at most ``exp(-threshold) - eps`` (0.449 for 0.8).
            ``None`` (``null`` in a config): no hinge, the term is always added.
        eps: added to ``v`` inside the log, finite and > 0 (a static video then gives the finite
            ``-log(eps)``, 13.8 for 1e-6, with a zero gradient).

    Example:
        >>> TemporalVarianceConfig()
        TemporalVarianceConfig(weight=0.05, threshold=0.8, eps=1e-06)
        >>> TemporalVarianceConfig(eps=0)
        Traceback (most recent call last):
        ...
        ValueError: `eps` should be finite and > 0, got 0
    """

    label = "temporal variance options"

    weight: float = option(0.05, real_at_least(0))
    threshold: Optional[float] = option(0.8, or_none(finite_real))
    eps: float = option(1e-6, real_above(0))


class _Parts(NamedTuple):
    """One evaluation: ``v`` and ``-log(v + eps)`` (both carrying the generator's graph, float64
    scalars) and whether the hinge lets the term through."""

    variance: Tensor
    loss: Tensor
    active: bool


def _check_video(generated: Any) -> None:
    if not isinstance(generated, Tensor):
        raise TypeError(f"expected `generated` to be a torch.Tensor, got {type(generated).__name__}")
    if generated.dim() != 5 or generated.shape[1] < 2:
        raise ValueError(
            f"expected `generated` to be a video tensor [B, F, C, H, W] with F >= 2, got shape {tuple(generated.shape)}"
        )
    if not generated.is_floating_point():
        raise TypeError(f"expected `generated` to be a floating-point tensor, got {generated.dtype}")


def _counted_frames(gradient_mask: Optional[Tensor], generated: Tensor) -> Optional[Tensor]:
    """``[B, F]`` bool: the frames the host lets gradients reach (all of the frame unmasked)."""
    if gradient_mask is None:
        return None
    if tuple(gradient_mask.shape) == tuple(generated.shape):
        return gradient_mask.bool().flatten(2).all(dim=2)
    if tuple(gradient_mask.shape) == tuple(generated.shape[:2]):
        return gradient_mask.bool()
    raise ValueError(
        f"expected `gradient_mask` of shape [B, F, C, H, W] = {tuple(generated.shape)} or [B, F] = "
        f"{tuple(generated.shape[:2])}, got {tuple(gradient_mask.shape)}"
    )


def _temporal_variance(x: Tensor, frames: Optional[Tensor]) -> Tensor:
    """Population variance along frames of float64 ``x`` ``[B, F, ...]``, averaged over the
    non-frame dims of each sample, ``[B]``; with ``frames`` (``[B, F]``) over those frames only."""
    if frames is None:
        return x.var(dim=1, unbiased=False).flatten(1).mean(1)
    w = frames.to(x.dtype).reshape(*frames.shape, *([1] * (x.dim() - 2)))
    n = w.sum(dim=1, keepdim=True).clamp(min=1)
    mean = (w * x).sum(dim=1, keepdim=True) / n
    return ((w * (x - mean).square()).sum(dim=1, keepdim=True) / n).flatten(1).mean(1)


def _parts(generated: Tensor, gradient_mask: Optional[Tensor], config: TemporalVarianceConfig) -> _Parts:
    """Evaluate the regulariser (see :func:`temporal_variance_loss`); NaN and inactive, with a
    warning, when no sample has two counted frames."""
    _check_video(generated)
    frames = _counted_frames(gradient_mask, generated)
    # float64 like the source: the variance of nearly static latents is a small difference of squares
    per_sample = _temporal_variance(generated.to(torch.float64), frames)
    if frames is not None:
        counted = frames.sum(dim=1) >= 2  # one frame has no temporal variance to speak of
        if not bool(counted.any()):
            logger.warning("temporal_variance: no sample has two frames outside the gradient mask; the term is 0 for this batch")
            nan = torch.tensor(float("nan"), dtype=torch.float64, device=generated.device)
            return _Parts(nan, nan, False)
        per_sample = per_sample[counted]
    variance = per_sample.mean()
    loss = -torch.log(variance + config.eps)
    # One device sync per step, as in the source's `if`: an inactive term must stay out of the graph.
    active = config.threshold is None or bool(loss.detach() >= config.threshold)
    return _Parts(variance, loss, active)


def _hinged(parts: _Parts, generated: Tensor) -> Tensor:
    """The term: ``-log(v + eps)`` while the hinge is active, else a float64 zero with no graph
    (it adds 0 and no gradient)."""
    return parts.loss if parts.active else torch.zeros((), dtype=torch.float64, device=generated.device)


def temporal_variance_loss(
    generated: Tensor,
    *,
    gradient_mask: Optional[Tensor] = None,
    config: Optional[TemporalVarianceConfig] = None,
    **options: Any,
) -> Tensor:
    r"""The hinged temporal variance regulariser of a generated video (Adaptive Video Distillation).

    With :math:`x` the generated video ``[B, F, C, H, W]`` in float64 and :math:`\bar x` its mean
    over frames:

    .. math::
        v = \frac{1}{B\,C\,H\,W} \sum_{b,c,h,w} \frac1F \sum_f (x_{bfchw} - \bar x_{bchw})^2, \qquad
        \ell = -\log(v + \epsilon), \qquad
        \mathcal{L} = \begin{cases} \ell & \ell \ge \tau \\ 0 & \text{otherwise} \end{cases}

    so while the hinge is active :math:`\partial\mathcal{L}/\partial x_{bfchw} = -\frac{2\,(x_{bfchw}
    - \bar x_{bchw})}{(v + \epsilon)\,B F C H W}`: every frame is pushed away from the video's
    temporal mean, hardest when the video is nearly static. When :math:`\ell < \tau` the result is
    a float64 zero outside the autograd graph: the term adds exactly 0 and no gradient. One
    :math:`v` and one hinge for the whole batch, as in the source.

    With ``gradient_mask``, only the frames the host lets gradients reach count (a frame counts
    when all of it is unmasked): each sample's variance is over its counted frames, and samples
    with fewer than two are left out of the mean; with none left the result is 0 (a warning).

    Args:
        generated: generator output ``[B, F, C, H, W]`` (gradients flow into it), ``F >= 2``.
        gradient_mask: the host's boolean mask, ``[B, F, C, H, W]`` or ``[B, F]``, or None.
        config: a :class:`TemporalVarianceConfig`, or give its fields as keywords (``threshold``,
            ``eps``); ``weight`` is not applied here, so it is refused.

    Returns:
        float64 scalar tensor.

    Example:
        >>> import torch
        >>> static = torch.zeros(1, 4, 1, 2, 2, requires_grad=True)
        >>> round(temporal_variance_loss(static).item(), 4)  # -log(1e-6): the hinge is active
        13.8155
        >>> moving = torch.arange(4.0).reshape(1, 4, 1, 1, 1).expand(1, 4, 1, 2, 2)
        >>> temporal_variance_loss(moving).item()  # v = 1.25: -log(v) < 0.8, no term
        0.0
        >>> round(temporal_variance_loss(moving, threshold=None).item(), 4)  # no hinge
        -0.2231
    """
    config = TemporalVarianceConfig.resolve(
        config, options, user="temporal_variance_loss", unapplied=("weight",),
        why="it returns the unweighted loss: weight it yourself, or use TemporalVarianceLoss",
    )
    return _hinged(_parts(generated, gradient_mask, config), generated)


class TemporalVarianceLoss(nn.Module):
    """Module form of :func:`temporal_variance_loss` weighted by ``weight`` (0.05 by default).

    Example:
        >>> import torch
        >>> static = torch.zeros(1, 4, 1, 2, 2, requires_grad=True)
        >>> round(TemporalVarianceLoss(weight=0.1)(static).item(), 5)
        1.38155
    """

    def __init__(self, weight: Optional[float] = None, *, config: Optional[TemporalVarianceConfig] = None, **options: Any) -> None:
        super().__init__()
        config = TemporalVarianceConfig.resolve(config, options)
        self.config = config if weight is None else dataclasses.replace(config, weight=weight)

    @property
    def weight(self) -> float:
        return self.config.weight

    def forward(self, generated: Tensor, gradient_mask: Optional[Tensor] = None) -> Tensor:
        """``weight * temporal_variance_loss(generated, ...)``."""
        return self.config.weight * _hinged(_parts(generated, gradient_mask, self.config), generated)

    def extra_repr(self) -> str:
        c = self.config
        return f"weight={c.weight}, threshold={c.threshold}, eps={c.eps}"


@register_loss("temporal_variance")
class TemporalVarianceTerm:
    """The ``temporal_variance`` extra loss for the registry: the regulariser on the host's generated video.

    ``weight`` is the configured weight (0.05), fixed: the hinge does not change it, the loss
    does. Calling the term returns :func:`temporal_variance_loss` (``-log(v + eps)`` with a
    graph while the hinge is active, a float64 zero without one otherwise, so the host gets
    ``weight * loss`` or exactly nothing) and the logs ``temporal_variance_variance`` (``v``),
    ``temporal_variance_loss`` (``-log(v + eps)``, whether or not it was added) and
    ``temporal_variance_active`` (1.0 when the term was added, 0.0 when not: its mean over steps
    is the share of steps the hinge was on). Only ``generated`` and the host's
    ``gradient_mask`` are read, so any host and any timestep layout will do.

    Args:
        config: a :class:`TemporalVarianceConfig` (what a config section builds), or
        **options: its fields as keywords (``TemporalVarianceTerm(weight=0.1)``).

    Example:
        >>> import torch
        >>> from msm_plugin.context import LossContext
        >>> static = torch.zeros(1, 4, 1, 2, 2, requires_grad=True)
        >>> term = TemporalVarianceTerm()
        >>> loss, logs = term(LossContext(static, static.detach(), static.detach()))
        >>> term.weight, round(loss.item(), 4), logs["temporal_variance_active"]
        (0.05, 13.8155, 1.0)
    """

    name = "temporal_variance"
    #: What a config section ``temporal_variance: {...}`` is validated and built into.
    options_class = TemporalVarianceConfig

    def __init__(self, config: Optional[TemporalVarianceConfig] = None, **options: Any) -> None:
        self.config = TemporalVarianceConfig.resolve(config, options)

    @property
    def weight(self) -> float:
        return self.config.weight

    def __call__(self, ctx: Any) -> Tuple[Tensor, Dict[str, Any]]:
        parts = _parts(ctx.generated, ctx.gradient_mask, self.config)
        logs: Dict[str, Any] = {
            "temporal_variance_variance": parts.variance.detach(),
            "temporal_variance_loss": parts.loss.detach(),
            "temporal_variance_active": float(parts.active),
        }
        return _hinged(parts, ctx.generated), logs

    def __repr__(self) -> str:
        c = self.config
        return f"TemporalVarianceTerm(weight={c.weight}, threshold={c.threshold}, eps={c.eps})"
