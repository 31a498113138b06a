"""Synthetic toy videos: motion as specified, eq. 7's regime, reproducibility, input checks."""

from __future__ import annotations

import math

import pytest
import torch

from msm_plugin.toy.data import (
    ToyDataConfig,
    _upsample,
    appearance_to_motion_ratio,
    background_basis,
    condition_names,
    make_dataset,
    make_videos,
    periodic_blob,
    sample_labels,
    to_unit_range,
    true_velocities,
)


def _circular_centres(video):
    """Per frame of a [F, C, H, W] video, the circular mean (row, col) of |x| on the torus.

    For a blob that is symmetric around its centre, the phase of the first Fourier coefficient of
    its intensity along an axis is 2 pi centre / size: an estimate independent of the code under test.
    """
    weight = video.abs().sum(dim=1).double()  # [F, H, W]
    size = weight.shape[-1]
    phase = torch.exp(2j * math.pi * torch.arange(size, dtype=torch.float64) / size)
    rows = torch.angle((weight.sum(2) * phase).sum(1)) * size / (2 * math.pi)
    cols = torch.angle((weight.sum(1) * phase).sum(1)) * size / (2 * math.pi)
    return torch.stack([rows, cols], dim=1) % size


@pytest.mark.parametrize("label, step", [(0, (0.0, 0.5)), (3, (0.0, -1.0)), (4, (0.5, 0.0)), (7, (-1.0, 0.0))])
def test_blob_moves_by_speed_along_direction(label, step):
    # A vanishing background leaves only the blob, whose centre must move by speed * direction per
    # frame, the short way round the torus.
    cfg = ToyDataConfig(size=32, background_grid=4, background_amplitude=1e-9)
    video = make_videos(torch.tensor([label]), cfg, torch.Generator().manual_seed(5))[0]
    moves = (_circular_centres(video).diff(dim=0) + 16) % 32 - 16
    torch.testing.assert_close(moves.float(), torch.tensor(step).expand_as(moves), atol=1e-3, rtol=0)


def test_the_frame_wraps_around():
    # Right at 1 px/frame from column 13.7: the blob leaves on the right and comes back on the left.
    b = periodic_blob(torch.tensor([[8.0, 13.7 + f] for f in range(8)]), 16, 1.5)  # [F, H, W]
    assert int(b[0, 8].argmax()) == 14 and int(b[3, 8].argmax()) == 1  # 16.7 = column 0.7
    # Hand value: column 0 of frame 2 (centre 15.7) is 0.3 px away the short way round.
    assert float(b[2, 8, 0]) == pytest.approx(math.exp(-(0.3**2) / (2 * 1.5**2)), rel=1e-6)


def test_background_is_periodic_and_interpolates_the_grid():
    grid = torch.randn(1, 2, 4, 4, generator=torch.Generator().manual_seed(0))
    bg = _upsample(grid, 16)
    torch.testing.assert_close(bg[..., ::4, ::4], grid)  # grid values sit at every 4th pixel
    torch.testing.assert_close(bg[..., 2, 0], (grid[..., 0, 0] + grid[..., 1, 0]) / 2)  # halfway: the mean
    torch.testing.assert_close(bg[..., 0, 14], (grid[..., 0, 3] + grid[..., 0, 0]) / 2)  # across the seam
    # Rolling the grid by one cell rolls the background by 4 pixels: no edge anywhere.
    torch.testing.assert_close(_upsample(grid.roll(1, dims=-1), 16), bg.roll(4, dims=-1))


def test_background_is_static_and_motion_is_subtle():
    cfg = ToyDataConfig()
    gen = torch.Generator().manual_seed(0)
    x = make_videos(sample_labels(64, cfg, gen), cfg, gen)
    assert x.shape == (64, 8, 3, 16, 16)
    # Far from the blob nothing changes: in every video some pixel never changes.
    largest_change = (x[:, 1:] - x[:, :-1]).abs().amax(dim=(1, 2))  # [B, H, W]
    assert float(largest_change.amin(dim=(1, 2)).max()) < 1e-3
    assert appearance_to_motion_ratio(x) > 20  # eq. 7: motion energy far below appearance


def test_every_blob_has_the_configured_strength():
    # The same draws with a vanishing blob give the background alone; what is left is colour x blob,
    # a rank-1 [C, H*W] matrix per frame whose singular value is |c| * |blob|, and on a torus
    # |blob|^2 = sum exp(-d^2 / sigma^2) = pi sigma^2 (the Gaussian integral; the sampling error is
    # ~exp(-pi^2 sigma^2), negligible at sigma 1.5).
    cfg = ToyDataConfig(blob_amplitude=0.7)
    labels = torch.arange(8)
    x = make_videos(labels, cfg, torch.Generator().manual_seed(2))
    background = make_videos(labels, ToyDataConfig(blob_amplitude=1e-12), torch.Generator().manual_seed(2))
    singular = torch.linalg.svdvals((x - background).flatten(-2).double())[..., 0]  # [B, F]
    torch.testing.assert_close(singular / math.sqrt(math.pi * 1.5**2), torch.full_like(singular, 0.7), rtol=1e-4, atol=0)


