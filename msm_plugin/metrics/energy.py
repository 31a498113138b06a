"""Motion energy, appearance energy and their ratio (the paper's eq. 7).

The paper argues that frame-to-frame change is tiny next to the frames themselves
(eq. 7: ``mean_f ||x^{f+1} - x^f|| <<< mean_f ||x^f||``), which is why a distribution
matching loss on whole videos hears little about motion. These functions measure both
sides of that inequality on a batch of videos ``[N, F, C, H, W]`` in [0, 1], using the
mean absolute value per element as the norm so that numbers do not grow with resolution.
"""

from __future__ import annotations

import numpy as np

from ._checks import as_videos

__all__ = [
    "DEFAULT_STATIC_THRESHOLD",
    "appearance_energy",
    "energy_ratio",
    "motion_energy",
    "ratio_of_means",
    "static_fraction",
    "static_share",
]

# Half an 8-bit grey level: far above what H.264 leaves on a still shot (< 1e-5 measured on
# 64 px textures), far below slow motion (the toy's 0.5 px/frame blob gives about 0.006).
DEFAULT_STATIC_THRESHOLD = 0.5 / 255


def motion_energy(videos) -> np.ndarray:
    """Per frame pair motion energy ``E_m[n, f] = mean_{c,h,w} |x[n, f+1] - x[n, f]|``.

    Direction: descriptive; closer to the reference is better (0 means a frozen video).

    Args:
        videos: ``[N, F, C, H, W]`` in [0, 1], ``F >= 2``.

    Returns:
        float64 array ``[N, F - 1]``.

    >>> x = np.zeros((1, 3, 1, 2, 2), np.float32); x[0, 1] = 0.5; x[0, 2] = 1.0
    >>> motion_energy(x)
    array([[0.5, 0.5]])
    """
    videos = as_videos(videos)
    step = np.abs(videos[:, 1:] - videos[:, :-1])
    return step.mean(axis=(2, 3, 4), dtype=np.float64)  # n f c h w -> n f


def appearance_energy(videos) -> np.ndarray:
    """Per frame appearance energy ``E_a[n, f] = mean_{c,h,w} |x[n, f]|``.

    Direction: descriptive (the brightness scale that motion energy is compared against).

    Args:
        videos: ``[N, F, C, H, W]`` in [0, 1], ``F >= 2``.

    Returns:
        float64 array ``[N, F]``.

    >>> appearance_energy(np.full((1, 2, 3, 2, 2), 0.25))
    array([[0.25, 0.25]])
    """
    videos = as_videos(videos)
    return np.abs(videos).mean(axis=(2, 3, 4), dtype=np.float64)  # n f c h w -> n f


def energy_ratio(videos) -> float:
    """Ratio of motion to appearance energy over a set, the two sides of eq. 7.

    ``rho = mean_{n,f} E_m[n, f] / mean_{n,f} E_a[n, f]``, a ratio of set means so that a
    single black video cannot blow it up. An all-black set (zero appearance) gives 0.

    Direction: descriptive; closer to the reference is better. The paper's regime is
    ``rho << 1`` (the toy data sits near 1/37).

    Args:
        videos: ``[N, F, C, H, W]`` in [0, 1], ``F >= 2``.

    Returns:
        The ratio as a Python float.

    >>> x = np.full((1, 2, 1, 2, 2), 0.5); x[0, 1] = 0.7
    >>> round(energy_ratio(x), 6)
    0.333333
    """
    return ratio_of_means(motion_energy(videos), appearance_energy(videos))


def ratio_of_means(motion: np.ndarray, appearance: np.ndarray) -> float:
    """``mean(motion) / mean(appearance)``, 0 when the appearance is all black.

    The arithmetic of :func:`energy_ratio` on energies already computed (``[N, F - 1]`` and
    ``[N, F]``), so a caller that has them does not read the videos again.

    >>> ratio_of_means(np.array([[0.1]]), np.array([[0.2, 0.6]]))
    0.25
    """
    mean_appearance = float(appearance.mean())
    return float(motion.mean()) / mean_appearance if mean_appearance > 0 else 0.0


def static_fraction(videos, threshold: float = DEFAULT_STATIC_THRESHOLD) -> float:
    """Share of near-static videos: ``mean_n [ mean_f E_m[n, f] < threshold ]``.

    Direction: lower is better for a generator meant to move (a frozen student shows up
    here first); compare with the reference's own share.

    Args:
        videos: ``[N, F, C, H, W]`` in [0, 1], ``F >= 2``.
        threshold: mean absolute frame change below which a video counts as static;
            the default is half an 8-bit grey level.

    Returns:
        A float in [0, 1].

    >>> x = np.zeros((2, 3, 1, 4, 4)); x[1, 1:] = 1.0
    >>> static_fraction(x)
    0.5
    """
    if not threshold > 0:
        raise ValueError(f"`threshold` should be positive, got {threshold}")
    return static_share(motion_energy(videos), threshold)


def static_share(motion: np.ndarray, threshold: float) -> float:
    """The arithmetic of :func:`static_fraction` on motion energies ``[N, F - 1]`` already computed.

    >>> static_share(np.array([[0.0, 0.0], [0.1, 0.3]]), 0.01)
    0.5
    """
    return float((motion.mean(axis=1) < threshold).mean())
