
import numpy as np
import pytest

from msm_plugin.metrics.fvmd import clip_features, direction_histograms, fvmd_features, fvmd_proxy, track_grid


def _uniform_flows(velocities, size=32):
    """Consecutive flows ``[len, size, size, 2]``, pair f moving everything by ``velocities[f]`` px."""
    v = np.asarray(velocities, np.float32)
    return np.broadcast_to(v[:, None, None, :], (len(v), size, size, 2)).copy()


class TestTracking:
    def test_uniform_flow_moves_every_point(self):
        # 2 px per frame on a 64 px frame is 8 px per frame on FVMD's 256 px frame.
        track, velocity = track_grid(_uniform_flows([[2.0, 0.0]] * 3, size=64))
        steps = np.diff(track, axis=0)
        np.testing.assert_allclose(velocity[1:], steps, rtol=1e-12)
        np.testing.assert_allclose(steps[..., 0], 8.0, rtol=1e-6)
        np.testing.assert_allclose(steps[..., 1], 0.0, atol=1e-6)
        assert track.shape == (4, 400, 2)
        assert track[0, 0].tolist() == [8.0, 8.0] and track[0, -1].tolist() == [248.0, 248.0]


class TestHistograms:
    def test_constant_velocity_has_empty_acceleration_histograms(self):
        # 1 px/frame down on a 32 px frame = 8 px/frame at 256 px: angle atan2(0, 8) = 0 -> bin 4,
        # weight ceil(log2(9)) / 8 = 0.5. Cube 0 holds v[1..3] (v[0] = 0), later cubes 4 frames,
        # each cube 25 points.
        features = clip_features(_uniform_flows([[0.0, 1.0]] * 15))
        velocity, acceleration = features[:512].reshape(4, 4, 4, 8), features[512:]
        np.testing.assert_allclose(velocity[0, :, :, 4], 3 * 25 * 0.5)
        np.testing.assert_allclose(velocity[1:, :, :, 4], 4 * 25 * 0.5)
        assert velocity[..., [0, 1, 2, 3, 5, 6, 7]].sum() == 0.0
        assert np.all(acceleration == 0.0)

    def test_constant_acceleration(self):
        # Speeds 1, 2, ... px/frame right on a 256 px frame: acceleration 1 px/frame^2 from a[2]
        # on, angle atan2(1, 0) = pi / 2 -> bin 6, weight ceil(log2(2)) / 8 = 1 / 8.
        features = clip_features(_uniform_flows([[float(s + 1), 0.0] for s in range(15)], size=256))
        acceleration = features[512:].reshape(4, 4, 4, 8)
        np.testing.assert_allclose(acceleration[0, :, :, 6], 2 * 25 / 8)
        np.testing.assert_allclose(acceleration[1:, :, :, 6], 4 * 25 / 8)
        assert acceleration[..., [0, 1, 2, 3, 4, 5, 7]].sum() == 0.0

    def test_magnitude_weights_are_log_levels(self):
        # ceil(log2(|v| + 1)) / 8, |v| clipped to 255: 0 -> 0, 0.5 -> 1/8, 3 -> 2/8, 1000 -> 8/8.
        v = np.zeros((4, 400, 2))
        v[0, :4, 0] = [0.0, 0.5, 3.0, 1000.0]
        assert direction_histograms(v).sum() == pytest.approx((0 + 1 + 2 + 8) / 8)


class TestDistance:
    def test_identical_sets_and_different_motion(self, moving_square):
        steady = np.concatenate([moving_square([2 + s * f for f in range(6)]) for s in (1, 2, 3)])
        jerky = np.concatenate([moving_square([2, 3, 5, 8, 12, 17]), moving_square([2, 4, 8, 9, 15, 17]),
                                moving_square([2, 2, 5, 5, 9, 9])])
        assert fvmd_proxy(steady, steady, clip_frames=4) == pytest.approx(0.0, abs=1e-9)
        assert fvmd_proxy(steady, jerky, clip_frames=4) > 0.1

    def test_clips_overlap_by_one_frame(self):
        # FVMD's clips of 16 frames start every 15: 31 frames give 2 clips, 30 give 1.
        assert fvmd_features(np.zeros((1, 31, 1, 16, 16)), flow=_zero_flow).shape == (2, 1024)
        assert fvmd_features(np.zeros((1, 30, 1, 16, 16)), flow=_zero_flow).shape == (1, 1024)

    def test_bad_clip_frames(self):
        with pytest.raises(ValueError, match=r"`clip_frames` should be an int >= 4 \(one cube\), got 3"):
            fvmd_features(np.zeros((1, 8, 1, 8, 8)), clip_frames=3)

    def test_too_few_frames(self):
        with pytest.raises(ValueError, match="expected videos with F >= clip_frames = 16 frames, got F = 8"):
            fvmd_features(np.zeros((1, 8, 1, 8, 8)))


def _zero_flow(first, second):
    return np.zeros(first.shape[:1] + first.shape[2:] + (2,), np.float32)


