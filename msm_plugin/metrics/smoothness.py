"""Temporal smoothness: how well a frame is predicted by the mean of its two neighbours.

With ``e[n, f] = mean_{c,h,w} |x[n, f] - (x[n, f-1] + x[n, f+1]) / 2|`` (``f = 1 .. F-2``),
the error of the neighbour-mean predictor, and ``h[n, f] = mean_{c,h,w} |x[n, f+1] - x[n, f]|``
(``f = 0 .. F-2``), the error of simply holding the previous frame, the smoothness error of a
video is

    S[n] = mean_f e[n, f] / mean_f h[n, f]      (S[n] = 0 when all frames are equal).

Since ``x[f] - (x[f-1] + x[f+1]) / 2 = -D^2 x / 2``, the numerator is half the acceleration
of :mod:`~msm_plugin.metrics.kinematics`; dividing by the amount of motion makes ``S``
independent of how much the video moves: 0 for motion linear in time, about 0.87 for
independent Gaussian frames, 1 for a video that alternates between two frames. Direction:
lower is smoother; compare with the reference.

Pixel intensities change linearly in time only while objects move less than their texture
scale per frame (smooth content, sub-pixel to few-pixel motion, as in latent-decoded
video and the toy data). A sharp texture jumping several pixels per frame scores near
0.8 even at constant velocity; for such videos read ``flow_accel`` from
:mod:`~msm_plugin.metrics.flow` instead.
"""

from __future__ import annotations

import numpy as np

from ._checks import as_videos

__all__ = ["smoothness_error"]


def smoothness_error(videos) -> np.ndarray:
    """Per video smoothness error ``S[n]`` (see the module docstring).

    Args:
        videos: ``[N, F, C, H, W]`` in [0, 1], ``F >= 3``.

    Returns:
        float64 array ``[N]``, each value >= 0.

    >>> x = np.array([0.0, 0.25, 0.5, 0.5]).reshape(1, 4, 1, 1, 1)
    >>> smoothness_error(x)
    array([0.375])
    """
    videos = as_videos(videos, min_frames=3)
    middle = videos[:, 1:-1]
    neighbour_mean = (videos[:, :-2] + videos[:, 2:]) / 2
    predict = np.abs(middle - neighbour_mean).mean(axis=(1, 2, 3, 4), dtype=np.float64)
    # Every pair, not only those next to a middle frame: a jump into the last frame counts.
    hold = np.abs(videos[:, 1:] - videos[:, :-1]).mean(axis=(1, 2, 3, 4), dtype=np.float64)
    moving = hold > 0
    return np.divide(predict, hold, out=np.zeros_like(hold), where=moving)
