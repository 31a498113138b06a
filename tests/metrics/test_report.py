import json
import math

import numpy as np
import pytest
import torch

from msm_plugin.metrics.report import METRICS, evaluate, markdown_table, motion_metrics, write_results

DISTANCE_KEYS = ["speed_w1", "accel_w1", "flow_w1", "motion_fd", "appearance_fd", "fvmd_proxy"]
SET_KEYS = [key for key in METRICS if key not in DISTANCE_KEYS + ["feature_fd"]]


class TestMotionMetrics:
    def test_keys_without_and_with_reference(self, drifting_blobs):
        videos = torch.from_numpy(drifting_blobs(4, seed=1))
        alone = motion_metrics(videos)
        assert list(alone) == SET_KEYS
        assert all(isinstance(value, float) for value in alone.values())
        both = motion_metrics(videos, reference=drifting_blobs(3, seed=2))
        assert list(both) == SET_KEYS + DISTANCE_KEYS + [f"reference_{key}" for key in SET_KEYS]
        assert {key: both[key] for key in SET_KEYS} == alone

    def test_static_videos(self, rng):
        videos = np.broadcast_to(rng.random((1, 1, 3, 32, 32)).astype(np.float32), (3, 5, 3, 32, 32))
        m = motion_metrics(videos)
        for key in ("motion_energy", "energy_ratio", "accel_mean", "smoothness_error", "flow_magnitude",
                    "flow_peak", "flow_accel", "dynamic_degree_proxy"):
            assert m[key] == 0.0, key
        for key in ("static_fraction", "static_share_proxy", "temporal_flickering_proxy", "motion_smoothness_proxy"):
            assert m[key] == 1.0, key

    def test_energy_ratio_and_static_fraction_hand_computed(self):
        # A fade 0.2, 0.3, 0.5 (motion 0.15, appearance 1/3) and a still 0.4 video (motion 0):
        # ratio of set means 0.075 / ((1/3 + 0.4) / 2); one of the two videos is static.
        fade = torch.tensor([0.2, 0.3, 0.5]).view(3, 1, 1, 1).expand(3, 3, 4, 4)
        videos = torch.stack([fade, torch.full((3, 3, 4, 4), 0.4)])
        m = motion_metrics(videos)
        assert m["motion_energy"] == pytest.approx(0.075, rel=1e-6)
        assert m["energy_ratio"] == pytest.approx(0.075 / ((1 / 3 + 0.4) / 2), rel=1e-6)
        assert m["static_fraction"] == 0.5
        assert motion_metrics(videos, static_threshold=0.2)["static_fraction"] == 1.0

    def test_square_at_constant_velocity(self, moving_square):
        m = motion_metrics(moving_square([4 + 2 * f for f in range(6)]))
        assert m["flow_peak"] == pytest.approx(2.0, abs=0.1)
        assert m["flow_accel"] < 0.1 * m["flow_magnitude"]
        assert m["smoothness_error"] < 1e-3 and m["motion_smoothness_proxy"] > 0.999
        # 2 px/frame passes 6 px * 64/256 = 1.5 px in every pair; VBench's static filter rejects it.
        assert m["dynamic_degree_proxy"] == 1.0 and m["static_fraction"] == 0.0
        assert m["static_share_proxy"] == 0.0 and math.isnan(m["temporal_flickering_proxy"])

    def test_identical_sets_have_zero_distances(self, drifting_blobs):
        videos = drifting_blobs(6, seed=4)
        m = motion_metrics(videos, reference=videos.copy())
        for key in DISTANCE_KEYS:
            assert m[key] == pytest.approx(0.0, abs=1e-9), key

    def test_shuffled_frames_are_further_in_motion_not_in_appearance(self, drifting_blobs, rng):
        reference = drifting_blobs(24, seed=10)
        generated = drifting_blobs(24, seed=11)
        shuffled = generated[:, rng.permutation(8)]
        fair = motion_metrics(generated, reference=reference)
        bad = motion_metrics(shuffled, reference=reference)
        # Measured ratios: motion_fd 160, flow_accel 105, flow_w1 67, smoothness 3.2, fvmd 3.3.
        for key in ("motion_fd", "speed_w1", "accel_w1", "smoothness_error", "flow_accel", "flow_w1", "fvmd_proxy"):
            assert bad[key] > 2 * fair[key], key
        assert bad["motion_smoothness_proxy"] < fair["motion_smoothness_proxy"] - 0.01
        assert bad["appearance_fd"] == pytest.approx(fair["appearance_fd"], rel=1e-9)

    def test_two_frames_leave_triple_metrics_undefined(self, rng):
        videos = rng.random((3, 2, 3, 8, 8)).astype(np.float32)
        m = motion_metrics(videos, reference=videos)
        # Random frames are not static for VBench: no flicker score either; FVMD needs 4 frames.
        undefined = {"accel_mean", "accel_p90", "smoothness_error", "flow_accel", "accel_w1", "motion_fd",
                     "motion_smoothness_proxy", "temporal_flickering_proxy", "fvmd_proxy"}
        assert {key for key, value in m.items() if math.isnan(value) and not key.startswith("reference_")} == undefined
        assert m["speed_w1"] == 0.0

    def test_single_videos_have_no_frechet_covariance_for_motion(self, rng):
        a, b = rng.random((1, 4, 3, 8, 8)), rng.random((1, 4, 3, 8, 8))
        m = motion_metrics(a, reference=b, feature_extractor=lambda v: v.mean(dim=(1, 3, 4)))
        assert math.isnan(m["motion_fd"]) and math.isnan(m["feature_fd"])
        assert math.isfinite(m["appearance_fd"])  # per-frame features: 4 samples each

    def test_feature_extractor_distance_hand_computed(self):
        # Extractor = video mean: generated means {0.1, 0.3}, reference {0.5, 0.9} ->
        # (0.2 - 0.7)^2 + (std 0.1414 - std 0.2828)^2 with unbiased stds sqrt(0.02), sqrt(0.08).
        gen = torch.tensor([0.1, 0.3]).view(2, 1, 1, 1, 1).expand(2, 3, 1, 4, 4)
        ref = torch.tensor([0.5, 0.9]).view(2, 1, 1, 1, 1).expand(2, 3, 1, 4, 4)
        m = motion_metrics(gen, reference=ref, feature_extractor=lambda v: v.mean(dim=(1, 2, 3, 4)))
        assert m["feature_fd"] == pytest.approx(0.25 + (np.sqrt(0.02) - np.sqrt(0.08)) ** 2, rel=1e-5)

    def test_toy_sized_batch_and_tiny_frames(self):
        m = motion_metrics(torch.rand(64, 8, 3, 16, 16), reference=torch.rand(64, 8, 3, 16, 16))
        # Random frames never pass VBench's static filter: no flicker score, by its protocol.
        assert [key for key, v in m.items() if not math.isfinite(v)] == [
            "temporal_flickering_proxy", "reference_temporal_flickering_proxy"]
        assert math.isfinite(motion_metrics(torch.rand(3, 3, 1, 2, 2), reference=torch.rand(3, 3, 1, 3, 3))["motion_fd"])

    def test_channel_mismatch(self):
        with pytest.raises(ValueError, match=r"reference videos with the generated videos' C = 3 channels, got reference shape \(2, 3, 1, 4, 4\)"):
            motion_metrics(torch.zeros(2, 3, 3, 4, 4), reference=torch.zeros(2, 3, 1, 4, 4))

    def test_extractor_needs_reference(self):
        with pytest.raises(ValueError, match="`feature_extractor` needs a `reference` set to compare against"):
            motion_metrics(torch.zeros(2, 3, 3, 4, 4), feature_extractor=torch.nn.Flatten())

    def test_bad_static_threshold(self):
        with pytest.raises(ValueError, match="`static_threshold` should be positive, got 0"):
            motion_metrics(torch.zeros(2, 3, 3, 4, 4), static_threshold=0)

    def test_fvmd_uses_the_shorter_sets_clip_length(self, drifting_blobs):
        # 8 and 6 frames: clips of 6 frames (one per video), one 4-frame cube each: 2 * 128 values.
        a, b = drifting_blobs(3, seed=1), drifting_blobs(3, seed=2, frames=6)
        assert math.isfinite(motion_metrics(a, reference=b)["fvmd_proxy"])
        assert math.isnan(motion_metrics(a, reference=b[:, :3])["fvmd_proxy"])  # under one cube

    def test_bad_flow(self):
        with pytest.raises(TypeError, match="expected `flow` to be a flow estimator"):
            motion_metrics(torch.zeros(2, 3, 3, 4, 4), flow=1.0)

    def test_bad_fps(self):
        with pytest.raises(ValueError, match="`fps` should be a positive number or None, got -8"):
            motion_metrics(torch.zeros(2, 3, 3, 4, 4), fps=-8)

    def test_bad_grid(self):
        with pytest.raises(ValueError, match=r"`grid` should be a positive int, got 2.5"):
            motion_metrics(torch.zeros(2, 3, 3, 4, 4), grid=2.5)


