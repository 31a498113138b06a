import numpy as np
import pytest
import torch

from msm_plugin.metrics.smoothness import interpolate_middle, smoothness_error


class TestSmoothness:
    def test_still_video_is_perfectly_smooth(self):
        assert smoothness_error(torch.full((1, 4, 3, 8, 8), 0.3)).tolist() == [0.0]

    @pytest.mark.parametrize("speed", [1, 2, 3])
    def test_constant_velocity_scores_near_zero_whatever_the_speed(self, moving_square, speed):
        # Measured 4e-6 .. 1e-5: the flow inside the square is exact to ~0.01 px, the background
        # is flat. The pixel version scored ~0.9 here.
        assert smoothness_error(moving_square([4 + speed * f for f in range(8)]))[0] < 1e-3

    def test_sub_pixel_drift_on_tiny_frames_is_a_known_limit(self, drifting_blobs, rng):
        # 0.5 px/frame on 24 px frames: Farneback on 8-bit grey frames cannot resolve it well,
        # measured 0.24 .. 0.30 (a zero flow gives 0.13). Still far from shuffled frames.
        videos = drifting_blobs(4, seed=1)
        smooth = smoothness_error(videos)
        assert np.all(smooth < 0.4)
        assert np.all(smoothness_error(videos[:, rng.permutation(8)]) > smooth + 0.2)

    def test_constant_acceleration_is_not_smooth(self, moving_square):
        # Speeds 1 .. 7 px/frame: interpolating halfway misplaces the square by a / 2 = 0.5 px;
        # measured 0.63.
        assert smoothness_error(moving_square([4, 5, 7, 10, 14, 19, 25, 32]))[0] > 0.3

    def test_flicker_scores_one(self, moving_square):
        # Brightness a, b, a, b on a still scene: no flow, x_hat[f] = the neighbours, which differ
        # from x[f] exactly as much as holding the previous frame does.
        flicker = moving_square([4] * 6)
        flicker[0, 1::2] *= 0.8
        assert smoothness_error(flicker)[0] == pytest.approx(1.0, abs=1e-6)

    def test_shuffled_frames_are_not_smooth(self, moving_square, rng):
        videos = moving_square([4 + 2 * f for f in range(8)])
        # Measured 0.84 for this permutation; any order that breaks the motion scores far from 0.
        assert smoothness_error(videos[:, [3, 0, 6, 2, 7, 1, 5, 4]])[0] > 0.5

    def test_needs_three_frames(self):
        with pytest.raises(ValueError, match=r"F >= 3 frames"):
            smoothness_error(torch.zeros(1, 2, 3, 4, 4))


class TestInterpolateMiddle:
    def test_translated_ramp_is_exact_inside(self):
        # A ramp moved 4 px between the outer frames: the middle frame is the ramp moved 2 px.
        ramp = np.tile(np.arange(16.0, dtype=np.float32), (2, 4, 1))
        middle = interpolate_middle(ramp, ramp - 4.0, np.full((4, 16, 2), [4.0, 0.0], np.float32))
        np.testing.assert_allclose(middle[:, :, 4:12], ramp[:, :, 4:12] - 2.0, rtol=1e-6)
