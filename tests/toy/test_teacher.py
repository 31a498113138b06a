"""Teacher pieces: flow-matching schedule, CFG Euler sampler, wrapper shapes, disk cache, input checks."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from msm_plugin.toy.data import ToyDataConfig
from msm_plugin.toy.teacher import (
    CACHE_ENV,
    ClassTextEncoder,
    FlowMatchScheduler,
    TeacherConfig,
    build_score_model,
    default_cache_dir,
    load_or_train_teacher,
    sample_with_cfg,
)

from .conftest import TINY_DATA, TINY_TEACHER


def test_scheduler_hand_values_and_inverse():
    s = FlowMatchScheduler()
    x, eps = torch.full((2, 1, 2, 2), 2.0), torch.full((2, 1, 2, 2), -1.0)
    t = torch.tensor([0.0, 750.0])
    xt = s.add_noise(x, eps, t)
    assert xt[0].unique().tolist() == [2.0] and xt[1].unique().tolist() == [0.25 * 2.0 - 0.75]
    flow = s.flow_from_x0(xt[1:], x[1:], t[1:])
    torch.testing.assert_close(flow, eps[1:] - x[1:])  # v* = eps - x0
    torch.testing.assert_close(s.x0_from_flow(xt[1:], flow, t[1:]), x[1:])


class ConstantFlow(nn.Module):
    """Velocity c1 for condition token 1 and c0 for token 0, whatever x_t and t."""

    def __init__(self, c1, c0):
        super().__init__()
        self.c1, self.c0, self.scheduler = c1, c0, FlowMatchScheduler()

    def get_scheduler(self):
        return self.scheduler

    def flow(self, noisy_image_or_video, conditional_dict, timestep):
        tok = conditional_dict["prompt_embeds"].reshape(-1, 1, 1, 1, 1)
        return torch.ones_like(noisy_image_or_video) * (tok * self.c1 + (1 - tok) * self.c0)


def test_cfg_euler_sampler_integrates_a_constant_flow_exactly():
    # dx/dsigma = v with v = c1 + g (c1 - c0) constant: x(0) = x(1) - v.
    score = ConstantFlow(0.3, -0.2)
    noise = torch.randn(2, 3, 1, 2, 2)
    out = sample_with_cfg(score, {"prompt_embeds": torch.ones(2, 1, 1)}, {"prompt_embeds": torch.zeros(2, 1, 1)},
                          noise, steps=7, guidance_scale=2.0)
    torch.testing.assert_close(out, noise - (0.3 + 2.0 * 0.5))


def test_wrapper_shapes_and_x0(tiny_teacher):
    score, encoder = tiny_teacher
    x = torch.randn(2, 4, 3, 8, 8)
    t = torch.full((2, 4), 300.0)
    cond = encoder(torch.tensor([0, 1]))
    flow = score.flow(x, cond, t)
    assert flow.shape == x.shape
    torch.testing.assert_close(score(x, cond, t), x - 0.3 * flow)


def test_cache_reuses_the_trained_teacher(tmp_path, monkeypatch):
    first = load_or_train_teacher(TINY_DATA, TINY_TEACHER, cache_dir=tmp_path, progress=False)
    second = load_or_train_teacher(TINY_DATA, TINY_TEACHER, cache_dir=tmp_path, progress=False)
    assert (first[2]["cached"], second[2]["cached"]) == (False, True)
    assert first[2]["path"] == second[2]["path"] and len(list(tmp_path.iterdir())) == 1
    for a, b in zip(first[0].state_dict().values(), second[0].state_dict().values()):
        assert torch.equal(a, b)
    assert torch.equal(first[1].embedding.weight, second[1].embedding.weight)
    assert not any(p.requires_grad for p in second[0].parameters())
    monkeypatch.setenv(CACHE_ENV, str(tmp_path / "elsewhere"))
    assert default_cache_dir() == tmp_path / "elsewhere"


@pytest.mark.parametrize(
    "kwargs, error, match",
    [
        ({"num_layers": 1.0}, TypeError, "`num_layers` should be an int, got float"),
        ({"train_steps": 0}, ValueError, "`train_steps` should be positive, got 0"),
        ({"null_prob": 1.0}, ValueError, "expected lr > 0, 0 <= null_prob < 1"),
        ({"patch_size": (4, 4)}, ValueError, r"`patch_size` should have 3 entries \(t, h, w\), got \(4, 4\)"),
    ],
)
def test_config_errors(kwargs, error, match):
    with pytest.raises(error, match=match):
        TeacherConfig(**kwargs)


def test_input_errors(tiny_teacher):
    score, encoder = tiny_teacher
    with pytest.raises(ValueError, match="`num_train_timestep` should be a positive int, got 0"):
        FlowMatchScheduler(0)
    with pytest.raises(ValueError, match=r"expected x and noise of one shape .* got x \(2, 3\), noise \(2, 4\)"):
        FlowMatchScheduler().add_noise(torch.zeros(2, 3), torch.zeros(2, 4), torch.zeros(2))
    with pytest.raises(ValueError, match=r"expected class labels \[B\] in \[0, 4\] \(the last is null\)"):
        encoder(torch.tensor([5]))
    with pytest.raises(ValueError, match=r"is not divisible by patch_size \(1, 4, 4\)"):
        build_score_model(ToyDataConfig(size=10), TeacherConfig())
    x = torch.zeros(1, 4, 3, 8, 8)
    with pytest.raises(ValueError, match=r"expected noisy_image_or_video \[B, F, C, H, W\] and timestep \[B, F\]"):
        score.flow(x, encoder(torch.tensor([0])), torch.zeros(1))
    with pytest.raises(ValueError, match="needs one timestep per sample"):
        score.flow(x, encoder(torch.tensor([0])), torch.tensor([[0.0, 1.0, 2.0, 3.0]]))


def test_class_text_encoder_null_token():
    enc = ClassTextEncoder(3, 4)
    torch.testing.assert_close(enc.null(2)["prompt_embeds"][:, 0], enc.embedding.weight[3].expand(2, 4))
