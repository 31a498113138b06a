"""Motion Score Matching (MSM): match the temporal differences of the teacher's and critic's outputs.

The paper's eq. 11-12: the DMD gradient with both scores replaced by their motion scores
``D(s)`` (eq. 10), added to DMD with weight ``lam``. Everything MSM needs (the generator output
and both x0 predictions) is already computed by the host's DMD step, so MSM adds no network call.
"""

from __future__ import annotations

import dataclasses
import logging
from dataclasses import dataclass
from typing import Any, Callable, Dict, Optional, Tuple

import torch
from einops import rearrange
from torch import Tensor, nn

from msm_plugin.losses.pair_weights import DIAGDISTILL_BASE, DIAGDISTILL_MIX, hybrid_pair_weights
from msm_plugin.motion import (
    motion_score,
    motion_score_adjoint,
    pair_mask,
    shared_timestep_mask,
    smooth_frames,
    smooth_frames_adjoint,
)
from msm_plugin.options import (
    LossOptions,
    UnequalTimesteps,
    at_least,
    boolean,
    callable_or_none,
    one_of,
    option,
    positive_int,
    real_above,
    real_at_least,
    real_between,
)
from msm_plugin.context import dmd_normalizer
from msm_plugin.registry import register_loss

__all__ = ["MSMConfig", "MSMLoss", "MSMTerm", "msm_loss", "scheduled_lam"]

logger = logging.getLogger("msm_plugin")

NORMALIZATIONS = ("motion", "dmd", "none")
TIMESTEP_POLICIES = ("strict", "pairs")
SMOOTHINGS = ("none", "binomial")
PAIR_WEIGHTS = ("none", "hybrid")
#: Frames the binomial [1, 2, 1] / 4 filter removes (valid part only, see motion.smooth_frames).
_SMOOTHING_REACH = {"none": 0, "binomial": 2}


