"""Motion-compensated smoothness: how well a frame is predicted by interpolating its neighbours along the flow.

For each middle frame ``f`` (``f = 1 .. F-2``) let ``w[f]`` be the flow from ``x[f-1]`` to
``x[f+1]``. Under motion at constant velocity the point at ``p`` in frame ``f`` was at
``p - w/2`` in frame ``f - 1`` and will be at ``p + w/2`` in frame ``f + 1``, so

    x_hat[f](p) = ( x[f-1](p - w[f](p)/2) + x[f+1](p + w[f](p)/2) ) / 2

(the flow at ``p`` stands in for the flow of the point passing through ``p``, exact for a
uniform translation). With ``e[f] = mean_{c,h,w} |x[f] - x_hat[f]|`` and
``h[f] = mean_{c,h,w} |x[f+1] - x[f]|`` (``f = 0 .. F-2``, the error of holding the previous
frame), the smoothness error of a video is

    S = mean_f e[f] / mean_f h[f]          (S = 0 when all frames are equal).

``S`` is near 0 for motion at constant velocity, whatever its size, and about 1 for
flicker (``x_hat`` reproduces the neighbours, the frame differs from them as much as it
differs from its predecessor) and for shuffled frames. Direction: lower is smoother.

VBench's ``motion_smoothness`` interpolates the odd frames from the even ones with the AMT
network and reports ``(255 - mean |x - x_hat|) / 255`` on 8-bit frames; the same prediction
with flow in place of AMT gives :func:`~msm_plugin.metrics.vbench.motion_smoothness_proxy`.
"""

from __future__ import annotations

import numpy as np

from ._checks import as_videos
from .flow import as_flow_estimator, warp

__all__ = ["interpolate_middle", "interpolate_video", "skip_flows", "smoothness_error", "video_smoothness_error"]


def skip_flows(video: np.ndarray, estimator) -> np.ndarray:
    """Flows ``w[f]`` from frame ``f - 1`` to ``f + 1`` of one video ``[F, C, H, W]``: ``[F - 2, H, W, 2]``."""
    return estimator(video[:-2], video[2:])


def interpolate_middle(before: np.ndarray, after: np.ndarray, flow: np.ndarray) -> np.ndarray:
    """Frame halfway between ``before`` and ``after`` ``[C, H, W]`` along ``flow`` ``[H, W, 2]`` (before -> after).

    >>> before = np.tile(np.arange(6.0), (1, 2, 1))        # a ramp, 1 level per pixel
    >>> after = before - 2.0                               # the ramp moved 2 px right
    >>> interpolate_middle(before, after, np.full((2, 6, 2), [2.0, 0.0]))[0, 0, 1:5]
    array([0., 1., 2., 3.], dtype=float32)
    """
    half = flow / 2
    past = warp(np.moveaxis(before, 0, -1), -half).reshape(before.shape[1], before.shape[2], -1)
    future = warp(np.moveaxis(after, 0, -1), half).reshape(after.shape[1], after.shape[2], -1)
    return np.moveaxis((past + future) / 2, -1, 0)


def interpolate_video(video: np.ndarray, flows: np.ndarray) -> np.ndarray:
    """Every middle frame of ``video`` ``[F, C, H, W]`` predicted from its neighbours: ``[F - 2, C, H, W]``.

    ``flows`` are the video's :func:`skip_flows` ``[F - 2, H, W, 2]``.
    """
    return np.stack([interpolate_middle(video[f - 1], video[f + 1], flows[f - 1]) for f in range(1, len(video) - 1)])


def video_smoothness_error(video: np.ndarray, predictions: np.ndarray) -> float:
    """``S`` of one video ``[F, C, H, W]`` given its middle frames' :func:`interpolate_video` predictions."""
    hold = np.abs(video[1:] - video[:-1]).mean(dtype=np.float64)
    if hold == 0:
        return 0.0
    return float(np.abs(video[1:-1] - predictions).mean(dtype=np.float64) / hold)


def smoothness_error(videos, *, flow=None) -> np.ndarray:
    """Per video motion-compensated smoothness error ``S`` (module docstring).

    Args:
        videos: ``[N, F, C, H, W]`` in [0, 1], ``F >= 3``.
        flow: flow estimator (default :func:`~msm_plugin.metrics.flow.farneback_flow`).

    Returns:
        float64 array ``[N]``, each value >= 0.

    >>> x = np.array([0.0, 0.25, 0.5, 0.5]).reshape(1, 4, 1, 1, 1)  # a fade that stops
    >>> smoothness_error(x)
    array([0.375])
    """
    videos = as_videos(videos, min_frames=3)
    estimator = as_flow_estimator(flow)
    return np.array(
        [video_smoothness_error(video, interpolate_video(video, skip_flows(video, estimator))) for video in videos]
    )
