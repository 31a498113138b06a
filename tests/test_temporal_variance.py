"""The temporal variance regulariser: values, gradients, the hinge, masks, options, the registry term."""

import logging
import math

import numpy as np
import pytest
import torch

from msm_plugin import available_losses, get_loss
from msm_plugin.config import build_extra_losses, parse_extra_losses
from msm_plugin.hosts import ExtraLosses, get_host
from msm_plugin.losses import (
    TemporalVarianceConfig,
    TemporalVarianceLoss,
    TemporalVarianceTerm,
    temporal_variance_loss,
)
from msm_plugin.context import LossContext
from tests.msm_case import random_inputs
from tests.reference import msm_reference, temporal_variance_reference

SHAPE = (3, 5, 2, 3, 3)


def _video(seed=0, shape=SHAPE, scale=1.0):
    g = torch.Generator().manual_seed(seed)
    return (scale * torch.randn(shape, generator=g, dtype=torch.float64)).requires_grad_(True)


def _check(loss, x, ref_loss, ref_grad):
    """float64 on both sides, summed in different orders: a few ulps apart, far inside these bounds."""
    (grad,) = torch.autograd.grad(loss, x)
    assert loss.dtype == torch.float64
    assert math.isclose(loss.item(), ref_loss, rel_tol=1e-12)
    torch.testing.assert_close(grad, torch.from_numpy(ref_grad), rtol=1e-10, atol=1e-14)


class TestValueAndGradient:
    def test_hand_computed_two_frames(self):
        # one pixel, frames 0 and 0.2: mean 0.1, v = (0.1^2 + 0.1^2) / 2 = 0.01, loss -log(0.010001)
        x = torch.tensor([0.0, 0.2], dtype=torch.float64).reshape(1, 2, 1, 1, 1).requires_grad_(True)
        loss = temporal_variance_loss(x)
        assert loss.item() == pytest.approx(-math.log(0.010001), rel=1e-14)
        loss.backward()
        # d/dx_f = -(1 / (v + eps)) * 2 (x_f - 0.1) / 2 = -/+ 0.1 / 0.010001
        torch.testing.assert_close(x.grad.flatten(), torch.tensor([0.1, -0.1], dtype=torch.float64) / 0.010001, rtol=1e-14, atol=0)

    def test_the_source_definition_on_a_float32_video(self):
        # Adaptive Video Distillation's definition: the population variance over dim 1 of the
        # video in float64, averaged over everything else, then -log(. + 1e-6)
        x = _video(scale=0.3).detach().float()
        expected = -torch.log(torch.var(x.double(), dim=1, unbiased=False).mean() + 1e-6)
        assert torch.equal(temporal_variance_loss(x, threshold=None), expected)

    @pytest.mark.parametrize("scale", [0.05, 1.0, 20.0])
    def test_matches_the_reference(self, scale):
        x = _video(scale=scale)
        _, ref_loss, ref_grad = temporal_variance_reference(x.detach().numpy())
        _check(temporal_variance_loss(x, threshold=None), x, ref_loss, ref_grad)

    @pytest.mark.parametrize("mask_shape", ["frames", "elements"])
    def test_gradient_mask_counts_only_unmasked_frames(self, mask_shape):
        frames = torch.tensor([[False, True, True, True, True], [False, False, True, True, False], [True] * 5])
        mask = frames if mask_shape == "frames" else frames[:, :, None, None, None].expand(SHAPE).clone()
        if mask_shape == "elements":
            mask[2, 0, 1, 2, 2] = False  # one masked element takes its frame out
            frames = frames.clone()
            frames[2, 0] = False
        x = _video(scale=0.2)
        _, ref_loss, ref_grad = temporal_variance_reference(x.detach().numpy(), frames=frames.numpy())
        loss = temporal_variance_loss(x, gradient_mask=mask, threshold=None)
        _check(loss, x, ref_loss, ref_grad)
        (grad,) = torch.autograd.grad(temporal_variance_loss(x, gradient_mask=mask, threshold=None), x)
        assert torch.equal(grad[~frames], torch.zeros_like(grad[~frames]))  # no gradient where the host says none

    def test_a_sample_with_one_counted_frame_is_left_out(self):
        x = _video(scale=0.2)
        frames = torch.tensor([[True, False, False, False, False], [True] * 5, [True] * 5])
        _, ref_loss, ref_grad = temporal_variance_reference(x.detach().numpy()[1:])
        loss = temporal_variance_loss(x, gradient_mask=frames, threshold=None)
        (grad,) = torch.autograd.grad(loss, x)
        assert math.isclose(loss.item(), ref_loss, rel_tol=1e-12)
        torch.testing.assert_close(grad[1:], torch.from_numpy(ref_grad), rtol=1e-10, atol=1e-14)
        assert torch.equal(grad[0], torch.zeros_like(grad[0]))

    def test_gradcheck_float64(self):
        x = _video(shape=(2, 4, 1, 2, 2), scale=0.1)
        frames = torch.tensor([[True, True, False, True], [True] * 4])
        assert torch.autograd.gradcheck(lambda v: temporal_variance_loss(v, threshold=None), (x,))
        assert torch.autograd.gradcheck(lambda v: temporal_variance_loss(v, gradient_mask=frames, threshold=None), (x,))

    def test_static_video_gives_minus_log_eps_and_no_gradient(self):
        x = torch.ones(2, 3, 1, 2, 2, dtype=torch.float64, requires_grad=True)
        loss = temporal_variance_loss(x, eps=1e-4)
        assert loss.item() == pytest.approx(-math.log(1e-4), rel=1e-15)
        loss.backward()
        assert torch.equal(x.grad, torch.zeros_like(x))

    def test_bf16_video_is_measured_in_float64(self):
        x = _video(scale=0.02).detach().bfloat16().requires_grad_(True)
        _, ref_loss, ref_grad = temporal_variance_reference(x.detach().double().numpy())
        loss = temporal_variance_loss(x)
        (grad,) = torch.autograd.grad(loss, x)
        assert loss.dtype == torch.float64 and math.isclose(loss.item(), ref_loss, rel_tol=1e-12)
        # the gradient reaching the bf16 video is rounded once to bf16 (unit roundoff 2^-8)
        assert grad.dtype == torch.bfloat16
        torch.testing.assert_close(grad.double(), torch.from_numpy(ref_grad), rtol=2**-8, atol=0)