def _save(path, videos):
    np.save(path, np.asarray(videos, dtype=np.float32))
    return path


class TestEvaluate:
    def test_bad_file_reported_rest_scored(self, tmp_path, drifting_blobs):
        gen = tmp_path / "gen"
        gen.mkdir()
        _save(gen / "a.npy", drifting_blobs(3, seed=1))
        (gen / "b.mp4").write_bytes(b"junk")
        ref = _save(tmp_path / "ref.npy", drifting_blobs(3, seed=2))
        result = evaluate(gen, ref)
        assert result["generated"]["num_videos"] == 3 and result["reference"]["num_videos"] == 3
        assert list(result["errors"]) == ["generated/b.mp4"]
        assert list(result["metrics"]) == SET_KEYS + DISTANCE_KEYS
        assert list(result["reference_metrics"]) == SET_KEYS
        assert result["directions"]["motion_fd"] == "lower"
        assert result["directions"]["static_fraction"] == "lower"

    def test_incomparable_reference_still_scores_generated(self, tmp_path, drifting_blobs):
        gen = _save(tmp_path / "gen.npy", drifting_blobs(2, seed=1))
        ref = _save(tmp_path / "ref.npy", drifting_blobs(2, seed=2)[:, :, :1])
        result = evaluate(gen, ref)
        assert list(result["metrics"]) == SET_KEYS
        assert result["errors"]["reference"].startswith("not compared: expected reference videos with")

    def test_still_and_moving_mp4(self, tmp_path, moving_square):
        import imageio.v2 as imageio_v2

        for name, xs in [("still.mp4", [10] * 6), ("moving.mp4", [4 + 3 * f for f in range(6)])]:
            frames = np.rint(moving_square(xs)[0].transpose(0, 2, 3, 1) * 255).astype(np.uint8)
            imageio_v2.mimwrite(tmp_path / name, list(frames), fps=8, quality=7, macro_block_size=1)
        m = evaluate(tmp_path)["metrics"]
        # H.264 leaves a still shot still; the square moving 3 px/frame is dynamic at 64 px.
        assert m["static_fraction"] == 0.5 and m["dynamic_degree_proxy"] == 0.5
        assert m["static_share_proxy"] == 0.5 and m["temporal_flickering_proxy"] > 0.99
        assert m["flow_peak"] == pytest.approx(1.5, abs=0.15)

    def test_bad_options_fail_before_reading(self, tmp_path):
        with pytest.raises(ValueError, match="`fps` should be a positive number or None, got 0"):
            evaluate(tmp_path / "missing", fps=0)

    def test_nothing_readable(self, tmp_path):
        result = evaluate(tmp_path / "missing")
        assert result["metrics"] == {} and result["generated"]["num_videos"] == 0
        assert list(result["errors"]) == ["generated"]  # the path itself, not "generated//abs/path"
        assert result["errors"]["generated"] == f"no such file or folder: {tmp_path / 'missing'}"

    def test_write_results_json_and_markdown(self, tmp_path, rng):
        gen = _save(tmp_path / "gen.npy", rng.random((2, 2, 3, 8, 8)))
        (tmp_path / "bad.npy").write_bytes(b"junk")
        result = evaluate(gen, tmp_path / "bad.npy")
        json_path, md_path = write_results(result, tmp_path / "out" / "results.json")
        assert md_path == tmp_path / "out" / "results.md"
        loaded = json.loads(json_path.read_text())
        assert loaded["metrics"]["accel_mean"] is None  # NaN (F = 2) is written as null
        assert loaded["report"] == "msm-eval"
        table = md_path.read_text()
        assert table.startswith("# msm-eval report\n")
        assert "| metric | generated | reference | better | meaning |\n|---|---|---|---|---|\n" in table
        assert "| accel_mean | n/a | - | closer to reference |" in table
        assert "1 item(s) not scored:" in table and "`reference/bad.npy`: cannot read tensor file" in table


def test_markdown_table_formats_reference_and_escapes_pipes():
    table = markdown_table(
        {"metrics": {"motion_energy": 0.0123456, "motion_fd": 2.0}, "reference_metrics": {"motion_energy": 0.01}}
    )
    rows = table.splitlines()
    assert rows[2].startswith("| motion_energy | 0.01235 | 0.01 | closer to reference | mean_{n,f} mean\\|x[f+1]")
    assert rows[3].startswith("| motion_fd | 2 | - | lower |")
