import numpy as np
import pytest
import torch

from msm_plugin.metrics.flow import (
    NetworkFlow,
    flow_statistics,
    load_flow_network,
    optical_flow,
    pair_statistics,
    peak_magnitude,
    warp,
)


def _uniform(flow_xy, frames=3, size=16):
    """Flow fields ``[frames, size, size, 2]``, field f uniformly ``flow_xy[f]``."""
    return np.broadcast_to(np.asarray(flow_xy, np.float32)[:, None, None, :], (frames, size, size, 2)).copy()


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
        # Along the motion, constant velocity leaves only Farneback's smoothing halo around the
        # square: measured 0.02 (1 px/frame) and 0.09 (3 px/frame) of the mean flow magnitude.
        # Differencing at fixed pixels gave 0.33 of it.
        assert np.all(stats["acceleration"] < 0.12 * stats["magnitude"].mean())

    def test_accelerating_square(self, moving_square):
        # Square speeds 1, 2, 3, 4, 5 px/frame: 1 px/frame^2 on its 14 % of the frame.
        stats = flow_statistics(moving_square([4, 5, 7, 10, 14, 19]))
        steady = flow_statistics(moving_square([4, 7, 10, 13, 16, 19]))
        assert stats["acceleration"].min() > 0.3
        assert stats["acceleration"].mean() > 4 * steady["acceleration"].mean()

    def test_vertical_direction(self, moving_square):
        flow = optical_flow(moving_square([10] * 4, ys=[4, 6, 8, 10]))
        assert np.median(flow[0, 1, 26:38, 16:28, 1]) == pytest.approx(2.0, abs=0.05)

    def test_bad_peak_share(self):
        with pytest.raises(ValueError, match=r"`peak_share` should be in \(0, 1\], got 0"):
            flow_statistics(np.zeros((1, 2, 1, 8, 8)), peak_share=0)

    def test_bad_flow(self):
        with pytest.raises(TypeError, match="expected `flow` to be a flow estimator .*, got str"):
            optical_flow(np.zeros((1, 2, 1, 8, 8)), flow="raft")


class TestPairStatistics:
    """Hand-built flow fields, so every number is known exactly."""

    def test_uniform_constant_velocity(self):
        stats = pair_statistics(_uniform([[3.0, 4.0]] * 3))
        np.testing.assert_allclose(stats["magnitude"], 5.0, rtol=1e-6)
        np.testing.assert_allclose(stats["peak"], 5.0, rtol=1e-6)
        np.testing.assert_allclose(stats["acceleration"], 0.0, atol=1e-6)

    def test_uniform_constant_acceleration(self):
        # Velocity 1, 2, 3 px/frame along x: 1 px/frame^2 everywhere the point stays inside.
        stats = pair_statistics(_uniform([[1.0, 0.0], [2.0, 0.0], [3.0, 0.0]]))
        np.testing.assert_allclose(stats["acceleration"], 1.0, rtol=1e-6)

    def test_moving_block_at_constant_velocity(self):
        # A 4x4 block moving 2 px/frame on a still background (16 x 16 px). Along the motion
        # the block's own 16 pixels see no change; only the 4 x 2 background pixels it is about
        # to cover (occlusion) do, by 2 px: 16 / 256. At fixed pixels its trailing edge counts
        # too: twice that.
        flows = np.zeros((3, 16, 16, 2), np.float32)
        for f in range(3):
            flows[f, 6:10, 2 + 2 * f : 6 + 2 * f, 0] = 2.0
        stats = pair_statistics(flows)
        np.testing.assert_allclose(stats["acceleration"], 8 * 2 / 256, rtol=1e-6)
        fixed_pixels = np.hypot(*np.moveaxis(flows[1] - flows[0], -1, 0)).mean()
        assert fixed_pixels == pytest.approx(2 * 8 * 2 / 256)

    def test_peak_is_the_top_five_percent(self):
        # 400 pixels: the top floor(0.05 * 400) = 20 are averaged (VBench's int(h * w * 0.05)).
        flows = np.zeros((1, 20, 20, 2))
        flows[0].reshape(-1, 2)[:30, 0] = np.arange(30.0)
        assert peak_magnitude(flows)[0] == pytest.approx(np.arange(10.0, 30.0).mean())


class TestWarp:
    def test_integer_shift_is_exact(self, rng):
        image = rng.random((6, 8)).astype(np.float32)
        shifted = warp(image, np.full((6, 8, 2), [2.0, 1.0]))
        np.testing.assert_array_equal(shifted[:5, :6], image[1:, 2:])

    def test_half_pixel_is_the_mean_of_neighbours(self):
        ramp = np.tile(np.arange(8.0) ** 2, (3, 1))
        half = warp(ramp, np.full((3, 8, 2), [0.5, 0.0]))
        # cv2.remap's bilinear weights are quantised to 1/32: exact at 0.5.
        np.testing.assert_allclose(half[:, :7], (ramp[:, :7] + ramp[:, 1:]) / 2, rtol=1e-6)


