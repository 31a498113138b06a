"""Ground-truth motion metrics: exact on the data, right on hand-made videos with known answers."""

from __future__ import annotations

import math

import pytest
import torch

from msm_plugin.toy.data import ToyDataConfig, background_basis, make_dataset, make_videos, true_velocities
from msm_plugin.toy.tracking import BlobTracker, motion_truth_metrics, summarise_truth, temporal_spectrum

CFG = ToyDataConfig()  # blob strength (colour norm) 1


@pytest.fixture(scope="module")
def data():
    videos, labels = make_dataset(ToyDataConfig(videos_per_condition=6))
    return videos, labels


@pytest.fixture(scope="module")
def tracker():
    return BlobTracker(CFG)


def _blob_video(centres, colour=(0.5, -0.3, 0.2), background_seed=0):
    """A hand-made video: a smooth background from the data's rule plus a blob at the given centres [F, 2].

    The blob is written out here as a sum over its periodic images (independent of the package's
    nearest-image form; they differ by < 1e-6 on a 16-px torus at sigma 1.5).
    """
    g = torch.Generator().manual_seed(background_seed)
    coeffs = torch.randn(CFG.channels, CFG.background_grid**2, generator=g) * 0.5
    background = (coeffs @ background_basis(CFG)).reshape(CFG.channels, CFG.size, CFG.size)
    coords = torch.arange(CFG.size, dtype=torch.float64)
    frames = []
    for cy, cx in centres:
        blob = sum(torch.exp(-((coords[:, None] - cy + 16 * i) ** 2 + (coords[None, :] - cx + 16 * j) ** 2) / (2 * CFG.blob_sigma**2))
                   for i in (-1, 0, 1) for j in (-1, 0, 1))
        frames.append(background + torch.tensor(colour)[:, None, None] * blob.float())
    return torch.stack(frames)[None]


def test_recovers_the_true_velocity_of_every_data_video(data, tracker):
    videos, labels = data
    m = motion_truth_metrics(videos, labels, CFG, tracker)
    # The estimator is exact at its optimum; 60 refinement steps leave < 0.01 px/frame (measured
    # max 0.003 over 512 videos), far below the 0.125 px/frame that separates "frozen" at 0.5 px/f.
    assert float(m["velocity_error"].max()) < 0.01
    assert bool(m["direction_ok"].all()) and not bool(m["frozen"].any())
    assert float(m["flicker"].max()) < 2e-3  # nothing but the blob changes over time
    assert bool(m["tracked"].all()) and float(m["path_rms"].max()) < 0.02  # on a line, to the tracker's precision
    torch.testing.assert_close(m["blob_strength"], torch.ones_like(m["blob_strength"]), atol=0.01, rtol=0)
    s = summarise_truth(m, labels, CFG)
    assert s["direction_accuracy"] == 1.0 and s["frozen_share"] == 0.0 and s["tracked_share"] == 1.0
    assert s["pair_speed_ratio"] == pytest.approx([1.0] * (CFG.num_frames - 1), abs=0.02)
    assert set(s) >= {"velocity_error@0.5", "frozen_share@1", "speed_ratio@0.5", "flicker_hf_share", "speed_ratio"}


def test_hand_made_tracks(tracker):
    # Diagonal motion (not among the conditions) at (0.3, -0.7) px/frame, positions off the grid.
    centres = [(6.1 + 0.3 * f, 9.4 - 0.7 * f) for f in range(8)]
    p = tracker.positions(_blob_video(centres))
    torch.testing.assert_close(p[0].float(), torch.tensor(centres), atol=0.01, rtol=0)
    v = tracker.velocities(_blob_video(centres))[0]
    torch.testing.assert_close(v.float(), torch.tensor([0.3, -0.7]), atol=0.01, rtol=0)


def test_removing_the_background_leaves_the_blob(tracker):
    video = _blob_video([(7.0, 4.0 + f) for f in range(8)])
    no_blob = _blob_video([(7.0, 4.0 + f) for f in range(8)], colour=(0.0, 0.0, 0.0))
    torch.testing.assert_close(tracker.remove_background(no_blob), torch.zeros_like(no_blob), atol=1e-5, rtol=0)
    view = tracker.remove_background(video)  # linear: the view of the blob alone
    torch.testing.assert_close(view, tracker.remove_background(video - no_blob), atol=1e-5, rtol=0)
    assert float(view[0, 0, 0].abs().flatten().argmax()) == 7 * 16 + 4  # peaks at the blob's centre


def test_a_blob_crossing_the_edge_keeps_its_velocity(tracker):
    # Right at 1 px/frame from column 12.4: columns 12.4 .. 19.4, i.e. 3.4 after the seam.
    m = motion_truth_metrics(_blob_video([(5.0, 12.4 + f) for f in range(8)]), torch.tensor([1]), CFG, tracker)
    assert float(m["velocity_error"][0]) < 0.01 and bool(m["tracked"][0])
    assert float(m["positions"][0, -1, 1]) == pytest.approx(3.4, abs=0.01)