class TestHinge:
    def test_active_below_the_variance_bound_inactive_above(self):
        # -log(v + eps) >= 0.8  <=>  v <= exp(-0.8) - eps = 0.4493...
        bound = math.exp(-0.8) - 1e-6
        for ratio, active in ((0.99, True), (1.01, False)):
            x = torch.tensor([-1.0, 1.0], dtype=torch.float64).reshape(1, 2, 1, 1, 1) * math.sqrt(ratio * bound)
            x.requires_grad_(True)
            loss = temporal_variance_loss(x)
            assert loss.requires_grad is active
            assert (loss.item() == -math.log(ratio * bound + 1e-6)) if active else (loss.item() == 0.0)

    def test_the_hinge_includes_its_threshold(self):
        x = _video(scale=0.1)
        threshold = temporal_variance_loss(x, threshold=None).item()
        assert temporal_variance_loss(x, threshold=threshold).item() == threshold
        assert temporal_variance_loss(x, threshold=math.nextafter(threshold, math.inf)).item() == 0.0

    def test_inactive_adds_exactly_nothing_to_a_host_loss(self):
        x = _video(scale=1.0)
        def host():
            return (x.double() ** 2).mean()

        total, logs = ExtraLosses([TemporalVarianceTerm()]).add(host(), {}, LossContext(x, x.detach(), x.detach()))
        (g_total,) = torch.autograd.grad(total, x)
        plain = host()
        (g_host,) = torch.autograd.grad(plain, x)
        assert logs["temporal_variance_active"] == 0.0 and logs["temporal_variance_loss"].item() < 0.8
        assert torch.equal(total, plain) and torch.equal(g_total, g_host)

    def test_no_threshold_is_always_on(self):
        x = _video(scale=5.0)  # v ~ 25 * 4/5 (population variance of 5 frames): -log(v) ~ -3
        loss = temporal_variance_loss(x, threshold=None)
        assert loss.requires_grad and loss.item() < -2