class _ShiftNet(torch.nn.Module):
    """Stand-in flow network: a fixed flow ``(dx, dy)`` everywhere, plus a learned term that is 0 at init."""

    def __init__(self, dx: float, dy: float):
        super().__init__()
        self.conv = torch.nn.Conv2d(6, 2, 3, padding=1)
        torch.nn.init.zeros_(self.conv.weight)
        torch.nn.init.zeros_(self.conv.bias)
        self.register_buffer("shift", torch.tensor([dx, dy]).view(1, 2, 1, 1))

    def forward(self, first, second):
        return self.conv(torch.cat([first, second], dim=1)) + self.shift


class TestNetworkFlow:
    # TorchScript is deprecated in torch 2.13 but still what many users have on disk.
    @pytest.mark.filterwarnings("ignore:`torch.jit:DeprecationWarning")
    def test_torchscript_file_end_to_end(self, tmp_path, drifting_blobs):
        path = tmp_path / "flow.pt"
        torch.jit.script(_ShiftNet(3.0, 4.0)).save(str(path))
        stats = flow_statistics(drifting_blobs(2, seed=0), flow=load_flow_network(path, batch_size=3))
        np.testing.assert_allclose(stats["peak"], 5.0, rtol=1e-6)
        np.testing.assert_allclose(stats["acceleration"], 0.0, atol=1e-6)

    def test_exported_random_network_runs_every_flow_metric(self, tmp_path, drifting_blobs):
        # The pipeline, not accuracy: randomly initialised weights saved to a temporary file.
        from msm_plugin.metrics import motion_metrics

        torch.manual_seed(0)
        net = torch.nn.Sequential(torch.nn.Conv2d(3, 2, 3, padding=1))

        class Pair(torch.nn.Module):
            def __init__(self):
                super().__init__()
                self.net = net

            def forward(self, first, second):
                return self.net(second - first)

        frames = torch.rand(2, 3, 24, 24)
        batch = torch.export.Dim("batch")
        program = torch.export.export(Pair(), (frames, frames), dynamic_shapes=({0: batch}, {0: batch}))
        path = tmp_path / "flow.pt2"
        torch.export.save(program, str(path))
        videos = drifting_blobs(2, seed=0, frames=5)
        m = motion_metrics(videos, reference=videos, flow=load_flow_network(path))
        assert m["flow_magnitude"] > 0 and m["smoothness_error"] > 0
        assert m["fvmd_proxy"] == pytest.approx(0.0, abs=1e-9)

    def test_grey_videos_are_given_three_channels(self):
        seen = []

        def module(first, second):
            seen.append(first.shape)
            return torch.zeros(first.shape[0], 2, *first.shape[2:])

        NetworkFlow(module, batch_size=2)(np.zeros((2, 1, 4, 5), np.float32), np.zeros((2, 1, 4, 5), np.float32))
        assert seen == [(2, 3, 4, 5)]

    def test_raft_style_list_output_keeps_the_last(self):
        module = lambda a, b: [torch.ones(a.shape[0], 2, 4, 4), torch.full((a.shape[0], 2, 4, 4), 2.0)]  # noqa: E731
        out = NetworkFlow(module)(np.zeros((1, 3, 4, 4), np.float32), np.zeros((1, 3, 4, 4), np.float32))
        assert np.all(out == 2.0) and out.shape == (1, 4, 4, 2)

    def test_wrong_output_shape(self):
        flow = NetworkFlow(lambda a, b: torch.zeros(a.shape[0], 2, 2, 2))
        with pytest.raises(ValueError, match=r"expected the flow network to return a tensor \(1, 2, 4, 4\), got \(1, 2, 2, 2\)"):
            flow(np.zeros((1, 3, 4, 4), np.float32), np.zeros((1, 3, 4, 4), np.float32))

    def test_failing_network(self):
        def broken(a, b):
            raise RuntimeError("size mismatch")

        with pytest.raises(ValueError, match=r"the flow network failed on frames of shape \(1, 3, 4, 4\): RuntimeError: size mismatch"):
            NetworkFlow(broken)(np.zeros((1, 3, 4, 4), np.float32), np.zeros((1, 3, 4, 4), np.float32))

    def test_non_finite_flow(self):
        flow = NetworkFlow(lambda a, b: torch.full((a.shape[0], 2, 4, 4), float("nan")))
        with pytest.raises(ValueError, match="expected a finite flow from the flow network, found NaN or inf"):
            flow(np.zeros((1, 3, 4, 4), np.float32), np.zeros((1, 3, 4, 4), np.float32))

    def test_not_callable(self):
        with pytest.raises(TypeError, match="expected a callable flow network, got int"):
            NetworkFlow(3)

    def test_bad_batch_size(self):
        with pytest.raises(ValueError, match="`batch_size` should be a positive int, got 0"):
            NetworkFlow(lambda a, b: a, batch_size=0)

    def test_unreadable_file(self, tmp_path):
        path = tmp_path / "raft.pt2"
        path.write_bytes(b"not a program")
        with pytest.raises(ValueError, match=r"cannot load flow network .*raft.pt2 \(torch.export .pt2 or TorchScript\)"):
            load_flow_network(path)
