"""Critic/student = teacher + zero-initialised Wan residual: equal to the teacher at start, only R trains."""

from __future__ import annotations

import pytest
import torch

from msm_plugin.toy.residual import ResidualScore, build_residual, coordinate_channels

from .conftest import TINY_DATA, TINY_NET


def test_starts_as_the_teacher_and_trains_only_the_residual(tiny_exact):
    teacher, encoder = tiny_exact
    torch.manual_seed(0)
    score = ResidualScore(teacher, build_residual(TINY_DATA, TINY_NET))
    x = torch.randn(2, *TINY_DATA.video_shape)
    t = torch.full((2, TINY_DATA.num_frames), 400.0)
    cond = encoder(torch.tensor([0, 3]))
    assert torch.equal(score(x, cond, t), teacher(x, cond, t))  # exactly, not approximately
    assert not any(k.startswith("_base") or "videos" in k for k in score.state_dict())
    opt = torch.optim.SGD(score.parameters(), lr=0.1)
    score(x, cond, t).pow(2).mean().backward()
    opt.step()
    # The zero output layer receives a gradient first; after one step the output moves.
    assert float(score.residual.proj_out.weight.detach().abs().max()) > 0
    assert not torch.equal(score(x, cond, t), teacher(x, cond, t))


def test_coordinate_channels_hand_values():
    c = coordinate_channels(2, 3, 2, 5)
    assert c.shape == (2, 3, 3, 2, 5)
    assert c[0, 0, 0, :, 0].tolist() == [-1.0, 1.0]  # row
    assert c[0, 1, 0, 0].tolist() == [-1.0, -0.5, 0.0, 0.5, 1.0]  # column
    assert c[1, 2, :, 0, 0].tolist() == [-1.0, 0.0, 1.0]  # frame
    assert coordinate_channels(1, 1, 1, 1).abs().sum() == 0


def test_input_errors(tiny_exact):
    teacher, encoder = tiny_exact
    score = ResidualScore(teacher, build_residual(TINY_DATA, TINY_NET))
    x = torch.zeros(1, *TINY_DATA.video_shape)
    with pytest.raises(ValueError, match=r"expected noisy_image_or_video \[B, F, C, H, W\] and timestep \[B, F\]"):
        score(x, encoder(torch.tensor([0])), torch.zeros(1))
    with pytest.raises(ValueError, match="needs one timestep per sample"):
        score(x, encoder(torch.tensor([0])), torch.tensor([[0.0, 1.0, 2.0, 3.0]]))


class _Zero(torch.nn.Module):
    """A teacher that predicts 0, so the score's output is its residual alone (exactly)."""

    def forward(self, noisy_image_or_video, conditional_dict, timestep):
        return torch.zeros_like(noisy_image_or_video)


def _perturbed_frames(score, encoder, frame=2):
    """Which output frames move when only input ``frame`` changes."""
    torch.manual_seed(1)
    torch.nn.init.normal_(score.residual.proj_out.weight, std=0.1)  # a residual that is not zero
    x = torch.randn(1, *TINY_DATA.video_shape)
    t = torch.full((1, TINY_DATA.num_frames), 400.0)
    cond = encoder(torch.tensor([1]))
    y = x.clone()
    y[:, frame] += 0.5
    with torch.no_grad():
        change = score(y, cond, t) - score(x, cond, t)
    return [f for f in range(TINY_DATA.num_frames) if float(change[:, f].abs().max()) > 0]


def test_framewise_residual_has_no_temporal_structure(tiny_exact):
    _, encoder = tiny_exact
    torch.manual_seed(0)
    joint = ResidualScore(_Zero(), build_residual(TINY_DATA, TINY_NET))
    torch.manual_seed(0)
    framewise = ResidualScore(_Zero(), build_residual(TINY_DATA, TINY_NET), framewise=True)
    # Frame-wise, a change of frame 2 reaches frame 2 only; jointly (attention over frames), all frames.
    assert _perturbed_frames(framewise, encoder) == [2]
    assert _perturbed_frames(joint, encoder) == list(range(TINY_DATA.num_frames))