def test_same_generator_seed_same_videos():
    cfg = ToyDataConfig()
    a = make_videos(torch.arange(8), cfg, torch.Generator().manual_seed(3))
    b = make_videos(torch.arange(8), cfg, torch.Generator().manual_seed(3))
    assert torch.equal(a, b)


def test_condition_names_and_unit_range():
    assert condition_names(ToyDataConfig(directions=("left", "up"), speeds=(0.5,))) == ["left@0.5", "up@0.5"]
    assert to_unit_range(torch.tensor([-4.0, -2.0, 2.0])).tolist() == [0.0, 0.0, 1.0]


@pytest.mark.parametrize(
    "kwargs, error, match",
    [
        ({"num_frames": 2.5}, TypeError, "`num_frames` should be an int, got float"),
        ({"num_frames": 1}, ValueError, r"`num_frames` should be >= 2 \(motion needs two frames\), got 1"),
        ({"size": 2}, ValueError, "expected size >= 4, channels >= 1 and a background_grid >= 1 that divides size, got size=2"),
        ({"background_grid": 5}, ValueError, "a background_grid >= 1 that divides size, got size=16, channels=3, background_grid=5"),
        ({"directions": ("sideways",)}, ValueError, r"`directions` should be a non-empty subset of \['down', 'left'"),
        ({"speeds": (0.5, -1.0)}, ValueError, r"`speeds` should be a non-empty list of positive numbers, got \[0.5, -1.0\]"),
        ({"blob_sigma": 0.0}, ValueError, "`blob_sigma` should be positive, got 0.0"),
    ],
)
def test_config_errors(kwargs, error, match):
    with pytest.raises(error, match=match):
        ToyDataConfig(**kwargs)


def test_input_errors():
    cfg = ToyDataConfig()
    with pytest.raises(ValueError, match="expected a positive int number of labels, got 0"):
        sample_labels(0, cfg)
    with pytest.raises(TypeError, match=r"expected integer labels of shape \[B\], got \(2, 1\)"):
        make_videos(torch.zeros(2, 1, dtype=torch.long), cfg)
    with pytest.raises(TypeError, match=r"expected integer labels of shape \[B\], got list"):
        make_videos([0, 1], cfg)
    with pytest.raises(ValueError, match=r"labels should lie in \[0, 8\), got range \[0, 8\]"):
        make_videos(torch.tensor([0, 8]), cfg)
    with pytest.raises(ValueError, match=r"expected a video tensor \[B, F, C, H, W\] with F >= 2, got \(1, 1, 3, 4, 4\)"):
        appearance_to_motion_ratio(torch.zeros(1, 1, 3, 4, 4))


def test_finite_dataset_is_fixed_and_labelled_in_blocks():
    cfg = ToyDataConfig(videos_per_condition=3)
    x, y = make_dataset(cfg)
    x2, _ = make_dataset(cfg)
    assert torch.equal(x, x2) and x.shape == (24, 8, 3, 16, 16)
    assert y.tolist() == [c for c in range(8) for _ in range(3)]
    assert not torch.equal(x, make_dataset(ToyDataConfig(videos_per_condition=3, dataset_seed=1))[0])


def test_true_velocities_follow_the_label_layout():
    cfg = ToyDataConfig(directions=("up", "left"), speeds=(0.5, 2.0))
    # label = direction_index * len(speeds) + speed_index; (dy, dx) with rows growing downwards.
    assert true_velocities(torch.arange(4), cfg).tolist() == [[-0.5, 0.0], [-2.0, 0.0], [0.0, -0.5], [0.0, -2.0]]


def test_backgrounds_lie_in_the_basis_span():
    cfg = ToyDataConfig()
    # A video whose blob has vanished is pure background: its first frame must be reproduced
    # exactly by least squares on the basis (residual at float32 round-off).
    x = make_videos(torch.tensor([2]), ToyDataConfig(blob_amplitude=1e-12), torch.Generator().manual_seed(0))[0, 0]
    basis = background_basis(cfg)  # [16, 256]
    coeffs = torch.linalg.lstsq(basis.T, x.reshape(3, -1).T).solution
    torch.testing.assert_close(coeffs.T @ basis, x.reshape(3, -1), atol=1e-5, rtol=0)
    assert basis.shape == (16, 256)


def test_dataset_config_errors():
    with pytest.raises(ValueError, match="expected videos_per_condition >= 1 and dataset_seed >= 0, got 0 and 0"):
        ToyDataConfig(videos_per_condition=0)
    with pytest.raises(TypeError, match="`dataset_seed` should be an int, got float"):
        ToyDataConfig(dataset_seed=1.0)
