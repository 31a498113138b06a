import numpy as np
import pytest

from msm_plugin.metrics.flow import dynamic_degree, flow_statistics, optical_flow


class TestOpticalFlow:
    def test_static_video_has_zero_flow(self, rng):
        frame = rng.random((3, 32, 32)).astype(np.float32)
        videos = np.broadcast_to(frame, (2, 4, 3, 32, 32))
        assert np.all(optical_flow(videos) == 0.0)
        stats = flow_statistics(videos)
        for key in ("magnitude", "peak", "acceleration"):
            assert np.all(stats[key] == 0.0)

    @pytest.mark.parametrize("speed", [1, 3])
    def test_square_at_constant_velocity(self, moving_square, speed):
        x = moving_square([4 + speed * f for f in range(6)])
        flow = optical_flow(x)
        assert flow.shape == (1, 5, 64, 64, 2)
        # Inside the square (rows 20..43, columns from 4 + speed * f) the flow is (speed, 0).
        inner = np.stack([flow[0, f, 26:38, 10 + speed * f : 22 + speed * f] for f in range(5)])
        np.testing.assert_allclose(np.median(inner[..., 0], axis=(1, 2)), speed, atol=0.05)
        np.testing.assert_allclose(np.median(inner[..., 1], axis=(1, 2)), 0.0, atol=0.05)
        stats = flow_statistics(x)
        np.testing.assert_allclose(stats["peak"], speed, atol=0.1)
        # Acceleration is border noise only: under 8 % of the square's speed.
        assert stats["acceleration"].max() < 0.08 * speed

    def test_vertical_direction(self, moving_square):
        flow = optical_flow(moving_square([10] * 4, ys=[4, 6, 8, 10]))
        assert np.median(flow[0, 1, 26:38, 16:28, 1]) == pytest.approx(2.0, abs=0.05)

    def test_accelerating_square_has_larger_flow_acceleration(self, moving_square):
        steady = flow_statistics(moving_square([4, 7, 10, 13, 16, 19]))["acceleration"].mean()
        speeding = flow_statistics(moving_square([4, 5, 7, 10, 14, 19]))["acceleration"].mean()
        assert speeding > 3 * steady

    def test_bad_peak_share(self):
        with pytest.raises(ValueError, match=r"`peak_share` should be in \(0, 1\], got 0"):
            flow_statistics(np.zeros((1, 2, 1, 8, 8)), peak_share=0)


class TestDynamicDegree:
    def test_threshold_scales_with_resolution(self):
        # 6 px at 256 px is 0.375 px at 16 px and 1.5 px at 64 px.
        peak = np.array([[0.4, 0.0, 0.0, 0.0], [0.3, 0.3, 0.3, 0.3]])
        assert dynamic_degree(peak, height=16, width=32) == 0.5
        assert dynamic_degree(peak, height=64, width=64) == 0.0

    def test_needs_a_share_of_pairs(self):
        peak = np.array([[1.0, 1.0, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0]])
        assert dynamic_degree(peak, height=16, width=16, min_share=0.25) == 1.0
        assert dynamic_degree(peak, height=16, width=16, min_share=0.5) == 0.0

    def test_moving_square_is_dynamic_and_static_is_not(self, moving_square):
        moving = flow_statistics(moving_square([4 + 3 * f for f in range(5)]))["peak"]
        still = flow_statistics(moving_square([4] * 5))["peak"]
        assert dynamic_degree(np.concatenate([moving, still]), height=64, width=64) == 0.5

    def test_bad_shape(self):
        with pytest.raises(ValueError, match=r"expected `peak` of shape \[N, F - 1\] .* got \(3,\)"):
            dynamic_degree(np.zeros(3), height=8, width=8)

    def test_bad_size(self):
        with pytest.raises(ValueError, match="expected a positive frame size, got height=0, width=8"):
            dynamic_degree(np.zeros((1, 2)), height=0, width=8)

    def test_bad_threshold(self):
        with pytest.raises(ValueError, match="`threshold_px` should be positive, got -1"):
            dynamic_degree(np.zeros((1, 2)), height=8, width=8, threshold_px=-1)

    def test_bad_min_share(self):
        with pytest.raises(ValueError, match=r"`min_share` should be in \(0, 1\], got 1.5"):
            dynamic_degree(np.zeros((1, 2)), height=8, width=8, min_share=1.5)
