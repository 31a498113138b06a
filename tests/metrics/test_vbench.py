import numpy as np
import pytest

from msm_plugin.metrics.vbench import (
    dynamic_degree_proxy,
    is_static_proxy,
    motion_smoothness_proxy,
    sample_interval,
    temporal_flickering_proxy,
    video_is_dynamic,
    video_is_static,
)


class TestDynamicDegree:
    @pytest.mark.parametrize(("fps", "step"), [(None, 1), (4, 1), (8, 1), (16, 2), (20, 2), (24, 3), (30, 4)])
    def test_sample_interval(self, fps, step):
        # VBench: max(1, round(fps / 8)), Python's round (20 / 8 = 2.5 -> 2).
        assert sample_interval(fps) == step

    def test_bad_fps(self):
        with pytest.raises(ValueError, match="`fps` should be a positive number or None, got 0"):
            sample_interval(0)

    def test_count_rule(self):
        # 16 sampled frames need round(4 * 16 / 16) = 4 pairs above 6 px at 256 px.
        three = np.array([7.0] * 3 + [0.0] * 12)
        assert not video_is_dynamic(three, frames=16, height=256, width=512)
        four = np.array([7.0] * 4 + [0.0] * 11)
        assert video_is_dynamic(four, frames=16, height=256, width=512)
        # The threshold scales with the short side: 3 px at 128 px.
        assert video_is_dynamic(np.array([3.5] * 4), frames=5, height=128, width=128)
        assert not video_is_dynamic(np.array([2.5] * 4), frames=5, height=128, width=128)

    def test_square_moving_and_still(self, moving_square):
        # 3 px/frame on 64 px frames passes 6 * 64 / 256 = 1.5 px; a still square does not.
        videos = np.concatenate([moving_square([4 + 3 * f for f in range(6)]), moving_square([4] * 6)])
        np.testing.assert_array_equal(dynamic_degree_proxy(videos), [1.0, 0.0])

    def test_frame_sampling_follows_fps(self, moving_square):
        # 1 px/frame is below 1.5 px; at 24 fps every third frame is kept: 3 px per sampled pair.
        video = moving_square([4 + f for f in range(10)])
        assert dynamic_degree_proxy(video).tolist() == [0.0]
        assert dynamic_degree_proxy(video, fps=24).tolist() == [1.0]


class TestStaticFilter:
    def test_rule(self):
        # 16 frames: threshold 3 px at 256 px, at most round(2 * 16 / 16) = 2 pairs above it,
        # end pairs at most 2 * 2 * 3 = 12 px.
        pairs = np.zeros(15)
        pairs[:2] = 4.0
        assert video_is_static(pairs, np.array([12.0, 0.0]), height=256, width=256)
        assert not video_is_static(pairs, np.array([12.5, 0.0]), height=256, width=256)
        pairs[2] = 4.0
        assert not video_is_static(pairs, np.zeros(2), height=256, width=256)

    def test_still_and_moving(self, moving_square):
        videos = np.concatenate([moving_square([4] * 6), moving_square([4 + 3 * f for f in range(6)])])
        np.testing.assert_array_equal(is_static_proxy(videos), [True, False])


class TestTemporalFlickering:
    def test_flicker_on_a_still_scene(self, moving_square):
        # Frames alternate by exactly 20 levels everywhere: (255 - 20) / 255.
        video = np.full((1, 6, 3, 16, 16), 100 / 255, np.float32)
        video[0, 1::2] = 120 / 255
        assert temporal_flickering_proxy(video)[0] == pytest.approx(235 / 255, abs=1e-12)

    def test_still_scores_one_and_moving_clips_are_not_scored(self, moving_square):
        videos = np.concatenate([moving_square([4] * 6), moving_square([4 + 3 * f for f in range(6)])])
        scores = temporal_flickering_proxy(videos)
        assert scores[0] == 1.0 and np.isnan(scores[1])


class TestMotionSmoothness:
    def test_still_and_constant_velocity(self, moving_square):
        assert motion_smoothness_proxy(moving_square([4] * 5))[0] == 1.0
        # Measured 1 - 3e-6: the interpolated odd frames match to well under one 8-bit level.
        assert motion_smoothness_proxy(moving_square([4 + 2 * f for f in range(7)]))[0] > 0.999

    def test_flicker(self):
        # a, b, a, b, a with b = a + 20 levels: odd frames predicted as a, off by 20 levels.
        video = np.full((1, 5, 3, 16, 16), 100 / 255, np.float32)
        video[0, 1::2] = 120 / 255
        assert motion_smoothness_proxy(video)[0] == pytest.approx(235 / 255, abs=1e-12)

    def test_shuffled_is_worse_than_ordered(self, moving_square):
        ordered = moving_square([4 + 2 * f for f in range(7)])
        shuffled = ordered[:, [0, 5, 2, 6, 1, 3, 4]]
        assert motion_smoothness_proxy(shuffled)[0] < motion_smoothness_proxy(ordered)[0] - 0.01
