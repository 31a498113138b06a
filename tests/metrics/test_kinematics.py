import numpy as np
import pytest
import torch
from scipy.stats import wasserstein_distance

from msm_plugin.metrics.kinematics import (
    acceleration_samples,
    distribution_summary,
    speed_samples,
    wasserstein_1d,
)


class TestSpeedAcceleration:
    def test_sliding_linear_ramp_has_constant_speed_and_zero_acceleration(self):
        # x(h, w, f) = 1/4 + (w - 2 f)/128: a ramp sliding 2 px/frame; every pixel falls 1/64 per frame.
        # Multiples of 1/128 below 1 are exact in float32 and their differences and sums here are
        # too, so the answer is exact whatever the CPU's kernels (FMA or not, any reduction order).
        w = torch.arange(32.0)
        frames = torch.stack([0.25 + (w - 2 * f) / 128 for f in range(6)])
        x = frames.view(1, 6, 1, 1, 32).expand(1, 6, 3, 16, 32)
        np.testing.assert_array_equal(speed_samples(x), np.full((1, 5), 1 / 64))
        np.testing.assert_array_equal(acceleration_samples(x), np.zeros((1, 4)))

    def test_quadratic_fade_acceleration(self):
        # x[f] = 0.01 f^2: first differences 0.01 (2f + 1), second differences 0.02.
        x = (0.01 * torch.arange(5.0) ** 2).view(1, 5, 1, 1, 1).expand(1, 5, 3, 4, 4)
        np.testing.assert_allclose(speed_samples(x), [[0.01, 0.03, 0.05, 0.07]], rtol=1e-5)
        np.testing.assert_allclose(acceleration_samples(x), [[0.02, 0.02, 0.02]], rtol=1e-4)

    def test_acceleration_needs_three_frames(self):
        with pytest.raises(ValueError, match=r"F >= 3 frames, got shape \(1, 2, 3, 4, 4\)"):
            acceleration_samples(torch.zeros(1, 2, 3, 4, 4))


class TestWasserstein:
    def test_hand_computed(self):
        # Shift by 0.5 moves every unit of mass 0.5; {0, 1} vs {0, 0, 3}: integral of the CDF gap
        # = |1/2 - 2/3| * 1 + |1 - 2/3| * 2 = 1/6 + 2/3.
        assert wasserstein_1d([0.0, 1.0], [0.5, 1.5]) == pytest.approx(0.5)
        assert wasserstein_1d([0.0, 1.0], [0.0, 0.0, 3.0]) == pytest.approx(1 / 6 + 2 / 3)

    def test_identical_and_permuted_sets_give_zero(self, rng):
        a = rng.random(50)
        assert wasserstein_1d(a, a[::-1]) == 0.0

    def test_matches_scipy(self, rng):
        for _ in range(5):
            a = rng.normal(size=rng.integers(1, 40))
            b = rng.normal(1.0, 2.0, size=rng.integers(1, 40))
            assert wasserstein_1d(a, b) == pytest.approx(wasserstein_distance(a, b), rel=1e-12)
            assert wasserstein_1d(torch.from_numpy(a), b) == pytest.approx(wasserstein_1d(b, a), rel=1e-12)

    def test_empty(self):
        with pytest.raises(ValueError, match="expected at least one sample in `samples_b`, got none"):
            wasserstein_1d([1.0], [])

    def test_non_finite(self):
        with pytest.raises(ValueError, match="expected finite samples in `samples_a`, found NaN or inf"):
            wasserstein_1d([np.inf], [1.0])


def test_distribution_summary_hand_computed():
    summary = distribution_summary(np.arange(11.0), "speed")
    assert summary == pytest.approx({"speed_mean": 5.0, "speed_std": np.sqrt(10.0), "speed_p50": 5.0, "speed_p90": 9.0})
