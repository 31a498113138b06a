"""Speed and acceleration distributions from temporal differences, and distances between them.

With ``D`` the difference along frames (the paper's ``D(y) = y[:, 1:] - y[:, :-1]``):

- speed sample ``v[n, f] = mean_{c,h,w} |(D x)[n, f]|`` (one per frame pair),
- acceleration sample ``a[n, f] = mean_{c,h,w} |(D^2 x)[n, f]|`` (one per frame triple).

A set of videos gives two 1-D empirical distributions; a generated set is compared with a
reference set through the 1-Wasserstein distance between them, which is in the same
units as the samples (mean absolute intensity change per frame) and is 0 only for equal
distributions.
"""

from __future__ import annotations

import numpy as np
import torch

from ._checks import as_videos
from .energy import motion_energy

__all__ = [
    "acceleration_samples",
    "distribution_summary",
    "speed_samples",
    "wasserstein_1d",
]


def speed_samples(videos) -> np.ndarray:
    """Per frame pair speed ``v[n, f] = mean_{c,h,w} |x[n, f+1] - x[n, f]|``.

    The same numbers as :func:`~msm_plugin.metrics.energy.motion_energy`, read as a
    distribution. Direction: descriptive; its distance to the reference is what to lower.

    Args:
        videos: ``[N, F, C, H, W]`` in [0, 1], ``F >= 2``.

    Returns:
        float64 array ``[N, F - 1]``.

    >>> x = np.array([0.0, 0.25, 0.5]).reshape(1, 3, 1, 1, 1)
    >>> speed_samples(x)
    array([[0.25, 0.25]])
    """
    return motion_energy(videos)


def acceleration_samples(videos) -> np.ndarray:
    """Per frame triple acceleration ``a[n, f] = mean_{c,h,w} |x[n, f+2] - 2 x[n, f+1] + x[n, f]|``.

    Zero for any video whose pixels change linearly in time (a fade, or a linear ramp
    sliding at constant velocity). Direction: lower means steadier motion; its distance
    to the reference is what to lower.

    Args:
        videos: ``[N, F, C, H, W]`` in [0, 1], ``F >= 3``.

    Returns:
        float64 array ``[N, F - 2]``.

    >>> x = np.array([0.0, 0.25, 0.75]).reshape(1, 3, 1, 1, 1)
    >>> acceleration_samples(x)
    array([[0.25]])
    """
    videos = as_videos(videos, min_frames=3)
    second = np.abs(videos[:, 2:] - 2 * videos[:, 1:-1] + videos[:, :-2])
    return second.mean(axis=(2, 3, 4), dtype=np.float64)  # n f c h w -> n f


def _as_samples(values, name: str) -> np.ndarray:
    if isinstance(values, torch.Tensor):
        values = values.detach().cpu().double().numpy()
    values = np.asarray(values, dtype=np.float64).ravel()
    if values.size == 0:
        raise ValueError(f"expected at least one sample in `{name}`, got none")
    if not np.isfinite(values).all():
        raise ValueError(f"expected finite samples in `{name}`, found NaN or inf")
    return values


def wasserstein_1d(samples_a, samples_b) -> float:
    """1-Wasserstein distance between two 1-D empirical distributions.

    ``W1(P, Q) = integral |F_P(t) - F_Q(t)| dt`` with ``F`` the empirical CDFs; computed
    exactly by integrating the CDF gap between consecutive pooled sample values. Sample
    counts may differ. Direction: lower is better, 0 for identical distributions.

    Args:
        samples_a: any array-like or tensor of samples (flattened).
        samples_b: idem.

    Returns:
        The distance as a Python float, in the units of the samples.

    >>> wasserstein_1d([0.0, 1.0], [0.5, 1.5])
    0.5
    """
    a = np.sort(_as_samples(samples_a, "samples_a"))
    b = np.sort(_as_samples(samples_b, "samples_b"))
    grid = np.concatenate([a, b])
    grid.sort(kind="mergesort")
    widths = np.diff(grid)
    # CDF value of each sample set on every interval [grid[i], grid[i+1]).
    cdf_a = np.searchsorted(a, grid[:-1], side="right") / a.size
    cdf_b = np.searchsorted(b, grid[:-1], side="right") / b.size
    return float(np.sum(np.abs(cdf_a - cdf_b) * widths))


def distribution_summary(samples, prefix: str) -> dict[str, float]:
    """Mean, standard deviation, median and 90th percentile of a sample set.

    Args:
        samples: array-like or tensor of samples (flattened).
        prefix: key prefix, e.g. ``"speed"`` gives ``speed_mean``, ``speed_std``,
            ``speed_p50``, ``speed_p90``.

    Returns:
        A dict of Python floats (``std`` is the population standard deviation).

    >>> distribution_summary([1.0, 3.0], "speed")["speed_mean"]
    2.0
    """
    values = _as_samples(samples, "samples")
    return {
        f"{prefix}_mean": float(values.mean()),
        f"{prefix}_std": float(values.std()),
        f"{prefix}_p50": float(np.percentile(values, 50)),
        f"{prefix}_p90": float(np.percentile(values, 90)),
    }
