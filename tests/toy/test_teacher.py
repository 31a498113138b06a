"""Teacher pieces: flow schedule, the exact posterior-mean teacher against a direct reference, the sampler, checks."""

from __future__ import annotations

import math

import pytest
import torch
from torch import nn

from msm_plugin.toy.data import ToyDataConfig
from msm_plugin.toy.teacher import ClassTextEncoder, ExactTeacher, FlowMatchScheduler, NetConfig, build_score_model, sample_with_cfg

from .conftest import TINY_DATA


def test_scheduler_hand_values_and_inverse():
    s = FlowMatchScheduler()
    x, eps = torch.full((2, 1, 2, 2), 2.0), torch.full((2, 1, 2, 2), -1.0)
    t = torch.tensor([0.0, 750.0])
    xt = s.add_noise(x, eps, t)
    assert xt[0].unique().tolist() == [2.0] and xt[1].unique().tolist() == [0.25 * 2.0 - 0.75]
    flow = s.flow_from_x0(xt[1:], x[1:], t[1:])
    torch.testing.assert_close(flow, eps[1:] - x[1:])  # v* = eps - x0
    torch.testing.assert_close(s.x0_from_flow(xt[1:], flow, t[1:]), x[1:])


def _posterior_mean_reference(xt, sigma, videos, keep):
    """E[x0 | x_t] by Bayes' rule written out: Gaussian likelihood N(x_t; (1-s) x_i, s^2 I) per video, float64."""
    num, den = torch.zeros_like(videos[0], dtype=torch.float64), 0.0
    log_liks = [float(-((xt - (1 - sigma) * v) ** 2).sum() / (2 * sigma**2)) for v in videos.double()]
    top = max(l for l, k in zip(log_liks, keep) if k)
    for v, log_lik, k in zip(videos.double(), log_liks, keep):
        if k:
            w = math.exp(log_lik - top)
            num, den = num + w * v, den + w
    return num / den


@pytest.mark.parametrize("sigma", [0.02, 0.3, 0.9])
def test_exact_teacher_matches_bayes_rule(tiny_exact, sigma):
    teacher, encoder = tiny_exact
    gen = torch.Generator().manual_seed(1)
    labels = torch.tensor([0, 2, TINY_DATA.num_conditions])  # two conditions and the null one
    x0 = teacher.videos[torch.tensor([0, 7, 5])]
    xt = ((1 - sigma) * x0 + sigma * torch.randn(x0.shape, generator=gen)).double()
    t = torch.full((3, TINY_DATA.num_frames), sigma * 1000)
    out = teacher(xt.float(), encoder(labels), t).double()
    for b, label in enumerate(labels.tolist()):
        keep = [label == TINY_DATA.num_conditions or int(y) == label for y in teacher.labels]
        expected = _posterior_mean_reference(xt[b].float().double(), sigma, teacher.videos, keep)
        # float32 output of a float64 mean of float32 videos: a few float32 ulps of values ~1.
        torch.testing.assert_close(out[b], expected, atol=1e-5, rtol=0)


def test_exact_teacher_limits(tiny_exact):
    teacher, encoder = tiny_exact
    per = TINY_DATA.videos_per_condition
    # Pure noise (sigma = 1): every video of the condition is equally likely -> the conditional mean.
    t1 = torch.full((1, TINY_DATA.num_frames), 1000.0)
    out = teacher(torch.randn(1, *TINY_DATA.video_shape), encoder(torch.tensor([1])), t1)
    torch.testing.assert_close(out[0], teacher.videos[per:2 * per].mean(0), atol=1e-5, rtol=0)
    null = teacher(torch.randn(1, *TINY_DATA.video_shape), encoder(torch.tensor([TINY_DATA.num_conditions])), t1)
    torch.testing.assert_close(null[0], teacher.videos.mean(0), atol=1e-5, rtol=0)  # the null label: all videos
    # Low noise around a data video: the posterior picks that video.
    t = torch.full((1, TINY_DATA.num_frames), 20.0)
    xt = 0.98 * teacher.videos[4:5] + 0.02 * torch.randn(1, *TINY_DATA.video_shape)
    torch.testing.assert_close(teacher(xt, encoder(torch.tensor([1])), t), teacher.videos[4:5], atol=1e-5, rtol=0)


