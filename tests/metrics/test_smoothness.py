import numpy as np
import pytest
import torch

from msm_plugin.metrics.smoothness import smoothness_error


class TestSmoothness:
    def test_static_and_linear_fade_are_perfectly_smooth(self):
        static = torch.full((1, 4, 3, 4, 4), 0.3)
        fade = (0.1 * torch.arange(4.0)).view(1, 4, 1, 1, 1).expand(1, 4, 3, 4, 4)
        assert smoothness_error(static).tolist() == [0.0]
        assert smoothness_error(fade)[0] == pytest.approx(0.0, abs=1e-6)

    def test_alternating_frames_score_one(self):
        # x = a, b, a, b: each middle frame differs from its neighbours' mean by |a - b|, as does holding.
        x = torch.tensor([0.2, 0.6, 0.2, 0.6]).view(1, 4, 1, 1, 1)
        assert smoothness_error(x)[0] == pytest.approx(1.0)

    def test_independent_gaussian_frames_score_about_0_87(self, rng):
        # E|x - (y + z)/2| / E|x - y| = sqrt(1.5) / sqrt(2) for i.i.d. Gaussian x, y, z.
        x = 0.5 + 0.05 * rng.standard_normal((1, 40, 3, 32, 32))
        assert smoothness_error(x)[0] == pytest.approx(np.sqrt(0.75), abs=0.01)

    def test_shuffling_frames_worsens_smoothness(self, drifting_blobs, rng):
        videos = drifting_blobs(8, seed=1)
        shuffled = videos[:, rng.permutation(8)]
        assert np.all(smoothness_error(shuffled) > smoothness_error(videos) + 0.2)

    def test_needs_three_frames(self):
        with pytest.raises(ValueError, match=r"F >= 3 frames"):
            smoothness_error(torch.zeros(1, 2, 3, 4, 4))
