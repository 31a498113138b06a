"""Temporal operators: the motion score of the paper (eq. 10), a frame smoothing, their adjoints and masks.

A video tensor here is ``[B, F, C, H, W]`` as in every host (CausVid, Self-Forcing): frames on dim 1.
"""

from __future__ import annotations


from torch import Tensor

__all__ = ["motion_score", "motion_score_adjoint", "pair_mask", "shared_timestep_mask", "smooth_frames", "smooth_frames_adjoint"]


def _check_order(order: int) -> None:
    if isinstance(order, bool) or not isinstance(order, int) or order < 1:
        raise ValueError(f"`order` should be a positive integer (1: velocity, 2: acceleration), got {order!r}")


def motion_score(y: Tensor, *, order: int = 1, dim: int = 1) -> Tensor:
    r"""Temporal difference of ``y`` along the frame axis, the paper's motion score (eq. 10).

    .. math::
        D(y) = y_{[2:F]} - y_{[1:F-1]}, \qquad D^{k}(y) = D(D^{k-1}(y))

    ``order=1`` is eq. 10 (velocity); ``order=2`` the second difference (acceleration),
    ``y[f+2] - 2 y[f+1] + y[f]``. Applied to a score model's *output*, never to its input.

    Args:
        y: tensor with frames on ``dim``, e.g. ``[B, F, C, H, W]``.
        order: number of times the difference is applied.
        dim: the frame axis.

    Returns:
        Tensor of the same shape except ``F - order`` frames.

    Example:
        >>> import torch
        >>> y = torch.tensor([[0.0, 1.0, 3.0, 6.0]])
        >>> motion_score(y)
        tensor([[1., 2., 3.]])
        >>> motion_score(y, order=2)
        tensor([[1., 1.]])
    """
    _check_order(order)
    if not isinstance(y, Tensor):
        raise TypeError(f"expected a torch.Tensor, got {type(y).__name__}")
    if y.dim() == 0:
        raise ValueError("expected a tensor with a frame axis, got a 0-d tensor")
    frames = y.shape[dim]
    if frames <= order:
        raise ValueError(
            f"an order-{order} motion score needs more than {order} frames on dim {dim}, "
            f"got shape {tuple(y.shape)}"
        )
    for _ in range(order):
        y = y.narrow(dim, 1, y.shape[dim] - 1) - y.narrow(dim, 0, y.shape[dim] - 1)
    return y


def motion_score_adjoint(g: Tensor, *, order: int = 1, dim: int = 1) -> Tensor:
    r"""The adjoint :math:`D^{\top}` of :func:`motion_score`: maps ``F - order`` frames back to ``F``.

    ``<D y, g> = <y, D^T g>`` for all ``y``; the MSM gradient on the generated video is
    ``D^T g / N``. For order 1, ``(D^T g)[f] = g[f - 1] - g[f]`` with ``g[-1] = g[F - 1] = 0``:
    a temporal high-pass of ``g``.

    Example:
        >>> import torch
        >>> motion_score_adjoint(torch.tensor([[1.0, 1.0]]))
        tensor([[-1.,  0.,  1.]])
    """
    _check_order(order)
    for _ in range(order):
        frames = g.shape[dim]
        shape = list(g.shape)
        shape[dim] = frames + 1
        out = g.new_zeros(shape)
        out.narrow(dim, 0, frames).sub_(g)
        out.narrow(dim, 1, frames).add_(g)
        g = out
    return g