class TestModuleAndTerm:
    def test_module_is_weight_times_function(self):
        x = _video(scale=0.1)
        module = TemporalVarianceLoss(weight=0.3, threshold=None)
        assert module.weight == 0.3
        assert torch.equal(module(x), 0.3 * temporal_variance_loss(x, threshold=None))
        assert TemporalVarianceLoss().weight == 0.05
        assert TemporalVarianceLoss(0.2, config=TemporalVarianceConfig(eps=1e-3)).config == TemporalVarianceConfig(weight=0.2, eps=1e-3)
        assert repr(module) == "TemporalVarianceLoss(weight=0.3, threshold=None, eps=1e-06)"

    def test_registered_with_its_options_class(self):
        assert "temporal_variance" in available_losses()
        factory = get_loss("temporal_variance")
        assert factory is TemporalVarianceTerm and factory.options_class is TemporalVarianceConfig
        term = factory(TemporalVarianceConfig(weight=0.2))
        assert (term.name, term.weight) == ("temporal_variance", 0.2)
        assert repr(term) == "TemporalVarianceTerm(weight=0.2, threshold=0.8, eps=1e-06)"

    @pytest.mark.parametrize("scale, active", [(0.1, 1.0), (3.0, 0.0)])
    def test_term_logs(self, scale, active):
        x = _video(scale=scale)
        v, ref_loss, ref_grad = temporal_variance_reference(x.detach().numpy())
        loss, logs = TemporalVarianceTerm()(LossContext(x, x.detach(), x.detach()))
        assert set(logs) == {"temporal_variance_variance", "temporal_variance_loss", "temporal_variance_active"}
        assert logs["temporal_variance_variance"].item() == pytest.approx(v, rel=1e-12)
        assert logs["temporal_variance_loss"].item() == pytest.approx(ref_loss, rel=1e-12)  # logged even when not added
        assert logs["temporal_variance_active"] == active
        assert not logs["temporal_variance_loss"].requires_grad
        assert loss.item() == (pytest.approx(ref_loss, rel=1e-12) if active else 0.0)

    def test_nothing_counted_warns_and_adds_nothing(self, caplog):
        x = _video()
        mask = torch.tensor([[True, False, False, False, False]] * 3)
        with caplog.at_level(logging.WARNING, logger="msm_plugin"):
            loss, logs = TemporalVarianceTerm(threshold=None)(LossContext(x, x.detach(), x.detach(), gradient_mask=mask))
        assert "no sample has two frames outside the gradient mask" in caplog.text
        assert loss.item() == 0.0 and not loss.requires_grad
        assert logs["temporal_variance_active"] == 0.0 and math.isnan(logs["temporal_variance_variance"].item())


class TestComposesWithMSM:
    def test_one_config_line_builds_both_and_the_gradient_is_the_sum(self):
        x, real, fake = random_inputs(3, (2, 4, 2, 3, 3), torch.float64)
        with torch.no_grad():
            x.mul_(0.2)  # low temporal variance: the hinge is on
        losses = build_extra_losses({"extra_losses": ["msm", "temporal_variance"], "msm": {"lam": 0.5}, "temporal_variance": {"weight": 0.1}})
        assert [(loss.name, loss.weight) for loss in losses] == [("msm", 0.5), ("temporal_variance", 0.1)]
        host = torch.zeros((), dtype=torch.float64)
        total, logs = ExtraLosses(losses).add(host, {}, LossContext(x, real, fake))
        (grad,) = torch.autograd.grad(total, x)
        msm, msm_grad = msm_reference(x.detach().numpy(), real.numpy(), fake.numpy())
        _, tv, tv_grad = temporal_variance_reference(x.detach().numpy())
        assert logs["temporal_variance_active"] == 1.0
        assert total.item() == pytest.approx(0.5 * msm + 0.1 * tv, rel=1e-12)
        torch.testing.assert_close(grad, torch.from_numpy(0.5 * msm_grad + 0.1 * tv_grad), rtol=1e-10, atol=1e-14)

    def test_unequal_timesteps_do_not_concern_it(self):
        causvid = get_host("causvid")
        config = {"real_task_type": "causal_video"}  # one teacher timestep per block: MSM's strict policy refuses it
        with pytest.raises(ValueError, match=r"real_task_type is causal_video"):
            causvid.build_losses({**config, "extra_losses": ["msm"]})
        (term,) = causvid.build_losses({**config, "extra_losses": ["temporal_variance"]})
        assert term.weight == 0.05