@dataclass(frozen=True)
class MSMConfig(LossOptions):
    """The options of MSM, validated once here (the ``msm:`` section of a host config).

    Attributes:
        lam: weight of MSM next to DMD (eq. 12), finite and >= 0. Not applied by :func:`msm_loss`,
            which returns the unweighted loss.
        normalization: ``"motion"``, ``"dmd"`` or ``"none"`` (see :func:`msm_loss`).
        order: 1 (velocity, eq. 10) or higher (2: acceleration).
        timestep_policy: ``"strict"`` (one timestep per sample) or ``"pairs"``.
        per_pair_logs: also log mean |D| per frame pair, ``3 (F - order)`` more keys per step
            (the registry term only; off by default: 60 keys at Wan's 21 latent frames).
        feature: per-frame callable ``[N, C, H, W] -> [N, ...]`` (sec. 6.1); code only.
        warmup_steps, ramp_steps: the schedule of the weight (the registry term and
            :class:`MSMLoss`): 0 for the first ``warmup_steps`` generator steps (optimiser
            steps), then a linear ramp to ``lam`` over ``ramp_steps`` steps (see
            :func:`scheduled_lam`). 0, 0: ``lam`` from the first step (the paper).
        start_step: the generator steps made before the step counter the schedule follows
            starts: of earlier runs, for a resumed run whose host restarts its step at 0 (CausVid,
            Self-Forcing) or that counts calls (a bare DMD object, or :meth:`MSMTerm.set_step`).
            Refused where the host restores its step on resume (FastVideo, FastGen).
        t_min, t_max: the noise range, fractions of the host's timestep range
            (``timestep / LossContext.timestep_scale``; 1 is pure noise): only samples (frames)
            whose score timestep lies in ``[t_min, t_max]`` count. 0, 1: all (the paper).
        smoothing: ``"none"`` (the paper's :math:`D`) or ``"binomial"``: the motion score of the
            frames smoothed by ``[1, 2, 1] / 4``, :math:`M = D S` (valid part, ``F - order - 2``
            entries), so the gradient ``S^T D^T g`` is a temporal band-pass.
        pair_weights: ``"none"`` (the paper) or ``"hybrid"``: DiagDistill's detached per-pair
            weights ``w`` scale the gradient, ``D^T (w * g) / N``
            (:func:`~msm_plugin.losses.pair_weights.hybrid_pair_weights`).
        pair_weights_mix, pair_weights_base: the hybrid's share of error-driven weights (in
            [0, 1]) and the base of its exponential weights (> 0; 1: uniform); DiagDistill's
            0.7 and 1.2 by default. Only with ``pair_weights="hybrid"``.

    Example:
        >>> MSMConfig(lam=1, order=2)
        MSMConfig(lam=1.0, normalization='motion', order=2, timestep_policy='strict', per_pair_logs=False, feature=None, warmup_steps=0, ramp_steps=0, start_step=0, t_min=0.0, t_max=1.0, smoothing='none', pair_weights='none', pair_weights_mix=0.7, pair_weights_base=1.2)
        >>> MSMConfig(normalization="motoin")
        Traceback (most recent call last):
        ...
        ValueError: `normalization` should be one of ('motion', 'dmd', 'none'), got 'motoin'
    """

    label = "MSM options"

    lam: float = option(1.0, real_at_least(0))
    normalization: str = option("motion", one_of(*NORMALIZATIONS))
    order: int = option(1, positive_int("1: velocity, 2: acceleration"))
    timestep_policy: str = option("strict", one_of(*TIMESTEP_POLICIES))
    per_pair_logs: bool = option(False, boolean)
    feature: Optional[Callable[[Tensor], Tensor]] = option(None, callable_or_none("applied per frame"), code_only=True)
    warmup_steps: int = option(0, at_least(0))
    ramp_steps: int = option(0, at_least(0))
    start_step: int = option(0, at_least(0))
    t_min: float = option(0.0, real_between(0, 1))
    t_max: float = option(1.0, real_between(0, 1))
    smoothing: str = option("none", one_of(*SMOOTHINGS))
    pair_weights: str = option("none", one_of(*PAIR_WEIGHTS))
    pair_weights_mix: float = option(DIAGDISTILL_MIX, real_between(0, 1))
    pair_weights_base: float = option(DIAGDISTILL_BASE, real_above(0))

    def __post_init__(self) -> None:
        super().__post_init__()
        if self.t_min > self.t_max:
            raise ValueError(f"the noise range needs `t_min` <= `t_max`, got t_min={self.t_min} > t_max={self.t_max}")
        for name, default in (("pair_weights_mix", DIAGDISTILL_MIX), ("pair_weights_base", DIAGDISTILL_BASE)):
            if self.pair_weights == "none" and getattr(self, name) != default:
                raise ValueError(
                    f"`{name}` shapes the hybrid pair weights, which are off: set `pair_weights` to 'hybrid' as well, "
                    f"got {name}={getattr(self, name)} with pair_weights='none'"
                )

    @property
    def noise_range_on(self) -> bool:
        """Whether the noise range excludes any timestep (``[t_min, t_max]`` is not ``[0, 1]``)."""
        return self.t_min > 0 or self.t_max < 1

    @property
    def schedule_on(self) -> bool:
        """Whether the weight has a warm-up or a ramp."""
        return self.warmup_steps > 0 or self.ramp_steps > 0

    @property
    def reach(self) -> int:
        """Frames an entry of the motion operator spans minus one: ``order`` (+ 2 when smoothed)."""
        return self.order + _SMOOTHING_REACH[self.smoothing]

    def check_host_step(self, source: str) -> None:
        """The schedule follows a host step that survives a resume there: ``start_step`` would count twice."""
        if self.start_step:
            raise ValueError(
                f"MSM's `start_step` ({self.start_step}) is not used: the schedule follows {source}, "
                "which the host restores on resume; remove `start_step`"
            )

    def check_timesteps(self, unequal: UnequalTimesteps) -> None:
        """The strict policy refuses a config with unequal per-frame score timesteps (sec. 6.2)."""
        if self.timestep_policy == "strict":
            raise ValueError(
                f"{unequal.reason}, but MSM's timestep_policy is 'strict', which requires one timestep "
                f"shared by all frames (paper sec. 6.2). {unequal.remedy} or set "
                "`msm: {timestep_policy: pairs}` to count only frame pairs that share a timestep"
            )


def scheduled_lam(config: MSMConfig, step: int) -> float:
    r"""The weight of MSM at generator step ``step`` (0-based) under ``config``'s schedule.

    With :math:`W` = ``warmup_steps`` and :math:`R` = ``ramp_steps``:

    .. math::
        \lambda(s) = \lambda \cdot \mathrm{clip}\Big(\frac{s - W + 1}{R}, 0, 1\Big)
        \quad (R > 0), \qquad \lambda(s) = \lambda \cdot [s \ge W] \quad (R = 0),

    so steps ``0 .. W-1`` have weight 0, step ``W`` has ``lam / R`` and steps from ``W + R - 1``
    on have exactly ``lam``.

    Example:
        >>> c = MSMConfig(lam=1.0, warmup_steps=2, ramp_steps=4)
        >>> [scheduled_lam(c, s) for s in range(7)]
        [0.0, 0.0, 0.25, 0.5, 0.75, 1.0, 1.0]
    """
    if isinstance(step, bool) or not isinstance(step, int) or step < 0:
        raise ValueError(f"the generator step should be an integer >= 0, got {step!r}")
    done = step - config.warmup_steps + 1  # steps of the ramp reached, this one included
    if done <= 0:
        return 0.0
    if done >= config.ramp_steps:
        return config.lam  # exactly lam, not lam * 1.0 rounded: the paper's weight once ramped
    return config.lam * done / config.ramp_steps


