"""Validation of video batches where they enter the metrics.

Every public metric accepts a batch of videos ``[N, F, C, H, W]`` (a torch tensor or a
NumPy array, values in [0, 1]) and funnels it through :func:`as_videos`, so that a wrong
shape, dtype or a NaN is reported once, with what was expected and what came.

The metrics compute in NumPy: nothing here is differentiated, OpenCV needs NumPy arrays
anyway, and on the 2-core CPU this package targets NumPy ran these small reductions 4 to
30 times faster than torch (measured on ``[64, 8, 3, 16, 16]`` and ``[16, 16, 3, 128, 128]``).
"""

from __future__ import annotations

import numpy as np
import torch

__all__ = ["as_videos"]


def as_videos(videos, *, name: str = "videos", min_frames: int = 2) -> np.ndarray:
    """Return ``videos`` as a C-contiguous float32 NumPy array ``[N, F, C, H, W]`` after checking it.

    Args:
        videos: torch tensor (any device, detached here) or NumPy array ``[N, F, C, H, W]``
            of floats, ``C`` in {1, 3}.
        name: what to call the argument in error messages.
        min_frames: smallest accepted ``F`` (2 for first differences, 3 for second ones).

    Returns:
        float32 array (no copy when ``videos`` already is one).

    Raises:
        TypeError: for anything that is not a floating point tensor or array.
        ValueError: for a wrong rank, channel count, too few frames, an empty batch or
            non-finite values.

    >>> as_videos(torch.zeros(2, 3, 1, 4, 4)).shape
    (2, 3, 1, 4, 4)
    """
    if isinstance(videos, torch.Tensor):
        # Integer frames (uint8 0..255) would silently be 255x too bright in every metric.
        if not videos.is_floating_point():
            raise TypeError(
                f"expected {name} as floating point values in [0, 1], got dtype {videos.dtype} "
                "(divide 8-bit frames by 255)"
            )
        videos = videos.detach().to(device="cpu", dtype=torch.float32).numpy()
    elif isinstance(videos, np.ndarray):
        if not np.issubdtype(videos.dtype, np.floating):
            raise TypeError(
                f"expected {name} as floating point values in [0, 1], got NumPy dtype {videos.dtype} "
                "(divide 8-bit frames by 255)"
            )
    else:
        raise TypeError(
            f"expected {name} as a torch.Tensor or numpy.ndarray [N, F, C, H, W], "
            f"got {type(videos).__name__}"
        )
    if videos.ndim != 5:
        raise ValueError(f"expected {name} as a batch [N, F, C, H, W], got shape {tuple(videos.shape)}")
    n, f, c, h, w = videos.shape
    if n < 1:
        raise ValueError(f"expected at least one video in {name}, got shape {tuple(videos.shape)}")
    if c not in (1, 3):
        raise ValueError(
            f"expected {name} with C = 1 or 3 channels [N, F, C, H, W], got shape {tuple(videos.shape)}"
        )
    if f < min_frames:
        raise ValueError(
            f"expected {name} [N, F, C, H, W] with F >= {min_frames} frames, got shape {tuple(videos.shape)}"
        )
    if h < 1 or w < 1:
        raise ValueError(f"expected {name} with non-empty frames, got shape {tuple(videos.shape)}")
    videos = np.ascontiguousarray(videos, dtype=np.float32)
    if not np.isfinite(videos).all():
        raise ValueError(f"expected finite values in {name}, found NaN or inf")
    return videos
