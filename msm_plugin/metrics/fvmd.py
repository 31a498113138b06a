"""An FVMD-style distance: Fréchet distance of tracked points' velocity and acceleration histograms.

FVMD (Liu et al., 2024, "Fréchet Video Motion Distance") tracks a 20 x 20 grid of points
with PIPs++ through clips of 16 frames (the last frame of a clip starts the next) on
frames resized to 256 x 256. This proxy tracks the same grid by integrating the dense
flow (``p[s+1] = p[s] + u[s](p[s])``, bilinear) instead of PIPs++, and keeps the rest:

- velocity ``v[s] = p[s] - p[s-1]`` (``v[0] = 0``) and acceleration ``a[s] = v[s] - v[s-1]``
  (``a[0] = a[1] = 0``), in pixels of the 256 x 256 frame. (The paper defines acceleration
  as the change of velocity, as here; the released code differences positions a second
  time, which gives a shifted velocity.)
- per cube of 4 frames x 5 x 5 points (4 x 4 x 4 cubes per clip), a histogram over 8
  direction bins of width 45 degrees (angle ``atan2(x, y)``), each vector adding
  ``ceil(log2(min(|v|, 255) + 1)) / 8``; zero vectors add nothing.
- a clip's feature is its velocity histograms followed by its acceleration histograms
  (``2 * 4 * 4 * 4 * 8 = 1024`` values for 16-frame clips; FVMD's "combined" variant), and
  the distance is :func:`~msm_plugin.metrics.frechet.frechet_distance` of the two clip sets.

Clips shorter than 16 frames are used when a set's videos are shorter (both sets must use
the same clip length for the features to match; ``motion_metrics`` takes the shortest).
Direction: lower is better.
"""

from __future__ import annotations

import cv2
import numpy as np
from einops import rearrange

from ._checks import as_videos
from .flow import as_flow_estimator
from .frechet import frechet_distance

__all__ = [
    "CLIP_FRAMES",
    "clip_features",
    "direction_histograms",
    "fvmd_features",
    "fvmd_proxy",
    "track_grid",
]

CLIP_FRAMES = 16
_GRID, _CELL, _CUBE, _BINS, _SIZE, _MARGIN = 20, 5, 4, 8, 256.0, 8.0
_LEVELS = 8  # log2 of the 256 magnitude levels


