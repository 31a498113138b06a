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


def hybrid_weights_reference(g, last_frames, *, mix=0.7, base=1.2, counted=None):
    """DiagDistill's per-pair weights ``[B, K]``, written out with loops over samples and pairs;
    entries where ``counted`` is 0 add nothing to the error."""
    b, k = g.shape[:2]
    m = np.ones_like(g) if counted is None else np.broadcast_to(counted, g.shape)
    w = np.zeros((b, k))
    exponential = np.array([base**j for j in range(k)])
    exponential = exponential / exponential.mean()
    for i in range(b):
        error = [np.mean(m[i, j] * (g[i, j] - last_frames[i, j]) ** 2) for j in range(k)]
        total = max(sum(error), 1e-6)
        for j in range(k):
            w[i, j] = mix * (1 + sum(error[: j + 1]) / total) + (1 - mix) * exponential[j]
    return w


def weighted_msm_reference(x, real, fake, *, mix=0.7, base=1.2, normalization="motion", counted=None, order=1, smoothing=False):
    """(loss, dloss/dx, w) of MSM with DiagDistill's per-pair weights ``w``: the loss
    ``0.5 * sum(w g^2) / N`` and the gradient ``M^T (w g) / N``, ``M`` an explicit matrix; the
    error of entry k compares ``g_k`` with frame ``k + r``, the last frame the entry reads."""
    x, real, fake = (np.asarray(a, dtype=np.float64) for a in (x, real, fake))
    d = motion_matrix(x.shape[1], order, smoothing)
    reach = x.shape[1] - d.shape[0]
    dx, dr, df = apply_frames(d, x), apply_frames(d, real), apply_frames(d, fake)
    m = np.ones_like(dx) if counted is None else np.broadcast_to(np.asarray(counted, dtype=np.float64), dx.shape)
    if normalization == "motion":
        n = np.array([(np.abs(dx[i] - dr[i]) * m[i]).sum() / max(m[i].sum(), 1) for i in range(x.shape[0])])
    else:
        n = np.ones(x.shape[0])
    g = m * (df - dr) / n.reshape(-1, 1, 1, 1, 1)
    w = hybrid_weights_reference(g, x[:, reach:], mix=mix, base=base, counted=m)
    wg = w.reshape(*w.shape, 1, 1, 1) * g
    count = m.sum()
    return 0.5 * (g * wg).sum() / count, apply_frames(d.T, wg) / count, w


def temporal_variance_reference(x, *, eps=1e-6, frames=None):
    """(v, -log(v + eps), d(-log(v + eps))/dx) in float64, with a loop over samples.

    ``v`` is the mean over counted samples (those with >= 2 counted frames) of the mean over
    (C, H, W) of the population variance over the sample's counted frames; the gradient of the
    variance of n values w.r.t. value i is 2 (x_i - mean) / n.
    """
    x = np.asarray(x, dtype=np.float64)
    b, f = x.shape[:2]
    per_frame = int(np.prod(x.shape[2:]))
    kept = [i for i in range(b) if frames is None or np.sum(frames[i]) >= 2]
    indices = {i: (np.arange(f) if frames is None else np.flatnonzero(frames[i])) for i in kept}
    variances = []
    for i in kept:
        clip = x[i, indices[i]]
        variances.append(np.mean((clip - clip.mean(axis=0)) ** 2))
    v = float(np.mean(variances))
    grad = np.zeros_like(x)
    for i in kept:
        clip = x[i, indices[i]]
        dv = 2 * (clip - clip.mean(axis=0)) / (len(indices[i]) * per_frame * len(kept))
        grad[i, indices[i]] = -dv / (v + eps)
    return v, -np.log(v + eps), grad