def test_untracked_videos_count_as_motionless(tracker):
    label = torch.tensor([1])  # right at 1 px/frame, |v*| = 1
    # A blob a fifth as strong as the data's (|c| = 0.2 < 0.25): moving, but not a tracked object.
    faint = _blob_video([(7.0, 4.0 + f) for f in range(8)], colour=(0.2, 0.0, 0.0))
    m = motion_truth_metrics(faint, label, CFG, tracker)
    assert float(m["blob_strength"][0]) == pytest.approx(0.2, abs=0.01) and not bool(m["tracked"][0])
    assert float(m["fitted_velocity"][0, 1]) == pytest.approx(1.0, abs=0.01)  # the tracker did see it move ...
    assert bool(m["frozen"][0]) and not bool(m["direction_ok"][0])  # ... but it counts as no motion
    assert float(m["velocity_error"][0]) == 1.0 and float(m["speed_ratio"][0]) == 0.0
    assert m["pair_speed_ratio"][0].tolist() == [0.0] * 7
    # A strong blob that jumps around is no object moving along a line either.
    jumps = [(7.0, 4.0), (2.0, 11.0), (12.0, 6.0), (5.0, 13.0), (10.0, 2.0), (3.0, 8.0), (13.0, 12.0), (8.0, 5.0)]
    m = motion_truth_metrics(_blob_video(jumps, colour=(1.0, 0.0, 0.0)), label, CFG, tracker)
    assert float(m["path_rms"][0]) > 0.5 and not bool(m["tracked"][0])
    # At 0.3 of the data's strength the same moving blob is tracked.
    m = motion_truth_metrics(_blob_video([(7.0, 4.0 + f) for f in range(8)], colour=(0.3, 0.0, 0.0)), label, CFG, tracker)
    assert bool(m["tracked"][0]) and float(m["velocity_error"][0]) < 0.02


def test_static_blob_is_frozen_and_reversed_motion_is_wrong(tracker):
    label = torch.tensor([1])  # right at 1 px/frame
    still = _blob_video([(7.0, 7.5)] * 8)
    m = motion_truth_metrics(still, label, CFG, tracker)
    assert bool(m["frozen"][0]) and float(m["velocity_error"][0]) == pytest.approx(1.0, abs=0.01)
    backwards = _blob_video([(7.0, 11.0 - f) for f in range(8)])
    m = motion_truth_metrics(backwards, label, CFG, tracker)
    assert not bool(m["direction_ok"][0]) and float(m["velocity_error"][0]) == pytest.approx(2.0, abs=0.01)


def test_flicker_is_the_rms_of_added_temporal_noise(tracker):
    video = _blob_video([(7.0, 4.0 + f) for f in range(8)])
    sign = torch.tensor([1.0, -1.0] * 4)[None, :, None, None, None]
    flickering = video + 0.1 * sign  # every pixel alternates by ±0.1 around the clean video
    m = motion_truth_metrics(flickering, torch.tensor([1]), CFG, tracker)
    # A uniform offset lies in the background span, so the blob is still tracked exactly and
    # what changes over time is the ±0.1 alternation: RMS 0.1, all power at the alternating bin.
    assert float(m["velocity_error"][0]) < 0.01
    assert float(m["flicker"][0]) == pytest.approx(0.1, rel=1e-3)
    # The tracker's ~1e-3 px position residual leaves blob power ~1e-8 against 0.01 at the
    # alternating bin: the share is 1 to ~1e-6.
    spectrum = m["flicker_spectrum"]
    assert float(spectrum[-1]) == pytest.approx(float(spectrum.sum()), rel=1e-5)
    assert summarise_truth(m, torch.tensor([1]), CFG)["flicker_hf_share"] == pytest.approx(1.0, abs=1e-5)


def test_temporal_spectrum_of_a_slow_cosine():
    f = torch.arange(8, dtype=torch.float64)
    x = torch.cos(2 * math.pi * f / 8).reshape(1, 8, 1)  # one cycle over the clip: bin 1 only
    s = temporal_spectrum(x)
    # Parseval: the power of cos over 8 samples, |DFT[1]|^2 / 8 = (8 / 2)^2 / 8 = 2.
    torch.testing.assert_close(s, torch.tensor([0.0, 2.0, 0.0, 0.0, 0.0], dtype=torch.float64), atol=1e-12, rtol=0)


def test_noise_does_not_hide_real_motion(tracker):
    videos = make_videos(torch.tensor([0, 2, 5, 7] * 4), CFG, torch.Generator().manual_seed(3))
    noisy = videos + 0.05 * torch.randn(videos.shape, generator=torch.Generator().manual_seed(4))
    m = motion_truth_metrics(noisy, torch.tensor([0, 2, 5, 7] * 4), CFG, tracker)
    torch.testing.assert_close(m["true_velocity"], true_velocities(torch.tensor([0, 2, 5, 7] * 4), CFG).double())
    # Per-pixel noise 0.05 against a blob of amplitude ~1: the fitted slope stays within a tenth
    # of a pixel per frame (measured ~0.03 mean); faint-blob videos can do worse, hence the median.
    assert float(m["velocity_error"].median()) < 0.1
    assert float(m["flicker"].mean()) == pytest.approx(0.05 * math.sqrt(7 / 8), rel=0.1)


def test_input_errors(tracker):
    with pytest.raises(ValueError, match=r"expected toy videos \[N, F >= 2, 3, 16, 16\] \(model space\), got \(1, 8, 3, 8, 8\)"):
        tracker.positions(torch.zeros(1, 8, 3, 8, 8))
    with pytest.raises(ValueError, match=r"expected one label per video, \[N\] = \[1\], got \(2,\)"):
        motion_truth_metrics(torch.zeros(1, 8, 3, 16, 16), torch.tensor([0, 1]), CFG, tracker)
    with pytest.raises(ValueError, match=r"expected videos \[N, F, \.\.\.\] with F >= 2, got \(3,\)"):
        temporal_spectrum(torch.zeros(3))