def track_grid(flows: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """FVMD's 20 x 20 grid followed along ``flows`` ``[S - 1, H, W, 2]``: positions and velocities.

    The grid spans ``8 .. 248`` of a 256 px frame, scaled to ``W x H``. Velocities are the
    sampled flow steps themselves (not differences of positions), so that a uniform motion
    gives exactly equal velocities and exactly zero acceleration: FVMD's log-magnitude
    weight turns any non-zero round-off into a full 1/8.

    Returns:
        float64 arrays ``[S, 400, 2]`` of (x, y) positions and velocities (``v[0] = 0``), in
        pixels of the 256 x 256 frame.

    >>> positions, velocities = track_grid(np.ones((1, 32, 32, 2)))
    >>> positions[1, 0], velocities[1, 0]
    (array([16., 16.]), array([8., 8.]))
    """
    height, width = flows.shape[1:3]
    line = _MARGIN + np.arange(_GRID) / (_GRID - 1) * (_SIZE - 2 * _MARGIN)
    ys, xs = np.meshgrid(line, line, indexing="ij")
    scale = np.array([width / _SIZE, height / _SIZE])
    points = np.stack([xs.ravel(), ys.ravel()], axis=1) * scale  # native pixels
    steps = [np.zeros_like(points)]
    for flow in flows:
        step = cv2.remap(
            flow.astype(np.float32),
            points[None, :, 0].astype(np.float32),
            points[None, :, 1].astype(np.float32),
            cv2.INTER_LINEAR,
            borderMode=cv2.BORDER_REPLICATE,
        )[0].astype(np.float64)
        points = points + step
        steps.append(step)
    velocities = np.stack(steps) / scale
    return np.cumsum(velocities, axis=0) + np.stack([xs.ravel(), ys.ravel()], axis=1), velocities


def direction_histograms(vectors: np.ndarray) -> np.ndarray:
    """FVMD's magnitude-weighted direction histograms of ``[S, 400, 2]`` vectors: ``[S // 4, 4, 4, 8]``.

    >>> v = np.zeros((4, 400, 2)); v[1, 0] = [0.0, 3.0]            # one point moving 3 px down
    >>> h = direction_histograms(v); float(h.sum()), int(np.argmax(h[0, 0, 0]))   # ceil(log2(4)) / 8
    (0.25, 4)
    """
    frames = vectors.shape[0] // _CUBE * _CUBE
    grid = rearrange(vectors[:frames], "(t s) (gy cy gx cx) k -> t gy gx (s cy cx) k", s=_CUBE, cy=_CELL, cx=_CELL,
                     gy=_GRID // _CELL)
    angle = np.arctan2(grid[..., 0], grid[..., 1])
    bins = np.clip(np.floor((angle + np.pi) / (2 * np.pi / _BINS)), 0, _BINS - 1).astype(np.int64)
    weight = np.ceil(np.log2(np.minimum(np.hypot(grid[..., 0], grid[..., 1]), 255.0) + 1.0)) / _LEVELS
    one_hot = bins[..., None] == np.arange(_BINS)
    return (one_hot * weight[..., None]).sum(axis=-2)


def clip_features(flows: np.ndarray) -> np.ndarray:
    """Feature of one clip from its ``[S - 1, H, W, 2]`` consecutive flows: ``[2 * (S // 4) * 128]``."""
    _, velocity = track_grid(flows)
    acceleration = np.concatenate([np.zeros_like(velocity[:1]), np.diff(velocity, axis=0)])
    acceleration[1] = 0.0  # v[0] is a convention, not a measurement: a[1] is undefined
    return np.concatenate([direction_histograms(velocity).ravel(), direction_histograms(acceleration).ravel()])


def _clip_starts(frames: int, clip: int) -> range:
    return range(0, frames - clip + 1, clip - 1)


def video_clip_features(flows: np.ndarray, clip: int) -> np.ndarray:
    """Features ``[clips, D]`` of one video from its consecutive flows ``[F - 1, H, W, 2]``."""
    return np.stack([clip_features(flows[s : s + clip - 1]) for s in _clip_starts(len(flows) + 1, clip)])


def _check_clip(clip_frames: int, frames: int) -> None:
    if isinstance(clip_frames, bool) or not isinstance(clip_frames, int) or clip_frames < _CUBE:
        raise ValueError(f"`clip_frames` should be an int >= {_CUBE} (one cube), got {clip_frames!r}")
    if frames < clip_frames:
        raise ValueError(f"expected videos with F >= clip_frames = {clip_frames} frames, got F = {frames}")


def fvmd_features(videos, *, clip_frames: int = CLIP_FRAMES, flow=None) -> np.ndarray:
    """FVMD-style features of every clip of every video.

    Args:
        videos: ``[N, F, C, H, W]`` in [0, 1], ``F >= clip_frames``.
        clip_frames: frames per clip (FVMD: 16), at least 4.
        flow: flow estimator (default Farneback).

    Returns:
        float64 array ``[clips, 2 * (clip_frames // 4) * 128]``, clips of consecutive videos in order.
    """
    videos = as_videos(videos)
    _check_clip(clip_frames, videos.shape[1])
    estimator = as_flow_estimator(flow)
    return np.concatenate([video_clip_features(estimator(v[:-1], v[1:]), clip_frames) for v in videos])


def fvmd_proxy(videos, reference, *, clip_frames: int = CLIP_FRAMES, flow=None) -> float:
    """Fréchet distance between the FVMD-style clip features of two video sets (lower is better).

    Args:
        videos: ``[N, F, C, H, W]`` in [0, 1].
        reference: ``[M, F', C, H', W']``; together the sets need >= 2 clips each.
        clip_frames: frames per clip (FVMD: 16).
        flow: flow estimator (default Farneback).

    Returns:
        The distance as a Python float.
    """
    return frechet_distance(
        fvmd_features(videos, clip_frames=clip_frames, flow=flow),
        fvmd_features(reference, clip_frames=clip_frames, flow=flow),
    )