def test_sampler_returns_data_videos(tiny_exact):
    teacher, encoder = tiny_exact
    labels = torch.arange(TINY_DATA.num_conditions)
    noise = torch.randn(len(labels), *TINY_DATA.video_shape, generator=torch.Generator().manual_seed(0))
    out = sample_with_cfg(teacher, encoder(labels), encoder.null(len(labels)), noise, steps=20, guidance_scale=0.0)
    # The exact probability-flow ODE ends on a data video of the right condition.
    dist = torch.cdist(out.flatten(1), teacher.videos.flatten(1))
    nearest = dist.argmin(dim=1)
    assert torch.equal(teacher.labels[nearest], labels)
    assert float(dist.min(dim=1).values.max()) < 1e-3


class ConstantX0(nn.Module):
    """x0 = c1 for condition label 1 and c0 for label 0, whatever x_t and t."""

    def __init__(self, c1, c0):
        super().__init__()
        self.c1, self.c0, self.scheduler = c1, c0, FlowMatchScheduler()

    def get_scheduler(self):
        return self.scheduler

    def forward(self, noisy_image_or_video, conditional_dict, timestep):
        tok = conditional_dict["labels"].reshape(-1, 1, 1, 1, 1).float()
        return torch.ones_like(noisy_image_or_video) * (tok * self.c1 + (1 - tok) * self.c0)


def test_cfg_sampler_hand_value():
    # x0 guided = c1 + g (c1 - c0) is constant, so every step keeps x0 and the last returns it.
    out = sample_with_cfg(ConstantX0(0.3, -0.2), {"labels": torch.ones(2)}, {"labels": torch.zeros(2)},
                          torch.randn(2, 3, 1, 2, 2), steps=7, guidance_scale=2.0)
    torch.testing.assert_close(out, torch.full_like(out, 0.3 + 2.0 * 0.5))


def test_class_text_encoder_tokens_and_null():
    enc = ClassTextEncoder(3, 4)
    cond = enc(torch.tensor([0, 2]))
    assert cond["prompt_embeds"].shape == (2, 1, 4) and cond["labels"].tolist() == [0, 2]
    torch.testing.assert_close(enc.null(2)["prompt_embeds"][:, 0], enc.embedding.weight[3].expand(2, 4))
    assert enc.null(2)["labels"].tolist() == [3, 3]


@pytest.mark.parametrize(
    "kwargs, error, match",
    [
        ({"num_layers": 1.0}, TypeError, "`num_layers` should be an int, got float"),
        ({"ffn_dim": 0}, ValueError, "`ffn_dim` should be positive, got 0"),
        ({"patch_size": (4, 4)}, ValueError, r"`patch_size` should have 3 entries \(t, h, w\), got \(4, 4\)"),
    ],
)
def test_net_config_errors(kwargs, error, match):
    with pytest.raises(error, match=match):
        NetConfig(**kwargs)


def test_input_errors(tiny_exact):
    teacher, encoder = tiny_exact
    with pytest.raises(ValueError, match="`num_train_timestep` should be a positive int, got 0"):
        FlowMatchScheduler(0)
    with pytest.raises(ValueError, match=r"expected x and noise of one shape .* got x \(2, 3\), noise \(2, 4\)"):
        FlowMatchScheduler().add_noise(torch.zeros(2, 3), torch.zeros(2, 4), torch.zeros(2))
    with pytest.raises(ValueError, match=r"expected class labels \[B\] in \[0, 4\] \(the last is null\)"):
        encoder(torch.tensor([5]))
    with pytest.raises(ValueError, match=r"is not divisible by patch_size \(1, 4, 4\)"):
        build_score_model(ToyDataConfig(size=10, background_grid=5), NetConfig())
    with pytest.raises(ValueError, match=r"expected videos \[N, F, C, H, W\] and labels \[N\], got \(2, 3\)"):
        ExactTeacher(torch.zeros(2, 3), torch.zeros(2), 1)
    with pytest.raises(ValueError, match=r"labels should lie in \[0, 1\), got range \[0, 1\]"):
        ExactTeacher(torch.zeros(2, 2, 1, 1, 1), torch.tensor([0, 1]), 1)
    x = torch.zeros(1, *TINY_DATA.video_shape)
    with pytest.raises(ValueError, match=r"expected noisy_image_or_video \[B, F, C, H, W\] and timestep \[B, F\]"):
        teacher(x, encoder(torch.tensor([0])), torch.zeros(1))
    with pytest.raises(ValueError, match=r"expected conditional_dict\['labels'\] of shape \[B\] = \[1\], got \(2,\)"):
        teacher(x, {"labels": torch.tensor([0, 1])}, torch.zeros(1, TINY_DATA.num_frames))
    with pytest.raises(ValueError, match="`steps` should be a positive int, got 0"):
        sample_with_cfg(teacher, encoder(torch.tensor([0])), encoder.null(1), x, steps=0, guidance_scale=0.0)
