import numpy as np
import pytest
import torch

from msm_plugin.metrics.energy import (
    DEFAULT_STATIC_THRESHOLD,
    appearance_energy,
    energy_ratio,
    motion_energy,
    static_fraction,
)


class TestMotionEnergy:
    def test_static_video_has_zero_motion(self, rng):
        frame = rng.random((3, 16, 16)).astype(np.float32)
        videos = np.broadcast_to(frame, (2, 5, 3, 16, 16))
        assert motion_energy(videos).shape == (2, 4)
        assert np.all(motion_energy(videos) == 0.0)
        assert energy_ratio(videos) == 0.0
        assert static_fraction(videos) == 1.0

    def test_hand_computed(self):
        # One pixel of one channel of 2 x 2 x 3 = 12 values changes by 0.6, then by -0.3.
        x = torch.zeros(1, 3, 3, 2, 2)
        x[0, 1, 2, 1, 0] = 0.6
        x[0, 2, 2, 1, 0] = 0.3
        np.testing.assert_allclose(motion_energy(x), [[0.6 / 12, 0.3 / 12]], rtol=1e-6)
        np.testing.assert_allclose(appearance_energy(x), [[0.0, 0.6 / 12, 0.3 / 12]], rtol=1e-6)

    def test_eq7_ratio_hand_computed(self):
        # Frames 0.2, 0.3, 0.5 everywhere: motion (0.1 + 0.2) / 2, appearance (0.2 + 0.3 + 0.5) / 3.
        x = torch.tensor([0.2, 0.3, 0.5]).view(1, 3, 1, 1, 1).expand(1, 3, 3, 4, 4)
        assert energy_ratio(x) == pytest.approx(0.15 / (1.0 / 3), rel=1e-6)

    def test_black_set_ratio_is_zero(self):
        assert energy_ratio(torch.zeros(1, 2, 1, 2, 2)) == 0.0


class TestStaticFraction:
    def test_threshold_splits_videos(self):
        x = torch.zeros(4, 3, 1, 4, 4)
        for i, step in enumerate([0.0, 0.5 * DEFAULT_STATIC_THRESHOLD, 2 * DEFAULT_STATIC_THRESHOLD, 0.1]):
            x[i] = torch.arange(3.0).view(3, 1, 1, 1) * step
        assert static_fraction(x) == 0.5
        assert static_fraction(x, threshold=0.2) == 1.0

    @pytest.mark.parametrize("bad", [0.0, -1.0, float("nan")])
    def test_threshold_must_be_positive(self, bad):
        with pytest.raises(ValueError, match="`threshold` should be positive, got"):
            static_fraction(torch.zeros(1, 2, 1, 2, 2), threshold=bad)
