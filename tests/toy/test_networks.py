"""Critic/student = teacher + zero-initialised residual (MLP, conv or Wan): the teacher at start, only R trains."""

from __future__ import annotations

import math

import pytest
import torch

from msm_plugin.toy.networks import ResidualConfig, ResidualScore, build_residual, coordinate_channels, timestep_features

from .conftest import TINY_DATA

KINDS = [
    ResidualConfig(kind="mlp", width=32, text_dim=8),
    ResidualConfig(kind="mlp", width=32, depth=1, reads_base=True, text_dim=8),
    ResidualConfig(kind="conv", width=4, text_dim=8),
    ResidualConfig(kind="wan", width=16, depth=1, patch_size=(1, 2, 2), text_dim=8),
]


@pytest.mark.parametrize("config", KINDS, ids=lambda c: c.describe())
def test_starts_as_the_teacher_and_trains_only_the_residual(tiny_exact, config):
    teacher, encoder = tiny_exact
    torch.manual_seed(0)
    score = ResidualScore(teacher, build_residual(TINY_DATA, config))
    x = torch.randn(2, *TINY_DATA.video_shape)
    t = torch.full((2, TINY_DATA.num_frames), 400.0)
    cond = encoder(torch.tensor([0, 3]))
    assert torch.equal(score(x, cond, t), teacher(x, cond, t))  # exactly, not approximately
    assert not any(k.startswith("_base") or "videos" in k for k in score.state_dict())
    opt = torch.optim.SGD(score.parameters(), lr=0.1)
    score(x, cond, t).pow(2).mean().backward()
    opt.step()
    assert not torch.equal(score(x, cond, t), teacher(x, cond, t))  # after one step the output moves


def _changed_frames(config, frame=0):
    """Which output frames of a (non-zero) residual move when only input ``frame`` changes."""
    torch.manual_seed(1)
    residual = build_residual(TINY_DATA, config)
    for p in residual.parameters():  # a residual that is not zero
        torch.nn.init.normal_(p, std=0.3)
    x = torch.randn(1, *TINY_DATA.video_shape)
    y = x.clone()
    y[:, frame] += 0.5
    t, text = torch.tensor([400.0]), torch.randn(1, 8)
    with torch.no_grad():
        change = residual(y, t, text, y) - residual(x, t, text, x)
    return [f for f in range(TINY_DATA.num_frames) if float(change[:, f].abs().max()) > 0]


def test_what_each_kind_sees_over_time():
    # The MLP sees the whole clip at once; a convolution of kernel 3 reaches one frame further per
    # layer: input + output layer (depth 1) = frames 0..2 of 4 from frame 0.
    assert _changed_frames(ResidualConfig(kind="mlp", width=8, text_dim=8)) == [0, 1, 2, 3]
    assert _changed_frames(ResidualConfig(kind="conv", width=2, depth=1, text_dim=8)) == [0, 1, 2]


def test_coordinate_channels_hand_values():
    c = coordinate_channels(2, 3, 2, 5)
    assert c.shape == (2, 3, 3, 2, 5)
    assert c[0, 0, 0, :, 0].tolist() == [-1.0, 1.0]  # row
    assert c[0, 1, 0, 0].tolist() == [-1.0, -0.5, 0.0, 0.5, 1.0]  # column
    assert c[1, 2, :, 0, 0].tolist() == [-1.0, 0.0, 1.0]  # frame
    assert coordinate_channels(1, 1, 1, 1).abs().sum() == 0


def test_timestep_features_hand_values():
    f = timestep_features(torch.tensor([0.0, 250.0]), frequencies=2)
    # [sin(pi t/1000), sin(2 pi t/1000), cos(pi t/1000), cos(2 pi t/1000)]
    expected = torch.tensor([[0.0, 0.0, 1.0, 1.0], [math.sin(math.pi / 4), 1.0, math.cos(math.pi / 4), 0.0]])
    torch.testing.assert_close(f, expected, atol=1e-6, rtol=0)


@pytest.mark.parametrize(
    "kwargs, match",
    [
        ({"kind": "unet"}, r"`kind` should be one of \('mlp', 'conv', 'wan'\), got 'unet'"),
        ({"width": 0}, "`width` should be a positive int, got 0"),
        ({"depth": 1.5}, "`depth` should be a positive int, got 1.5"),
        ({"kind": "wan", "width": 40}, "a wan residual's `width` should be a multiple of 16 .heads of 16., got 40"),
        ({"patch_size": (1, 2)}, r"`patch_size` should be 3 positive ints \(t, h, w\), got \(1, 2\)"),
    ],
)
def test_config_errors(kwargs, match):
    with pytest.raises(ValueError, match=match):
        ResidualConfig(**kwargs)


def test_input_errors(tiny_exact):
    teacher, encoder = tiny_exact
    score = ResidualScore(teacher, build_residual(TINY_DATA, KINDS[0]))
    x = torch.zeros(1, *TINY_DATA.video_shape)
    with pytest.raises(ValueError, match=r"expected noisy_image_or_video \[B, F, C, H, W\] and timestep \[B, F\]"):
        score(x, encoder(torch.tensor([0])), torch.zeros(1))
    with pytest.raises(ValueError, match="needs one timestep per sample"):
        score(x, encoder(torch.tensor([0])), torch.tensor([[0.0, 1.0, 2.0, 3.0]]))
    with pytest.raises(TypeError, match="expected a ResidualConfig, got dict"):
        build_residual(TINY_DATA, {"kind": "mlp"})
