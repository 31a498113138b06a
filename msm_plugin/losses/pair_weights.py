"""Per-pair weights of MSM's motion gradient: DiagDistill's hybrid of error-driven and exponential weights.

DiagDistill weights the squared motion gradient of frame pair ``k`` by
``mix * dyn_k + (1 - mix) * exp_k`` (``mix`` 0.7, ``base`` 1.2 in its code), where ``dyn_k``
grows with the cumulative error up to pair ``k`` and ``exp_k`` with ``k`` itself: later pairs
weigh more. In its code that term is built from detached tensors and carries no gradient; MSM
applies the same weights to its gradient instead (``D^T (w * g) / N``). The weights are computed
without a graph: they scale the gradient, they are not trained through.
"""

from __future__ import annotations

import math
from typing import Optional

import torch
from torch import Tensor

__all__ = ["DIAGDISTILL_BASE", "DIAGDISTILL_MIX", "dynamic_pair_weights", "exponential_pair_weights", "hybrid_pair_weights"]

#: DiagDistill's share of the error-driven weights in the hybrid.
DIAGDISTILL_MIX = 0.7
#: DiagDistill's base of the exponential weights.
DIAGDISTILL_BASE = 1.2
#: DiagDistill's floor on the total error, so that an error-free sample gets ``dyn = 1`` everywhere.
_ERROR_FLOOR = 1e-6


def exponential_pair_weights(pairs: int, base: float, *, dtype: torch.dtype = torch.float64, device=None) -> Tensor:
    r"""``[pairs]``: :math:`\mathrm{exp}_k = b^k / \mathrm{mean}_j\, b^j`, mean 1 (1 everywhere for ``b = 1``).

    Computed as ``pairs * softmax(k log b)``, so a large base cannot overflow.

    Example:
        >>> exponential_pair_weights(3, 2.0).tolist()  # [1, 2, 4] / (7 / 3)
        [0.42857142857142855, 0.8571428571428571, 1.7142857142857142]
    """
    if isinstance(pairs, bool) or not isinstance(pairs, int) or pairs < 1:
        raise ValueError(f"`pairs` should be a positive integer, got {pairs!r}")
    if isinstance(base, bool) or not isinstance(base, (int, float)) or not 0 < base < math.inf:
        raise ValueError(f"`base` should be a finite number > 0, got {base!r}")
    logits = torch.arange(pairs, dtype=torch.float64, device=device) * math.log(base)
    return (torch.softmax(logits, dim=0) * pairs).to(dtype)


def dynamic_pair_weights(error: Tensor) -> Tensor:
    r"""``[B, K]`` from per-pair errors ``[B, K]``: :math:`\mathrm{dyn}_k = 1 + \sum_{j \le k} e_j /
    \max(\sum_j e_j, 10^{-6})`, in ``[1, 2]``, rising along the clip where the error accumulates.

    Example:
        >>> dynamic_pair_weights(torch.tensor([[1.0, 1.0, 2.0], [0.0, 0.0, 0.0]])).tolist()
        [[1.25, 1.5, 2.0], [1.0, 1.0, 1.0]]
    """
    cumulative = error.cumsum(dim=1)
    return 1 + cumulative / cumulative[:, -1:].clamp(min=_ERROR_FLOOR)


@torch.no_grad()
def hybrid_pair_weights(
    g: Tensor,
    last_frames: Tensor,
    *,
    mix: float = DIAGDISTILL_MIX,
    base: float = DIAGDISTILL_BASE,
    counted: Optional[Tensor] = None,
) -> Tensor:
    r"""DiagDistill's hybrid per-pair weights, ``[B, K]``, float64, without a graph.

    .. math::
        e_{bk} = \mathrm{mean}_{chw}\,(g_{bk} - x_{b,k+r})^2, \qquad
        w_{bk} = \mathrm{mix}\cdot\mathrm{dyn}_{bk}(e) + (1 - \mathrm{mix})\cdot\mathrm{exp}_k

    (:func:`dynamic_pair_weights`, :func:`exponential_pair_weights`). As in DiagDistill's code,
    the error compares the motion gradient of entry ``k`` with the *frame* ``x_{k+r}`` (the last
    frame the entry reads; ``r = 1`` for the paper's difference), not with a difference of frames.

    Args:
        g: the motion gradient ``[B, K, ...]`` (MSM's, normalised, zero where not counted).
        last_frames: ``[B, K, ...]``, the frame each entry ends on (``x[:, r:]``, features if any).
        mix: share of the error-driven weights, in [0, 1].
        base: base of the exponential weights, > 0.
        counted: 0/1 ``[B, K, ...]`` (broadcastable); entries not counted add nothing to ``e``.

    Example:
        >>> g = torch.zeros(1, 3, 1, 1, 1)
        >>> frames = torch.tensor([1.0, 1.0, 2.0]).reshape(1, 3, 1, 1, 1)  # e = [1, 1, 4]
        >>> hybrid_pair_weights(g, frames, mix=1.0).tolist()  # dyn alone: 1 + [1, 2, 6] / 6
        [[1.1666666666666667, 1.3333333333333333, 2.0]]
    """
    if g.shape != last_frames.shape or g.dim() < 2:
        raise ValueError(
            f"expected the motion gradient and the frames it ends on to have one shape [B, K, ...], "
            f"got {tuple(g.shape)} and {tuple(last_frames.shape)}"
        )
    squared = (g.to(torch.float64) - last_frames.to(torch.float64)).square_()
    if counted is not None:
        squared = squared.mul_(counted)
    error = squared.reshape(*squared.shape[:2], -1).mean(dim=2)
    exponential = exponential_pair_weights(g.shape[1], base, device=g.device)
    return mix * dynamic_pair_weights(error) + (1 - mix) * exponential
