"""Fixed, weight-free per-video motion features and per-frame appearance features.

Both are coarse spatial poolings on a ``g x g`` grid of cells, so that sets of different
resolutions or lengths can be compared and a Fréchet distance over them
(:mod:`~msm_plugin.metrics.frechet`) stays well conditioned with tens of videos. An
optional user-supplied network (:func:`extractor_features`) gives FVD-style features.
"""

from __future__ import annotations

import numpy as np
import torch
from einops import rearrange

from ._checks import as_videos

__all__ = ["appearance_features", "cell_means", "extractor_features", "motion_features"]


def _check_grid(grid: int, height: int, width: int) -> None:
    if isinstance(grid, bool) or not isinstance(grid, int) or grid < 1:
        raise ValueError(f"`grid` should be a positive int, got {grid!r}")
    if grid > min(height, width):
        raise ValueError(f"`grid` = {grid} needs frames of at least {grid}x{grid} pixels, got {height}x{width}")


def cell_means(maps: np.ndarray, grid: int) -> np.ndarray:
    """Mean of ``[..., H, W]`` maps over a ``grid x grid`` partition of the frame.

    Cell ``i`` along an axis of length ``L`` spans rows ``floor(i L / g) .. floor((i + 1) L / g) - 1``,
    so cells differ by at most one pixel in size and cover every pixel once.

    Args:
        maps: array ``[..., H, W]`` with ``H, W >= grid``.
        grid: cells per side.

    Returns:
        float64 array ``[..., grid, grid]``.

    >>> cell_means(np.arange(16.0).reshape(4, 4), 2)
    array([[ 2.5,  4.5],
           [10.5, 12.5]])
    """
    height, width = maps.shape[-2:]
    _check_grid(grid, height, width)
    rows = np.arange(grid) * height // grid
    cols = np.arange(grid) * width // grid
    sums = np.add.reduceat(np.add.reduceat(maps.astype(np.float64), rows, axis=-2), cols, axis=-1)
    counts = np.outer(np.diff(np.append(rows, height)), np.diff(np.append(cols, width)))
    return sums / counts


def motion_features(videos, *, grid: int = 4) -> np.ndarray:
    """Per video motion descriptor from pooled first and second temporal differences.

    With ``v = mean_c |D x|`` and ``a = mean_c |D^2 x|`` averaged over ``grid x grid`` cells,
    the feature is ``[mean_f v, std_f v, mean_f a]`` per cell (population std over frame
    pairs): where the video moves, how unevenly in time, and how much the motion changes.
    Values are mean absolute intensity changes (all 0 for a static video), independent of
    ``F``, ``H`` and ``W``.

    Args:
        videos: ``[N, F, C, H, W]`` in [0, 1], ``F >= 3``, ``H, W >= grid``.
        grid: cells per side.

    Returns:
        float64 array ``[N, 3 * grid * grid]``.

    >>> motion_features(np.zeros((2, 4, 3, 8, 8)), grid=2).shape
    (2, 12)
    """
    videos = as_videos(videos, min_frames=3)
    _check_grid(grid, *videos.shape[-2:])
    first = np.abs(videos[:, 1:] - videos[:, :-1]).mean(axis=2)  # n f c h w -> n f h w
    second = np.abs(videos[:, 2:] - 2 * videos[:, 1:-1] + videos[:, :-2]).mean(axis=2)
    speed = rearrange(cell_means(first, grid), "n f gh gw -> n f (gh gw)")
    acceleration = rearrange(cell_means(second, grid), "n f gh gw -> n f (gh gw)")
    return np.concatenate([speed.mean(axis=1), speed.std(axis=1), acceleration.mean(axis=1)], axis=1)


def appearance_features(videos, *, grid: int = 4) -> np.ndarray:
    """Per frame appearance descriptor: pooled colour layout and per-channel contrast.

    For each frame, the mean of every channel on ``grid x grid`` cells followed by the
    standard deviation of every channel over the frame. Motion plays no part: reordering
    frames within or across videos leaves the set of features unchanged.

    Args:
        videos: ``[N, F, C, H, W]`` in [0, 1], ``F >= 2``, ``H, W >= grid``.
        grid: cells per side.

    Returns:
        float64 array ``[N * F, C * (grid * grid + 1)]``.

    >>> appearance_features(np.zeros((2, 3, 3, 8, 8)), grid=2).shape
    (6, 15)
    """
    videos = as_videos(videos)
    _check_grid(grid, *videos.shape[-2:])
    frames = rearrange(videos, "n f c h w -> (n f) c h w")
    layout = rearrange(cell_means(frames, grid), "b c gh gw -> b (c gh gw)")
    contrast = rearrange(frames, "b c h w -> b c (h w)").std(axis=2, dtype=np.float64)
    return np.concatenate([layout, contrast], axis=1)


def extractor_features(videos, extractor, *, batch_size: int = 16) -> np.ndarray:
    """Features from a user's local network (FVD style); nothing is downloaded.

    Args:
        videos: ``[N, F, C, H, W]`` in [0, 1], ``F >= 2``.
        extractor: a callable (``torch.nn.Module``, TorchScript module, function) mapping a
            float32 CPU tensor ``[B, F, C, H, W]`` to features ``[B, D]`` (trailing
            dimensions are flattened). It runs under ``torch.no_grad()``.
        batch_size: videos per call.

    Returns:
        float64 array ``[N, D]``.

    >>> extractor_features(np.zeros((3, 2, 1, 4, 4)), lambda v: v.mean(dim=(1, 3, 4))).shape
    (3, 1)
    """
    if not callable(extractor):
        raise TypeError(f"expected `extractor` to be callable (a torch module), got {type(extractor).__name__}")
    if isinstance(batch_size, bool) or not isinstance(batch_size, int) or batch_size < 1:
        raise ValueError(f"`batch_size` should be a positive int, got {batch_size!r}")
    videos = torch.from_numpy(as_videos(videos))
    chunks = []
    with torch.no_grad():
        for start in range(0, videos.shape[0], batch_size):
            batch = videos[start : start + batch_size]
            try:
                out = extractor(batch)
            except Exception as error:  # a user network can raise anything; say which input broke it
                raise ValueError(
                    f"the feature extractor failed on a batch of shape {tuple(batch.shape)}: "
                    f"{type(error).__name__}: {error}"
                ) from error
            if not isinstance(out, torch.Tensor) or out.ndim < 1 or out.shape[0] != batch.shape[0]:
                got = tuple(out.shape) if isinstance(out, torch.Tensor) else type(out).__name__
                raise ValueError(
                    f"expected the extractor to return a tensor [B, D] with B = {batch.shape[0]}, got {got}"
                )
            chunks.append(out.detach().reshape(out.shape[0], -1).to("cpu", torch.float64).numpy())
    features = np.concatenate(chunks)
    if not np.isfinite(features).all():
        raise ValueError("expected finite features from the extractor, found NaN or inf")
    return features
