"""Constructed videos whose motion is known, for the metrics tests."""

import cv2
import numpy as np
import pytest


def _texture(rng, size: int, sigma: float = 1.0) -> np.ndarray:
    """A smooth random texture in [0, 1], ``[size, size]``."""
    tex = cv2.GaussianBlur(rng.random((size, size)), (0, 0), sigma)
    return (tex - tex.min()) / (tex.max() - tex.min())


@pytest.fixture
def rng():
    return np.random.default_rng(0)


@pytest.fixture
def moving_square(rng):
    """``make(xs, ys=None)``: a 24 px textured square on grey at column xs[f] (row ys[f]) in frame f.

    Returns ``[1, F, 3, 64, 64]`` float32; the square's velocity is the difference of its positions.
    """
    tex = _texture(rng, 24)

    def make(xs, ys=None, size=64):
        ys = [20] * len(xs) if ys is None else ys
        out = np.full((1, len(xs), 3, size, size), 0.5, np.float32)
        for f, (x0, y0) in enumerate(zip(xs, ys)):
            out[0, f, :, y0 : y0 + 24, x0 : x0 + 24] = tex
        return out

    return make


@pytest.fixture
def drifting_blobs():
    """``make(n, seed)``: n videos of 8 frames 24x24x3, a Gaussian blob drifting 0.5 px/frame.

    Smooth background, random start and one of four directions: the toy data's regime
    (motion much smaller than the texture scale, so pixels change almost linearly in time).
    """

    def make(n, seed, frames=8, size=24):
        local = np.random.default_rng(seed)
        yy, xx = np.mgrid[0:size, 0:size].astype(np.float64)
        out = np.empty((n, frames, 3, size, size), np.float32)
        for i in range(n):
            background = cv2.resize(local.random((4, 4, 3)), (size, size), interpolation=cv2.INTER_CUBIC)
            background = np.clip(background, 0, 1) * 0.5
            colour = local.random(3) * 0.5 + 0.5
            cy, cx = local.uniform(8, 16, size=2)
            dy, dx = [(0, 0.5), (0, -0.5), (0.5, 0), (-0.5, 0)][local.integers(4)]
            for f in range(frames):
                blob = np.exp(-((yy - cy - dy * f) ** 2 + (xx - cx - dx * f) ** 2) / (2 * 2.5**2))
                out[i, f] = np.clip(background + blob[..., None] * colour, 0, 1).transpose(2, 0, 1)
        return out

    return make