class TestErrors:
    @pytest.mark.parametrize("value, error, message", [
        ([[0.0, 1.0]], TypeError, r"^expected `generated` to be a torch.Tensor, got list$"),
        (torch.zeros(2, 3, 4, 4), ValueError, r"^expected `generated` to be a video tensor \[B, F, C, H, W\] with F >= 2, got shape \(2, 3, 4, 4\)$"),
        (torch.zeros(2, 1, 1, 4, 4), ValueError, r"^expected `generated` to be a video tensor \[B, F, C, H, W\] with F >= 2, got shape \(2, 1, 1, 4, 4\)$"),
        (torch.zeros(2, 3, 1, 4, 4, dtype=torch.long), TypeError, r"^expected `generated` to be a floating-point tensor, got torch.int64$"),
    ])
    def test_bad_video(self, value, error, message):
        with pytest.raises(error, match=message):
            temporal_variance_loss(value)

    def test_bad_mask(self):
        with pytest.raises(ValueError, match=r"^expected `gradient_mask` of shape \[B, F, C, H, W\] = \(2, 3, 1, 4, 4\) or \[B, F\] = \(2, 3\), got \(2, 4\)$"):
            temporal_variance_loss(torch.zeros(2, 3, 1, 4, 4), gradient_mask=torch.ones(2, 4, dtype=torch.bool))

    def test_config_and_options_together_or_a_wrong_config(self):
        with pytest.raises(TypeError, match=r"^pass either `config` or temporal variance options \(eps\), not both$"):
            temporal_variance_loss(torch.zeros(1, 2, 1, 1, 1), config=TemporalVarianceConfig(), eps=1e-3)
        with pytest.raises(TypeError, match=r"^`config` should be an instance of TemporalVarianceConfig, got dict$"):
            TemporalVarianceTerm({"weight": 0.1})

    @pytest.mark.parametrize("options", [{"weight": 0.1}, {"config": TemporalVarianceConfig(weight=0.1)}])
    def test_the_function_refuses_the_weight_it_does_not_apply(self, options):
        with pytest.raises(ValueError, match=r"^temporal_variance_loss does not apply `weight` \(it returns the unweighted loss: weight it yourself, or use TemporalVarianceLoss\)$"):
            temporal_variance_loss(torch.zeros(1, 2, 1, 1, 1), **options)

    def test_the_function_accepts_the_default_weight_and_the_module_applies_its_own(self):
        static = torch.zeros(1, 4, 1, 2, 2)
        plain = temporal_variance_loss(static)
        assert torch.equal(temporal_variance_loss(static, weight=0.05), plain)
        assert torch.equal(temporal_variance_loss(static, config=TemporalVarianceConfig()), plain)
        assert TemporalVarianceLoss(config=TemporalVarianceConfig(weight=0.1))(static).item() == pytest.approx(0.1 * plain.item(), rel=1e-15)

    @pytest.mark.parametrize("kwargs, error, message", [
        ({"weight": -0.1}, ValueError, r"^`weight` should be finite and >= 0, got -0.1$"),
        ({"weight": True}, TypeError, r"^`weight` should be a real number, got bool True$"),
        ({"eps": 0}, ValueError, r"^`eps` should be finite and > 0, got 0$"),
        ({"eps": float("inf")}, ValueError, r"^`eps` should be finite and > 0, got inf$"),
        ({"threshold": float("nan")}, ValueError, r"^`threshold` should be finite, got nan$"),
        ({"threshold": "0.8"}, TypeError, r"^`threshold` should be a real number, got str '0.8'$"),
    ])
    def test_option_rules(self, kwargs, error, message):
        with pytest.raises(error, match=message):
            TemporalVarianceConfig(**kwargs)

    @pytest.mark.parametrize("section, error, message", [
        ({"wieght": 0.1}, ValueError, r"^unknown option `temporal_variance.wieght`; did you mean `weight`\? Options of extra loss 'temporal_variance': weight, threshold, eps$"),
        ({"threshold": "0.8"}, TypeError, r"^option `temporal_variance.threshold` should be int or float or null, got str '0.8'$"),
        ({"eps": -1e-6}, ValueError, r"^option `temporal_variance.eps` should be finite and > 0, got -1e-06$"),
    ])
    def test_config_section_errors(self, section, error, message):
        with pytest.raises(error, match=message):
            parse_extra_losses({"extra_losses": ["temporal_variance"], "temporal_variance": section})

    def test_a_null_threshold_from_a_config_section(self):
        (spec,) = parse_extra_losses({"extra_losses": ["temporal_variance"], "temporal_variance": {"threshold": None}})
        assert spec.build().config.threshold is None


def test_reference_variance_matches_numpy_var():
    # the reference's own variance against NumPy's, so that a slip there cannot hide one here
    x = np.random.default_rng(0).normal(size=(2, 6, 2, 2, 2))
    v, _, _ = temporal_variance_reference(x)
    assert v == pytest.approx(np.var(x, axis=1).mean(), rel=1e-13)
