"""Proxies of three VBench dimensions, with VBench's parameters and optical flow in place of its networks.

VBench (Huang et al., 2024) scores with RAFT (dynamic degree, its static filter) and AMT
(motion smoothness). These proxies follow its rules exactly and change only the motion
estimator: the default Farneback flow, or the user's RAFT through
:func:`~msm_plugin.metrics.flow.load_flow_network` (then dynamic degree and the static
filter are VBench's own computation). Frames are quantised to 8 bits first, as decoded videos are.

- :func:`dynamic_degree_proxy`: frames sampled every ``max(1, round(fps / 8))`` (all frames
  when ``fps`` is unknown, as VBench does for image folders); per consecutive sampled pair
  the mean of the top 5 % flow magnitudes; a video is dynamic when at least
  ``round(4 * K / 16)`` pairs exceed ``6 * min(H, W) / 256`` px, with ``K`` sampled frames
  (VBench takes the top 5 % of RAFT's flow on frames padded to a multiple of 8; here the
  top 5 % of the ``H x W`` flow).
- :func:`is_static_proxy`: VBench's static filter, which selects the clips
  ``temporal_flickering`` is measured on: every frame, threshold ``3 * min(H, W) / 256``, at
  most ``c = round(2 * F / 16)`` consecutive pairs above it, and the first -> last and
  last -> first pairs at most ``2 c`` times the threshold.
- :func:`temporal_flickering_proxy`: ``(255 - mean_f mean |x[f+1] - x[f]|) / 255`` on 8-bit
  frames, per static clip (VBench's protocol; moving clips would score motion as flicker).
- :func:`motion_smoothness_proxy`: the odd frames predicted from their even neighbours by
  flow interpolation (:func:`~msm_plugin.metrics.smoothness.interpolate_middle`) in place of
  AMT, ``(255 - mean |x - x_hat|) / 255`` on 8-bit frames.

All three scores are in [0, 1]; higher means more dynamic, less flicker, smoother.
"""

from __future__ import annotations

import numpy as np

from ._checks import as_videos
from .flow import as_flow_estimator, peak_magnitude, to_uint8
from .smoothness import interpolate_video, skip_flows

__all__ = [
    "dynamic_degree_proxy",
    "is_static_proxy",
    "motion_smoothness_proxy",
    "sample_interval",
    "temporal_flickering_proxy",
    "video_is_dynamic",
    "video_is_static",
    "video_motion_smoothness",
    "video_temporal_flickering",
]

_BASE = 256.0


def sample_interval(fps: float | None) -> int:
    """VBench's dynamic-degree frame step: ``max(1, round(fps / 8))``, 1 when ``fps`` is None.

    >>> sample_interval(24), sample_interval(16), sample_interval(None)
    (3, 2, 1)
    """
    if fps is None:
        return 1
    if isinstance(fps, bool) or not isinstance(fps, (int, float)) or not fps > 0:
        raise ValueError(f"`fps` should be a positive number or None, got {fps!r}")
    return max(1, round(fps / 8))


def video_is_dynamic(peaks: np.ndarray, *, frames: int, height: int, width: int) -> bool:
    """VBench's dynamic rule from the per pair peaks ``[frames - 1]`` of the sampled frames."""
    threshold = 6.0 * min(height, width) / _BASE
    needed = round(4 * frames / 16)
    return bool(len(peaks) > 0 and np.sum(peaks > threshold) >= needed)


def video_is_static(pair_peaks: np.ndarray, end_peaks: np.ndarray, *, height: int, width: int) -> bool:
    """VBench's static filter from consecutive pair peaks ``[F - 1]`` and the two end pair peaks ``[2]``."""
    threshold = 3.0 * min(height, width) / _BASE
    allowed = round(2 * (len(pair_peaks) + 1) / 16)
    return bool(np.sum(pair_peaks > threshold) <= allowed and np.all(end_peaks <= threshold * allowed * 2))


