"""What a host hands to its extra losses for one generator step, and how their values are added.

:class:`LossContext` carries the generator output and the two x0 predictions the host's DMD step
already computed; :func:`dmd_normalizer` is the host's own DMD normaliser (the one rule, read by
every loss that normalises like DMD); :class:`ExtraLoss` is what a built loss looks like and
:func:`compose` adds the weighted losses to the host's loss. This module depends on torch alone:
the registry, the losses and the hosts all build on it.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import cached_property
from typing import Any, Dict, Iterable, Mapping, Optional, Protocol, Tuple, runtime_checkable

import torch
from torch import Tensor

__all__ = ["ExtraLoss", "LossContext", "compose", "dmd_normalizer"]


@dataclass(frozen=True)
class LossContext:
    """What the host computed for one generator step, handed to every extra loss.

    Attributes:
        generated: generator output ``[B, F, C, H, W]``, carrying the generator's graph.
        pred_real: teacher (real score) x0 prediction after CFG, ``[B, F, C, H, W]``, detached.
        pred_fake: critic (fake score) x0 prediction, ``[B, F, C, H, W]``, detached.
        timestep: the score timestep ``[B, F]``, or None when the host does not say.
        gradient_mask: the host's ``gradient_mask`` (``[B, F, C, H, W]`` or ``[B, F]``) or None.
        host: which host produced it (``"causvid"``, ``"self_forcing"``, ``"toy"``, ...).
        timestep_scale: the host's largest timestep, so that ``timestep / timestep_scale`` is the
            noise level in [0, 1] (1: pure noise): 1000 for CausVid / Self-Forcing / FastVideo
            (their ``num_train_timestep``), the ``max_t`` of the model's noise schedule for
            FastGen (80 for EDM, pi / 2 trigonometric); None when the host does not say.
        dmd_over: over what the host averages its DMD normaliser: ``"sample"`` (CausVid,
            Self-Forcing, FastGen) or ``"batch"`` (FastVideo's one scalar).
        dmd_eps: what the host adds to it (FastGen: 1e-6; the others: 0).
        step: the generator step (0-based, in optimiser steps) of this call as the host counts it,
            from its own step counter (so gradient accumulation and resumed runs follow it); None
            when the host does not say (a scheduled loss then counts its calls).
    """

    generated: Tensor
    pred_real: Tensor
    pred_fake: Tensor
    timestep: Optional[Tensor] = None
    gradient_mask: Optional[Tensor] = None
    host: str = "unknown"
    timestep_scale: Optional[float] = None
    dmd_over: str = "sample"
    dmd_eps: float = 0.0
    step: Optional[int] = None

    @cached_property
    def dmd_normalizer(self) -> Tensor:
        """The host's own DMD normaliser in float64, ``[B]`` (see :func:`dmd_normalizer`).

        Computed on first use only: most losses never read it, and it is a full pass over the video.
        """
        return dmd_normalizer(self.generated, self.pred_real, over=self.dmd_over, eps=self.dmd_eps)


def dmd_normalizer(generated: Tensor, pred_real: Tensor, *, over: str = "sample", eps: float = 0.0) -> Tensor:
    """The DMD normaliser ``n = mean |generated - pred_real| + eps`` in float64, one per sample ``[B]``.

    The hosts divide the DMD gradient by it: averaged over ``(F, C, H, W)`` per sample
    (``over="sample"``: CausVid, Self-Forcing, FastGen with ``eps=1e-6``) or over the whole batch
    (``over="batch"``: FastVideo's one scalar, repeated for every sample).

    Example:
        >>> x, real = torch.tensor([[1.0, 3.0], [0.0, 0.0]]), torch.zeros(2, 2)
        >>> dmd_normalizer(x, real).tolist(), dmd_normalizer(x, real, over="batch").tolist()
        ([2.0, 0.0], [1.0, 1.0])
    """
    if over not in ("sample", "batch"):
        raise ValueError(f"`over` should be 'sample' or 'batch', got {over!r}")
    with torch.no_grad():
        gap = generated.detach().to(torch.float64, copy=True).sub_(pred_real.detach()).abs_()
        n = gap.flatten(1).mean(1) if over == "sample" else gap.mean().expand(gap.shape[0])
        return n + eps if eps else n


@runtime_checkable
class ExtraLoss(Protocol):
    """A built extra loss: ``weight * loss`` is added to the host's generator loss."""

    name: str
    weight: float

    def __call__(self, ctx: LossContext) -> Tuple[Tensor, Dict[str, Any]]: ...


def compose(
    host_loss: Tensor,
    host_logs: Mapping[str, Any],
    losses: Iterable[ExtraLoss],
    ctx: LossContext,
) -> Tuple[Tensor, Dict[str, Any]]:
    """Add the extra losses to the host's loss: ``host_loss + sum_i weight_i * loss_i``.

    A loss whose weight is 0 at this step (``lam: 0``, a warm-up) is computed without autograd
    (for its logs) and not added, so the total and every gradient are the host's own, bit for bit:
    a zero gradient returned through a view of the host's tensors would change the summation order
    of its backward pass. A loss with a schedule (``follow_host_step``) first follows ``ctx.step``
    when the host gives it.

    Args:
        host_loss: the host's scalar generator loss (DMD).
        host_logs: the host's log dict; every key is kept.
        losses: built extra losses (see :func:`msm_plugin.registry.get_loss`).
        ctx: what the host computed this step.

    Returns:
        ``(total_loss, logs)``: logs are the host's plus each loss's own keys.

    Example:
        >>> from msm_plugin.losses import MSMTerm
        >>> x = torch.zeros(1, 3, 1, 2, 2, requires_grad=True)
        >>> ctx = LossContext(generated=x, pred_real=torch.zeros(1, 3, 1, 2, 2), pred_fake=torch.ones(1, 3, 1, 2, 2))
        >>> total, logs = compose(torch.tensor(1.0, dtype=torch.float64), {"k": 1}, [MSMTerm(lam=0.0)], ctx)
        >>> total.item(), sorted(logs)[:3]
        (1.0, ['k', 'msm_grad_ratio', 'msm_gradient_norm'])
    """
    total = host_loss
    logs: Dict[str, Any] = dict(host_logs)
    for term in losses:
        if ctx.step is not None and callable(getattr(term, "follow_host_step", None)):
            term.follow_host_step(ctx.step)
        weight = term.weight  # read first: a scheduled term advances its step in its call
        with torch.set_grad_enabled(torch.is_grad_enabled() and weight != 0):
            value, term_logs = term(ctx)
        if not isinstance(value, Tensor) or value.numel() != 1:
            raise TypeError(f"extra loss {term.name!r} must return a scalar tensor, got {value!r}")
        clash = sorted(set(logs) & set(term_logs))
        if clash:
            raise ValueError(f"extra loss {term.name!r} logs keys that are already present: {clash}")
        if weight != 0:
            total = total + weight * value.reshape(())
        logs.update(term_logs)
    return total, logs
