"""Fréchet distance between two feature sets, each summarised by a Gaussian.

    FD = ||mu_a - mu_b||^2 + tr(S_a + S_b - 2 (S_a^{1/2} S_b S_a^{1/2})^{1/2})

(the formula behind FID/FVD). For given covariances the matrix square roots are taken on
symmetric positive semi-definite matrices by eigen-decomposition with negative round-off
eigenvalues set to 0, which stays real where a general ``sqrtm(S_a S_b)`` can return complex
noise.

For two sample sets the cross term needs no square root at all. With centred samples
``A [N_a, D]``, ``B [N_b, D]`` and ``S = X^T X / (N - 1)``, the non-zero eigenvalues of
``S_a S_b`` are the squared singular values of ``A B^T / sqrt((N_a - 1)(N_b - 1))``, so

    tr (S_a^{1/2} S_b S_a^{1/2})^{1/2} = ||R_a R_b^T||_* / sqrt((N_a - 1)(N_b - 1))

with ``R`` the triangular factor of a thin QR (``A = Q_a R_a``) and ``||.||_*`` the nuclear
norm. Singular values are backward stable, so this is accurate to round-off even when there
are fewer samples than dimensions, where the eigenvalue route takes square roots of
round-off eigenvalues (~sqrt(eps) each) and loses half the digits. It is symmetric in the
two sets: swapping them transposes the matrix, whose singular values are the same.
"""

from __future__ import annotations

import numpy as np
import torch

__all__ = ["frechet_distance", "gaussian_frechet_distance"]


def _as_features(features, name: str) -> np.ndarray:
    if isinstance(features, torch.Tensor):
        features = features.detach().cpu().double().numpy()
    elif not isinstance(features, np.ndarray):
        raise TypeError(f"expected `{name}` as a torch.Tensor or numpy.ndarray [N, D], got {type(features).__name__}")
    if features.ndim != 2:
        raise ValueError(f"expected `{name}` of shape [N, D], got shape {features.shape}")
    if features.shape[0] < 2:
        raise ValueError(f"expected at least 2 samples in `{name}` to estimate a covariance, got shape {features.shape}")
    features = features.astype(np.float64)
    if not np.isfinite(features).all():
        raise ValueError(f"expected finite values in `{name}`, found NaN or inf")
    return features


def _centred_factor(features: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Mean ``[D]`` and ``R / sqrt(N - 1)`` with ``R`` from the thin QR of the centred samples.

    ``R^T R / (N - 1)`` is the unbiased covariance; ``R`` has ``min(N, D)`` rows, so the
    cross term costs ``O(min(N, D)^2 D)`` whatever the sample count.
    """
    mean = features.mean(axis=0)
    factor = np.linalg.qr(features - mean, mode="r")
    return mean, factor / np.sqrt(features.shape[0] - 1)


def _psd_sqrt(matrix: np.ndarray) -> np.ndarray:
    values, vectors = np.linalg.eigh((matrix + matrix.T) / 2)
    return (vectors * np.sqrt(np.clip(values, 0.0, None))) @ vectors.T


def gaussian_frechet_distance(mu_a, cov_a, mu_b, cov_b) -> float:
    """Fréchet (2-Wasserstein squared) distance between ``N(mu_a, cov_a)`` and ``N(mu_b, cov_b)``.

    Args:
        mu_a: mean ``[D]``.
        cov_a: covariance ``[D, D]`` (symmetric positive semi-definite).
        mu_b: mean ``[D]``.
        cov_b: covariance ``[D, D]``.

    Returns:
        The distance (>= 0) as a Python float. Direction: lower is better.

    >>> gaussian_frechet_distance([0.0], [[1.0]], [3.0], [[4.0]])  # (0-3)^2 + (1-2)^2
    10.0
    """
    mu_a, mu_b = np.atleast_1d(np.asarray(mu_a, np.float64)), np.atleast_1d(np.asarray(mu_b, np.float64))
    cov_a, cov_b = np.atleast_2d(np.asarray(cov_a, np.float64)), np.atleast_2d(np.asarray(cov_b, np.float64))
    d = mu_a.shape[0]
    if mu_a.shape != (d,) or mu_b.shape != (d,) or cov_a.shape != (d, d) or cov_b.shape != (d, d):
        raise ValueError(
            f"expected means [D] and covariances [D, D] of one size D, got {mu_a.shape}, "
            f"{cov_a.shape}, {mu_b.shape}, {cov_b.shape}"
        )
    root_a = _psd_sqrt(cov_a)
    cross = np.linalg.eigvalsh(root_a @ cov_b @ root_a)
    trace_cross = np.sqrt(np.clip(cross, 0.0, None)).sum()
    distance = np.sum((mu_a - mu_b) ** 2) + np.trace(cov_a) + np.trace(cov_b) - 2.0 * trace_cross
    # Round-off can leave -1e-17 for identical sets; a distance is never negative.
    return float(max(distance, 0.0))


def frechet_distance(feat_a, feat_b) -> float:
    """Fréchet distance between two feature sets ``[N_a, D]`` and ``[N_b, D]``.

    Each set is summarised by its mean and unbiased covariance (``N - 1``); the
    cross term is the nuclear norm of the scaled QR factors' product (module docstring),
    exact to round-off also with fewer samples than dimensions. Identical sets give 0.
    Direction: lower is better (generated features closer to the reference's).

    Args:
        feat_a: tensor or array ``[N_a, D]``, ``N_a >= 2``.
        feat_b: tensor or array ``[N_b, D]``, ``N_b >= 2``, same ``D``.

    Returns:
        The distance as a Python float.

    >>> frechet_distance(torch.tensor([[0.0], [2.0]]), torch.tensor([[1.0], [3.0]]))
    1.0
    """
    a = _as_features(feat_a, "feat_a")
    b = _as_features(feat_b, "feat_b")
    if a.shape[1] != b.shape[1]:
        raise ValueError(f"expected feature sets with the same dimension D, got {a.shape} and {b.shape}")
    mu_a, r_a = _centred_factor(a)
    mu_b, r_b = _centred_factor(b)
    trace_cross = np.linalg.svd(r_a @ r_b.T, compute_uv=False).sum()
    distance = np.sum((mu_a - mu_b) ** 2) + np.sum(r_a**2) + np.sum(r_b**2) - 2.0 * trace_cross
    return float(max(distance, 0.0))
