"""An independent NumPy reference for MSM: explicit difference matrices, no torch slicing.

The motion score of order k is the matrix ``D_k`` (``(F - k) x F``) applied along frames; the
MSM gradient w.r.t. the generated video is ``D_k^T g / N`` (the paper's eq. 11 as a loss). With
frame smoothing the operator is ``D_k S``, ``S`` the ``(F - 2) x F`` matrix of [1, 2, 1] / 4 rows.
"""

from __future__ import annotations

import numpy as np


def difference_matrix(frames: int, order: int) -> np.ndarray:
    d = np.eye(frames)
    for _ in range(order):
        n = d.shape[0]
        step = np.zeros((n - 1, n))
        for i in range(n - 1):
            step[i, i], step[i, i + 1] = -1.0, 1.0
        d = step @ d
    return d


def smoothing_matrix(frames: int) -> np.ndarray:
    s = np.zeros((frames - 2, frames))
    for i in range(frames - 2):
        s[i, i], s[i, i + 1], s[i, i + 2] = 0.25, 0.5, 0.25
    return s


def motion_matrix(frames: int, order: int, smoothing: bool = False) -> np.ndarray:
    """``D_k`` or ``D_k S`` as one explicit matrix."""
    if not smoothing:
        return difference_matrix(frames, order)
    return difference_matrix(frames - 2, order) @ smoothing_matrix(frames)


def apply_frames(mat: np.ndarray, y: np.ndarray) -> np.ndarray:
    """Apply ``mat`` along axis 1 of ``y`` [B, F, ...]."""
    return np.einsum("gf,bf...->bg...", mat, y)


def msm_reference(x, real, fake, *, normalization="motion", order=1, counted=None, smoothing=False):
    """Return (loss, dloss/dx) of MSM in float64; ``counted`` is a 0/1 array shaped like D x."""
    x, real, fake = (np.asarray(a, dtype=np.float64) for a in (x, real, fake))
    d = motion_matrix(x.shape[1], order, smoothing)
    dx, dr, df = apply_frames(d, x), apply_frames(d, real), apply_frames(d, fake)
    w = np.ones_like(dx) if counted is None else np.broadcast_to(np.asarray(counted, dtype=np.float64), dx.shape)
    b = x.shape[0]
    if normalization == "motion":
        n = np.array([(np.abs(dx[i] - dr[i]) * w[i]).sum() / max(w[i].sum(), 1) for i in range(b)])
    elif normalization == "dmd":
        n = np.array([np.abs(x[i] - real[i]).mean() for i in range(b)])
    else:
        n = np.ones(b)
    with np.errstate(divide="ignore", invalid="ignore"):
        g = np.where(w > 0, (df - dr) / n.reshape(-1, *([1] * (dx.ndim - 1))), 0.0)
    count = w.sum()
    loss = 0.5 * (g**2).sum() / count
    grad = apply_frames(d.T, g) / count
    return loss, grad