def _check_inputs(generated: Tensor, pred_real: Tensor, pred_fake: Tensor, timestep: Optional[Tensor], reach: int) -> None:
    for name, t in (("generated", generated), ("pred_real", pred_real), ("pred_fake", pred_fake)):
        if not isinstance(t, Tensor):
            raise TypeError(f"expected `{name}` to be a torch.Tensor, got {type(t).__name__}")
        if t.dim() != 5 or t.shape[1] < reach + 1:
            raise ValueError(
                f"expected `{name}` to be a video tensor [B, F, C, H, W] with F >= {reach + 1}, "
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


def _noise_range_frames(timestep: Optional[Tensor], timestep_scale: Optional[float], config: MSMConfig) -> Tensor:
    """``[B, F]``: which frames' score timesteps lie in the noise range ``[t_min, t_max]``."""
    if timestep is None:
        raise ValueError(
            f"MSM's noise range [t_min, t_max] = [{config.t_min:g}, {config.t_max:g}] needs the score timestep, "
            "but none was given (the host's LossContext.timestep is None)"
        )
    if isinstance(timestep_scale, bool) or not isinstance(timestep_scale, (int, float)) or not 0 < timestep_scale < float("inf"):
        raise ValueError(
            f"MSM's noise range [t_min, t_max] = [{config.t_min:g}, {config.t_max:g}] needs the host's timestep scale "
            f"(a positive number: 1000 for CausVid / Self-Forcing, 1 for timesteps in [0, 1]), got {timestep_scale!r}"
        )
    fraction = timestep.to(torch.float64) / timestep_scale
    return (fraction >= config.t_min) & (fraction <= config.t_max)


def _motion_operator(y: Tensor, config: MSMConfig) -> Tensor:
    """``M y``: the motion score of order ``order``, of the smoothed frames when ``smoothing`` is on."""
    if config.smoothing == "binomial":
        y = smooth_frames(y)
    return motion_score(y, order=config.order)


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
    """``0.5 * sum(g**2) / N`` with gradient ``M^T g / N`` w.r.t. ``y`` (``g`` fixed); with per-pair
    weights ``w``, ``0.5 * sum(w * g**2) / N`` with gradient ``M^T (w * g) / N``.

    ``M = D`` (order ``order``), or ``D S`` when ``smoothed`` (then ``M^T = S^T D^T``). Equal in
    value and gradient to ``0.5 * mean((M y - sg[M y - g])**2)``, the hosts' DMD surrogate
    applied to motion, without materialising ``M y``, its target or the residual: the backward
    pass is one adjoint difference of ``g`` (and one adjoint filter).
    """

    @staticmethod
    def forward(ctx, y: Tensor, g: Tensor, order: int, count: int, smoothed: bool, pair_weights: Optional[Tensor] = None) -> Tensor:
        ctx.save_for_backward(g if pair_weights is None else g * pair_weights)
        ctx.order, ctx.count, ctx.y_dtype, ctx.smoothed = order, count, y.dtype, smoothed
        if pair_weights is None:
            return 0.5 * torch.sum(g * g) / count
        return 0.5 * torch.sum(g * g * pair_weights) / count

    @staticmethod
    def backward(ctx, grad_out: Tensor):
        (g,) = ctx.saved_tensors
        grad_y = motion_score_adjoint(g, order=ctx.order)
        if ctx.smoothed:
            grad_y = smooth_frames_adjoint(grad_y)
        grad_y = grad_y.mul_(grad_out / ctx.count)
        return grad_y.to(ctx.y_dtype), None, None, None, None, None


@dataclass
class _Terms:
    """The pieces of one MSM evaluation (shared by the function, the module and the registry term)."""

    loss: Tensor  # float64 scalar, unweighted
    grad: Tensor  # g, float64 [B, F - reach, ...], zero where not counted
    num_counted: int
    # f(x) (detached), f(pred_real), f(pred_fake): the videos themselves without a feature map
    features: Tuple[Tensor, Tensor, Tensor]
    in_noise_range: Optional[Tensor] = None  # [B, F] bool, when the noise range is on
    pair_weights: Optional[Tensor] = None  # w, float64 [B, F - reach, 1, ...], when pair_weights is on

    @property
    def num_total(self) -> int:
        """The motion entries there are, counted or not."""
        return self.grad.numel()


def _msm_terms(
    generated: Tensor,
    pred_real: Tensor,
    pred_fake: Tensor,
    timestep: Optional[Tensor],
    gradient_mask: Optional[Tensor],
    config: MSMConfig,
    timestep_scale: Optional[float] = None,
    host_normalizer: Optional[Tensor] = None,
) -> _Terms:
    """Evaluate MSM and keep its intermediate tensors (see :func:`msm_loss` for the maths).

    ``config`` is already valid (checked once when it was built); only the tensors are checked.
    ``host_normalizer`` (``[B]``) is the host's own DMD normaliser for ``normalization="dmd"``;
    None: the per-sample one of CausVid and Self-Forcing.
    """
    order, feature, normalization, timestep_policy = config.order, config.feature, config.normalization, config.timestep_policy
    reach = config.reach  # an entry of M reads frames f .. f + reach: the masks below use it as the order
    _check_inputs(generated, pred_real, pred_fake, timestep, reach)
    if timestep is not None and timestep_policy == "strict":
        _check_uniform_timestep(timestep)
    in_range = _noise_range_frames(timestep, timestep_scale, config) if config.noise_range_on else None

    fx = _per_frame(feature, generated)  # carries the generator's graph
    with torch.no_grad():
        fr = _per_frame(feature, pred_real.detach())
        ff = _per_frame(feature, pred_fake.detach())
        # Work in float64 copies: in bf16 the small inter-frame differences would round away.
        # By linearity M f(fake) - M f(real) = M (f(fake) - f(real)): one operator pass, not two.
        delta = _motion_operator(ff.to(torch.float64, copy=True).sub_(fr), config)
        shape = delta.shape
        counted = None
        if gradient_mask is not None:
            counted = pair_mask(_frame_level(gradient_mask, generated, None if feature is None else fx.dim() - 2), order=reach)
        if timestep is not None and timestep_policy == "pairs":
            shared = shared_timestep_mask(timestep, order=reach).reshape(*shape[:2], *([1] * (len(shape) - 2)))
            counted = shared if counted is None else counted & shared
        if in_range is not None:
            inside = pair_mask(in_range, order=reach).reshape(*shape[:2], *([1] * (len(shape) - 2)))
            counted = inside if counted is None else counted & inside
        weights = None if counted is None else counted.to(torch.float64).expand(shape)
        per_sample = weights.sum(dim=tuple(range(1, len(shape)))) if weights is not None else None
        num_counted = int(per_sample.sum().item()) if weights is not None else delta.numel()

        if normalization == "none":
            normalizer = None
        elif normalization == "dmd":  # the host's own
            normalizer = dmd_normalizer(generated, pred_real) if host_normalizer is None else host_normalizer
        else:  # mean |M f(x) - M f(real)| = mean |M (f(x) - f(real))| over the counted entries
            gap = _motion_operator(fx.detach().to(torch.float64, copy=True).sub_(fr), config).abs_()
            if weights is None:
                normalizer = gap.flatten(1).mean(1)
            else:
                normalizer = gap.mul_(weights).flatten(1).sum(1) / per_sample.clamp(min=1)
        g = delta
        if normalizer is not None:
            # n = 0: the sample adds 0 (x / inf), not nan_to_num(x / 0) ~ 1.8e308, whose square is inf
            safe = normalizer.masked_fill(normalizer == 0, float("inf"))
            g = torch.nan_to_num_(g.div_(safe.reshape(-1, *([1] * (len(shape) - 1)))))
        if weights is not None:
            g = g.mul_(weights)
        pair_weights = None
        if config.pair_weights == "hybrid":
            last = fx.detach()[:, reach:]  # the frame each entry ends on, as DiagDistill's error reads it
            pair_weights = hybrid_pair_weights(g, last, mix=config.pair_weights_mix, base=config.pair_weights_base, counted=weights)
            pair_weights = pair_weights.reshape(*pair_weights.shape, *([1] * (len(shape) - 2)))

    # A batch outside the noise range is expected (the share is logged); any other empty count is not.
    if num_counted == 0 and not (in_range is not None and not bool(in_range.any())):
        logger.warning(
            "MSM counted 0 of %d motion entries (gradient_mask / timestep_policy=%r): the MSM term is 0 for this batch",
            delta.numel(), timestep_policy,
        )
    loss = _MotionMatch.apply(fx, g, order, max(num_counted, 1), config.smoothing == "binomial", pair_weights)
    return _Terms(loss=loss, grad=g, num_counted=num_counted, features=(fx.detach(), fr, ff), in_noise_range=in_range, pair_weights=pair_weights)


def msm_loss(
    generated: Tensor,
    pred_real: Tensor,
    pred_fake: Tensor,
    *,
    timestep: Optional[Tensor] = None,
    gradient_mask: Optional[Tensor] = None,
    timestep_scale: Optional[float] = None,
    config: Optional[MSMConfig] = None,
    **options: Any,
) -> Tensor:
    r"""Motion Score Matching loss (paper eq. 11), whose gradient is the MSM gradient.

    With :math:`D` the motion score (eq. 10, ``order`` times) and :math:`f` a per-frame feature
    map (eq. 13; identity when ``feature`` is None):

    .. math::
        g = \frac{D f(\hat x_{fake}) - D f(\hat x_{real})}{n}, \qquad
        \mathcal{L} = \tfrac12\,\mathrm{mean}\big(D f(x) - \mathrm{sg}[D f(x) - g]\big)^2,

    so that :math:`\partial\mathcal{L}/\partial x = J_f^\top D^\top g / N` (``N`` motion entries
    counted). ``n`` is per sample, over all non-batch dims: ``"motion"``: mean
    :math:`|D f(x) - D f(\hat x_{real})|`; ``"dmd"``: mean :math:`|x - \hat x_{real}|` (the host's
    DMD normaliser); ``"none"``: 1. A sample whose ``n`` is 0 (its generated motion, or video
    for ``"dmd"``, equal to the teacher's) adds 0: there is no scale to divide by, and ``x / 0``
    would put an infinite loss and gradient into the weights. Computed in float64 like the hosts' DMD loss.

    With ``smoothing="binomial"``, :math:`D` is replaced everywhere (``g``, ``n``, the gradient)
    by :math:`M = D S`, :math:`S` the valid ``[1, 2, 1] / 4`` filter along frames
    (:func:`~msm_plugin.motion.smooth_frames`), and the gradient is :math:`J_f^\top S^\top
    D^\top g / N`: for a critic-minus-teacher error of temporal frequency :math:`\omega` its
    response is :math:`(2 - 2\cos\omega)(1 + \cos\omega)^2 / 4` instead of
    :math:`2 - 2\cos\omega`, 0 rather than the maximum 4 at the alternating-frame frequency.
    With a noise range (``t_min``/``t_max``), an entry counts only where every frame it reads has
    ``t_min <= timestep / timestep_scale <= t_max``; ``N`` and the motion normaliser count only
    those entries, as with ``gradient_mask``. With ``pair_weights="hybrid"`` the loss is
    :math:`\tfrac12 \sum w g^2 / N` and the gradient :math:`J_f^\top D^\top (w \odot g) / N`,
    ``w`` DiagDistill's per-pair weights computed from ``g`` and ``f(x)`` without a graph.

    Args:
        generated: generator output ``[B, F, C, H, W]`` (gradients flow into it).
        pred_real: teacher x0 prediction (after CFG) ``[B, F, C, H, W]``; detached here.
        pred_fake: critic x0 prediction ``[B, F, C, H, W]``; detached here.
        timestep: score timestep ``[B, F]`` or None.
        gradient_mask: boolean ``[B, F, C, H, W]`` or ``[B, F]``; a motion entry counts only
            where all the frames it reads are unmasked.
        timestep_scale: the host's largest timestep (1000 for CausVid / Self-Forcing, 1 for
            timesteps in [0, 1]); needed only by a noise range.
        config: an :class:`MSMConfig`; or give its fields as keywords (``**options``):
            ``normalization`` (``"motion"``, ``"dmd"``, ``"none"``), ``order`` (1: velocity,
            eq. 10; 2: acceleration), ``feature`` (callable per frame, ``[N, C, H, W] -> [N, ...]``,
            sec. 6.1), ``timestep_policy`` (``"strict"`` raises when a sample's timesteps differ
            across frames; ``"pairs"`` counts only entries whose frames share a timestep),
            ``t_min``/``t_max`` (the noise range), ``smoothing`` (``"none"``, ``"binomial"``),
            ``pair_weights`` (``"none"``, ``"hybrid"``) with ``pair_weights_mix``/``_base``.
            ``lam`` and its schedule are not applied here, so they are refused.

    Returns:
        float64 scalar tensor.

    Example:
        >>> import torch
        >>> x = torch.zeros(1, 3, 1, 1, 1, requires_grad=True)
        >>> pred_real = torch.tensor([0.0, 1.0, 2.0]).reshape(1, 3, 1, 1, 1)  # teacher: moving
        >>> pred_fake = torch.zeros(1, 3, 1, 1, 1)                          # critic: static
        >>> loss = msm_loss(x, pred_real, pred_fake, normalization="none")
        >>> loss.item()  # g = D(fake) - D(real) = [-1, -1]: 0.5 * mean(g**2)
        0.5
        >>> loss.backward(); x.grad.flatten().tolist()  # D^T g / N: pulls the frames apart
        [0.5, 0.0, -0.5]
    """
    config = MSMConfig.resolve(
        config, options, user="msm_loss", unapplied=("lam", "warmup_steps", "ramp_steps", "start_step"),
        why="it returns the unweighted loss: weight it yourself, or use MSMLoss",
    )
    return _msm_terms(generated, pred_real, pred_fake, timestep, gradient_mask, config, timestep_scale).loss


class MSMLoss(nn.Module):
    """Module form of :func:`msm_loss` weighted by ``lam``: returns ``lam * msm_loss(...)``.

    With a schedule (``warmup_steps`` / ``ramp_steps``) the weight is :func:`scheduled_lam` at the
    ``step`` passed to ``forward``.

    Args:
        lam: weight of MSM next to DMD (eq. 12), finite and >= 0.
        config: an :class:`MSMConfig` (its ``lam`` is used when ``lam`` is not given), or
        **options: its other fields as keywords (``normalization``, ``order``, ``feature``, ...).

    Example:
        >>> import torch
        >>> x = torch.zeros(1, 3, 1, 1, 1, requires_grad=True)
        >>> real = torch.tensor([0.0, 1.0, 2.0]).reshape(1, 3, 1, 1, 1)
        >>> MSMLoss(lam=2.0, normalization="none")(x, real, torch.zeros_like(real)).item()
        1.0
    """

    def __init__(self, lam: Optional[float] = None, *, config: Optional[MSMConfig] = None, **options: Any) -> None:
        super().__init__()
        config = MSMConfig.resolve(
            config, options, user="MSMLoss", unapplied=("start_step",),
            why="it takes the generator step in each call: forward(..., step=s)",
        )
        self.config = config if lam is None else dataclasses.replace(config, lam=lam)

    @property
    def lam(self) -> float:
        return self.config.lam

    def forward(
        self,
        generated: Tensor,
        pred_real: Tensor,
        pred_fake: Tensor,
        timestep: Optional[Tensor] = None,
        gradient_mask: Optional[Tensor] = None,
        timestep_scale: Optional[float] = None,
        step: Optional[int] = None,
    ) -> Tensor:
        """``scheduled_lam(config, step) * msm_loss(...)``; ``step`` (the generator step, 0-based)
        is required when the config has a warm-up or a ramp, and ``lam`` applies when it is None."""
        c = self.config
        if step is None and c.schedule_on:
            raise ValueError(
                f"this MSMLoss has a schedule (warmup_steps={c.warmup_steps}, ramp_steps={c.ramp_steps}); "
                "pass the generator step: forward(..., step=step)"
            )
        weight = c.lam if step is None else scheduled_lam(c, step)
        return weight * _msm_terms(generated, pred_real, pred_fake, timestep, gradient_mask, c, timestep_scale).loss

    def extra_repr(self) -> str:
        return _describe_config(self.config)


def _describe_config(c: MSMConfig) -> str:
    """The main options, and those beyond the paper only when they are on.

    Example:
        >>> _describe_config(MSMConfig(lam=0.5, warmup_steps=10, smoothing="binomial"))
        "lam=0.5, normalization='motion', order=1, timestep_policy='strict', warmup_steps=10, ramp_steps=0, smoothing='binomial'"
    """
    text = f"lam={c.lam}, normalization={c.normalization!r}, order={c.order}, timestep_policy={c.timestep_policy!r}"
    if c.schedule_on:
        text += f", warmup_steps={c.warmup_steps}, ramp_steps={c.ramp_steps}"
    if c.noise_range_on:
        text += f", t_min={c.t_min}, t_max={c.t_max}"
    if c.smoothing != "none":
        text += f", smoothing={c.smoothing!r}"
    if c.pair_weights != "none":
        text += f", pair_weights={c.pair_weights!r}, pair_weights_mix={c.pair_weights_mix}, pair_weights_base={c.pair_weights_base}"
    return text


def _mean_abs_per_pair(d: Tensor) -> Tensor:
    """``[F - order]`` mean |D| over batch and every non-frame dim."""
    per_pair = rearrange(d, "b f ... -> f (b ...)")
    return torch.linalg.vector_norm(per_pair, ord=1, dim=1) / per_pair.shape[1]


def _mean_abs(d: Tensor) -> Tensor:
    return torch.linalg.vector_norm(d, ord=1) / d.numel()


def _motion_logs(terms: _Terms, config: MSMConfig) -> Dict[str, Tensor]:
    """The motion diagnostics: mean |D f(.)| of each video and the generated motion's distance to
    the teacher's and to the critic's (``D`` of order ``order``, unsmoothed; all entries counted),
    from the (feature) videos the loss already has: a feature map is not run again."""
    with torch.no_grad():
        # diagnostics only: float32 is exact enough and half the traffic of float64
        d = {
            which: motion_score(video.float(), order=config.order)
            for which, video in zip(("generated", "pred_real", "pred_fake"), terms.features)
        }
        logs: Dict[str, Tensor] = {}
        per_pair = {}
        for which, motion in d.items():
            if config.per_pair_logs:
                per_pair[which] = _mean_abs_per_pair(motion)
                logs[f"msm_motion_{which}"] = per_pair[which].mean()
            else:
                logs[f"msm_motion_{which}"] = _mean_abs(motion)
        logs["msm_motion_gap_real"] = _mean_abs(d["generated"] - d["pred_real"])
        logs["msm_motion_gap_fake"] = _mean_abs(d["generated"] - d["pred_fake"])
        for which, values in per_pair.items():
            for k, v in enumerate(values.unbind()):
                logs[f"msm_motion_pair/{which}_{k:02d}"] = v
    return logs


def _gradient_ratio(ctx: Any, terms: _Terms, weight: float, config: MSMConfig) -> Tensor:
    r"""``||weight * dL_MSM/dx|| / ||dL_DMD/dx||`` (L2 over the batch), in closed form, summed in float64.

    Both gradients w.r.t. the generator output ``x`` are known without a backward pass:
    :math:`\partial L_{MSM}/\partial x = M^\top (w \odot g) / N` (what :class:`_MotionMatch` returns;
    ``w`` = 1 without pair weights), and
    the hosts' DMD loss ``0.5 * mean((x - sg[x - grad])^2)`` over the ``N_dmd`` entries it counts
    (all, or the ``gradient_mask``) has gradient ``grad / N_dmd`` there, with
    ``grad = nan_to_num((pred_fake - pred_real) / n)`` and ``n`` the host's normaliser
    (``ctx.dmd_normalizer``). 0 when both are 0, inf when only DMD's is 0.
    """
    with torch.no_grad():
        weighted = terms.grad if terms.pair_weights is None else terms.grad * terms.pair_weights
        msm = motion_score_adjoint(weighted, order=config.order)
        if config.smoothing == "binomial":
            msm = smooth_frames_adjoint(msm)
        msm_norm = torch.linalg.vector_norm(msm) * (weight / max(terms.num_counted, 1))
        # float32 at least (a bf16 difference would round), summed in float64
        work = torch.promote_types(ctx.pred_fake.dtype, torch.float32)
        diff = ctx.pred_fake.detach().to(work).sub(ctx.pred_real.detach().to(work))
        count: Any = diff.numel()
        if ctx.gradient_mask is not None:
            mask = ctx.gradient_mask.bool()
            if mask.shape != diff.shape:  # [B, F]: whole frames
                mask = mask.reshape(*mask.shape[:2], *([1] * (diff.dim() - 2))).expand(diff.shape)
            diff.mul_(mask)
            count = mask.sum()
        squares = torch.linalg.vector_norm(diff.flatten(1), dim=1, dtype=torch.float64).square()  # ||pred_fake - pred_real||^2 per sample
        per_sample = torch.where(squares == 0, 0.0, squares / ctx.dmd_normalizer.square())  # nan_to_num(0 / 0) = 0
        dmd_norm = per_sample.sum().sqrt() / count
        return torch.nan_to_num(msm_norm / dmd_norm, nan=0.0, posinf=float("inf"))


@register_loss("msm")
class MSMTerm:
    """The ``msm`` extra loss for the registry: MSM on what the host already computed.

    ``weight`` is the weight of the coming generator step, :func:`scheduled_lam` at :attr:`step`
    (``lam`` without a schedule). Where the host gives its own generator step
    (``LossContext.step``, from its step counter: gradient accumulation and resumed runs follow
    it), :func:`~msm_plugin.context.compose` sets :attr:`step` to ``start_step`` plus that step
    (:meth:`follow_host_step`); otherwise the term counts its calls: ``step`` starts at
    ``start_step`` and advances after a successful call (:meth:`set_step` moves it). When nothing
    is counted (a batch outside the noise range) the value is a 0 without autograd graph.
    Calling it returns the unweighted loss and the logs ``msm_loss``, ``msm_lambda`` (the weight
    applied at this step, a Python float), ``msm_gradient_norm`` (mean |g| over counted entries,
    like the host's ``dmdtrain_gradient_norm``), ``msm_grad_ratio`` (``||lam dL_MSM/dx|| /
    ||dL_DMD/dx||``, MSM's share of the generator's gradient next to DMD's, computed in closed
    form; not with a ``feature`` map), the "buried motion" diagnostics ``msm_motion_<which>``
    (mean |D| of the generated video, ``pred_real`` and ``pred_fake``) and the motion distances
    ``msm_motion_gap_real`` / ``msm_motion_gap_fake`` (mean |D x - D pred_real| and
    |D x - D pred_fake|: the generated motion is closer to the teacher's than to the critic's when
    the first is smaller). Only when they carry information: ``msm_pairs_counted`` (share of
    motion entries counted; with a gradient mask, the ``pairs`` policy or a noise range),
    ``msm_step`` (with a schedule), ``msm_noise_range_share`` (with a noise range: share of the
    batch's frames whose timestep lies in ``[t_min, t_max]``). ``per_pair_logs=True`` adds mean
    |D| per frame pair, ``msm_motion_pair/<which>_<kk>``.

    Args:
        config: an :class:`MSMConfig` (what a config section builds), or
        **options: its fields as keywords (``MSMTerm(lam=0.5)``).

    Example:
        >>> import torch
        >>> from msm_plugin.context import LossContext
        >>> x = torch.zeros(1, 3, 1, 1, 1, requires_grad=True)
        >>> real = torch.tensor([0.0, 1.0, 2.0]).reshape(1, 3, 1, 1, 1)
        >>> loss, logs = MSMTerm(lam=0.5, normalization="none")(LossContext(x, real, torch.zeros_like(real)))
        >>> loss.item(), logs["msm_lambda"], float(logs["msm_motion_pred_real"])
        (0.5, 0.5, 1.0)
        >>> ramped = MSMTerm(lam=0.5, warmup_steps=1, ramp_steps=2)
        >>> [(ramped.weight, ramped(LossContext(x, real, torch.zeros_like(real)))[1]["msm_lambda"]) for _ in range(4)]
        [(0.0, 0.0), (0.25, 0.25), (0.5, 0.5), (0.5, 0.5)]
    """

    name = "msm"
    #: What a config section ``msm: {...}`` is validated and built into.
    options_class = MSMConfig

    def __init__(self, config: Optional[MSMConfig] = None, **options: Any) -> None:
        self.config = MSMConfig.resolve(config, options)
        self._step = self.config.start_step

    @property
    def step(self) -> int:
        """The generator step the next call computes (0-based; ``start_step`` at construction)."""
        return self._step

    def follow_host_step(self, step: int) -> None:
        """The host's generator step for the coming call, from its own counter
        (:attr:`~msm_plugin.context.LossContext.step`): the schedule is at ``start_step + step``,
        ``start_step`` counting the generator steps of earlier runs that counter does not."""
        self.set_step(self.config.start_step + step)

    def set_step(self, step: int) -> None:
        """Set the generator step of the next call, e.g. to the checkpoint's step on resume."""
        if isinstance(step, bool) or not isinstance(step, int) or step < 0:
            raise ValueError(f"MSMTerm.set_step expects the generator step, an integer >= 0, got {step!r}")
        self._step = step

    @property
    def weight(self) -> float:
        return scheduled_lam(self.config, self._step)

    def __call__(self, ctx: Any) -> Tuple[Tensor, Dict[str, Any]]:
        c = self.config
        host_normalizer = ctx.dmd_normalizer if c.normalization == "dmd" else None
        terms = _msm_terms(ctx.generated, ctx.pred_real, ctx.pred_fake, ctx.timestep, ctx.gradient_mask, c, ctx.timestep_scale, host_normalizer)
        weight = self.weight
        # Values on the host already are Python numbers; the others stay device scalars, read by the
        # host's logger in one transfer (msm_plugin.hosts.base.scalar_logs) or as it reads its own.
        logs: Dict[str, Any] = {
            "msm_loss": terms.loss.detach(),
            "msm_lambda": weight,
            "msm_gradient_norm": torch.linalg.vector_norm(terms.grad, ord=1) / max(terms.num_counted, 1),
        }
        if c.feature is None:  # with a feature map the gradient w.r.t. x needs f's Jacobian
            logs["msm_grad_ratio"] = _gradient_ratio(ctx, terms, weight, c)
        if ctx.gradient_mask is not None or c.timestep_policy == "pairs" or c.noise_range_on:
            logs["msm_pairs_counted"] = terms.num_counted / terms.num_total
        if c.schedule_on:
            logs["msm_step"] = self._step
        if terms.in_noise_range is not None:
            logs["msm_noise_range_share"] = terms.in_noise_range.double().mean()
        logs.update(_motion_logs(terms, c))
        self._step += 1
        # nothing counted (a batch outside the noise range): a value without graph, so that no
        # zero gradient flows back through the host's views and changes its summation order
        return (terms.loss if terms.num_counted else terms.loss.detach()), logs

    def __repr__(self) -> str:
        return f"MSMTerm({_describe_config(self.config)})"