def smooth_frames(y: Tensor, *, dim: int = 1) -> Tensor:
    r"""The binomial ``[1, 2, 1] / 4`` filter along frames, valid part only: ``F`` frames in, ``F - 2`` out.

    .. math::
        (S y)[f] = \tfrac14\,(y[f] + 2\,y[f+1] + y[f+2]), \qquad f = 0 \dots F - 3

    No padding: every output reads three real frames, so the edges carry no invented frame and
    entry ``f`` reads frames ``f .. f+2`` (as an order-2 difference does, see :func:`pair_mask`).
    Its frequency response is :math:`(1 + \cos\omega) / 2`: 1 for a static video, 0 at the
    alternating-frame frequency :math:`\omega = \pi`.

    Example:
        >>> import torch
        >>> smooth_frames(torch.tensor([[0.0, 4.0, 0.0, 4.0, 8.0]]))
        tensor([[2., 2., 4.]])
    """
    if not isinstance(y, Tensor):
        raise TypeError(f"expected a torch.Tensor, got {type(y).__name__}")
    if y.dim() == 0 or y.shape[dim] < 3:
        raise ValueError(f"the [1, 2, 1] / 4 frame filter needs at least 3 frames on dim {dim}, got shape {tuple(y.shape)}")
    frames = y.shape[dim] - 2
    return (y.narrow(dim, 0, frames) + 2 * y.narrow(dim, 1, frames) + y.narrow(dim, 2, frames)) / 4


def smooth_frames_adjoint(g: Tensor, *, dim: int = 1) -> Tensor:
    r"""The adjoint :math:`S^{\top}` of :func:`smooth_frames`: ``F - 2`` frames in, ``F`` out.

    ``(S^T g)[f] = (g[f] + 2 g[f-1] + g[f-2]) / 4`` with ``g`` zero outside ``0 .. F - 3``, so
    ``<S y, g> = <y, S^T g>`` exactly.

    Example:
        >>> import torch
        >>> smooth_frames_adjoint(torch.tensor([[4.0]]))
        tensor([[1., 2., 1.]])
    """
    frames = g.shape[dim]
    shape = list(g.shape)
    shape[dim] = frames + 2
    out = g.new_zeros(shape)
    out.narrow(dim, 0, frames).add_(g)
    out.narrow(dim, 1, frames).add_(g, alpha=2)
    out.narrow(dim, 2, frames).add_(g)
    return out.div_(4)


def pair_mask(frame_mask: Tensor, *, order: int = 1) -> Tensor:
    """Which entries of an order-``order`` motion score are valid, given which frames are.

    A difference of order k at index f reads frames ``f .. f+k``; it counts only where all of
    them count (for order 1: a pair counts when both of its frames do).

    Args:
        frame_mask: boolean tensor with frames on dim 1, ``[B, F]`` or ``[B, F, C, H, W]``.
        order: the order of the motion score.

    Returns:
        Boolean tensor ``[B, F - order, ...]``.

    Example:
        >>> import torch
        >>> pair_mask(torch.tensor([[False, True, True, True]]))
        tensor([[False,  True,  True]])
        >>> pair_mask(torch.tensor([[True, True, False, True, True]]), order=2)
        tensor([[False, False, False]])
    """
    _check_order(order)
    m = frame_mask.bool()
    for _ in range(order):
        m = m[:, 1:] & m[:, :-1]
    return m


def shared_timestep_mask(timestep: Tensor, *, order: int = 1) -> Tensor:
    """Which motion-score entries read frames that all share one diffusion timestep.

    The motion score is only meaningful at one noise level (sec. 6.2), so under a causal
    teacher (one timestep per block of frames) only the pairs inside a block qualify.

    Args:
        timestep: ``[B, F]`` timesteps.
        order: the order of the motion score.

    Returns:
        Boolean tensor ``[B, F - order]``.

    Example:
        >>> import torch
        >>> shared_timestep_mask(torch.tensor([[900, 900, 900, 500, 500, 500]]))
        tensor([[ True,  True, False,  True,  True]])
    """
    _check_order(order)
    same = timestep[:, 1:] == timestep[:, :-1]
    # An order-k entry at f reads frames f..f+k, i.e. the k adjacent pairs f..f+k-1.
    for _ in range(order - 1):
        same = same[:, 1:] & same[:, :-1]
    return same