def video_temporal_flickering(video: np.ndarray) -> float:
    """``(255 - mean |x[f+1] - x[f]|) / 255`` of one video ``[F, C, H, W]`` on 8-bit levels."""
    levels = to_uint8(video).astype(np.float64)
    return float((255.0 - np.abs(levels[1:] - levels[:-1]).mean()) / 255.0)


def video_motion_smoothness(video: np.ndarray, predictions: np.ndarray) -> float:
    """VBench-style smoothness of one video ``[F, C, H, W]`` from its interpolated middle frames ``[F - 2, C, H, W]``.

    The odd frames ``f`` that have a following frame are compared, as 8-bit images, with
    their prediction from ``f - 1`` and ``f + 1``
    (:func:`~msm_plugin.metrics.smoothness.interpolate_video`).
    """
    odd = np.arange(1, len(video) - 1, 2)
    error = np.abs(to_uint8(video[odd]).astype(np.float64) - to_uint8(predictions[odd - 1])).mean()
    return float((255.0 - error) / 255.0)


def dynamic_degree_proxy(videos, *, fps: float | None = None, flow=None) -> np.ndarray:
    """Per video VBench dynamic flag (1.0 or 0.0); its mean is the set's dynamic degree.

    Args:
        videos: ``[N, F, C, H, W]`` in [0, 1], ``F >= 2``.
        fps: the videos' frame rate, for VBench's frame sampling (None: every frame).
        flow: flow estimator (default Farneback).

    Returns:
        float64 array ``[N]`` of 0.0 / 1.0.

    >>> dynamic_degree_proxy(np.zeros((2, 4, 1, 16, 16)))
    array([0., 0.])
    """
    interval = sample_interval(fps)
    videos = as_videos(videos)
    estimator = as_flow_estimator(flow)
    _, _, _, height, width = videos.shape
    out = []
    for video in videos:
        sampled = video[::interval]
        peaks = peak_magnitude(estimator(sampled[:-1], sampled[1:])) if len(sampled) > 1 else np.zeros(0)
        out.append(float(video_is_dynamic(peaks, frames=len(sampled), height=height, width=width)))
    return np.array(out)


def is_static_proxy(videos, *, flow=None) -> np.ndarray:
    """Per video VBench static-filter verdict (bool ``[N]``); see the module docstring.

    >>> is_static_proxy(np.zeros((1, 3, 1, 16, 16)))
    array([ True])
    """
    videos = as_videos(videos)
    estimator = as_flow_estimator(flow)
    _, _, _, height, width = videos.shape
    out = []
    for video in videos:
        pairs = peak_magnitude(estimator(video[:-1], video[1:]))
        ends = peak_magnitude(estimator(video[[0, -1]], video[[-1, 0]]))
        out.append(video_is_static(pairs, ends, height=height, width=width))
    return np.array(out, dtype=bool)


def temporal_flickering_proxy(videos, *, flow=None) -> np.ndarray:
    """Per video flicker score, NaN for clips the static filter rejects (VBench scores static clips only).

    >>> x = np.zeros((1, 3, 1, 8, 8), np.float32); x[0, 1] = 51 / 255   # one frame 51 levels up
    >>> temporal_flickering_proxy(x)   # (255 - 51) / 255
    array([0.8])
    """
    videos = as_videos(videos)
    static = is_static_proxy(videos, flow=flow)
    return np.array([video_temporal_flickering(v) if keep else np.nan for v, keep in zip(videos, static)])


def motion_smoothness_proxy(videos, *, flow=None) -> np.ndarray:
    """Per video VBench-style motion smoothness with flow interpolation in place of AMT.

    Args:
        videos: ``[N, F, C, H, W]`` in [0, 1], ``F >= 3``.
        flow: flow estimator (default Farneback).

    Returns:
        float64 array ``[N]`` in [0, 1]; 1 when every odd frame is predicted exactly.

    >>> motion_smoothness_proxy(np.full((1, 3, 1, 8, 8), 0.5))
    array([1.])
    """
    videos = as_videos(videos, min_frames=3)
    estimator = as_flow_estimator(flow)
    return np.array([video_motion_smoothness(v, interpolate_video(v, skip_flows(v, estimator))) for v in videos])
