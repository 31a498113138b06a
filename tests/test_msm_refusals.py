"""MSM's forms never return silently wrong numbers: a zero normaliser adds 0 (not inf), and the
function and module forms refuse the options they do not apply."""

import numpy as np
import pytest
import torch

from msm_plugin import LossContext, MSMConfig, MSMLoss, MSMTerm, msm_loss
from msm_plugin.hosts.base import ExtraLosses
from tests.reference import msm_reference

SHAPE = (2, 5, 2, 3, 3)


def _moving_critic(shape=SHAPE):
    g = torch.Generator().manual_seed(0)
    real = torch.randn(shape, dtype=torch.float64, generator=g)
    fake = real + torch.arange(shape[1], dtype=torch.float64).reshape(1, -1, 1, 1, 1)  # the critic moves
    return real, fake


class TestZeroNormaliser:
    @pytest.mark.parametrize("normalization", ["motion", "dmd"])
    def test_generator_equal_to_the_teacher_gives_zero_not_inf(self, normalization):
        # D(x) == D(pred_real) (and x == pred_real for "dmd"): n = 0 for every sample; the critic moves
        real, fake = _moving_critic()
        x = real.clone().requires_grad_(True)
        loss = msm_loss(x, real, fake, normalization=normalization)
        loss.backward()
        assert loss.item() == 0.0 and torch.equal(x.grad, torch.zeros_like(x))

    @pytest.mark.parametrize("normalization", ["motion", "dmd"])
    def test_one_degenerate_sample_adds_zero_and_the_others_are_unchanged(self, normalization):
        real, fake = _moving_critic()
        x = torch.randn(SHAPE, dtype=torch.float64, generator=torch.Generator().manual_seed(1))
        x[0] = real[0]
        x.requires_grad_(True)
        loss = msm_loss(x, real, fake, normalization=normalization)
        loss.backward()
        # sample 1 alone, whose N is half the batch's: its loss and gradient halve; sample 0 adds 0
        ref, ref_grad = msm_reference(x.detach()[1:].numpy(), real[1:].numpy(), fake[1:].numpy(), normalization=normalization)
        assert loss.item() == pytest.approx(ref / 2, rel=1e-12)
        assert torch.equal(x.grad[0], torch.zeros_like(x.grad[0]))
        np.testing.assert_allclose(x.grad[1:].numpy(), ref_grad / 2, rtol=1e-12, atol=1e-15)

    def test_through_a_host_engine_the_total_stays_finite(self):
        real, fake = _moving_critic()
        x = real.clone().requires_grad_(True)
        total, logs = ExtraLosses([MSMTerm(lam=1.0)]).add(torch.tensor(1.0, dtype=torch.float64), {}, LossContext(x, real, fake))
        total.backward()
        assert total.item() == 1.0 and torch.isfinite(x.grad).all() and float(logs["msm_gradient_norm"]) == 0.0


class TestOptionsAFormDoesNotApply:
    @pytest.mark.parametrize("options, names", [
        ({"lam": 0.0}, "`lam`"),
        ({"lam": 0.5}, "`lam`"),
        ({"warmup_steps": 100}, "`warmup_steps`"),
        ({"ramp_steps": 3, "start_step": 2}, "`ramp_steps`, `start_step`"),
    ])
    def test_msm_loss_refuses_lam_and_the_schedule(self, options, names):
        real, fake = _moving_critic()
        with pytest.raises(ValueError, match=rf"^msm_loss does not apply {names} \(it returns the unweighted loss: weight it yourself, or use MSMLoss\)$"):
            msm_loss(real.clone(), real, fake, **options)
        with pytest.raises(ValueError, match=rf"^msm_loss does not apply {names} "):
            msm_loss(real.clone(), real, fake, config=MSMConfig(**options))

    def test_msm_loss_accepts_those_options_at_their_defaults(self):
        real, fake = _moving_critic()
        x = torch.randn(SHAPE, dtype=torch.float64)
        plain = msm_loss(x, real, fake)
        assert torch.equal(msm_loss(x, real, fake, lam=1.0, warmup_steps=0, ramp_steps=0, start_step=0), plain)

    def test_msm_loss_module_refuses_start_step(self):
        with pytest.raises(ValueError, match=r"^MSMLoss does not apply `start_step` \(it takes the generator step in each call: forward\(\.\.\., step=s\)\)$"):
            MSMLoss(lam=0.5, warmup_steps=10, start_step=5)
        with pytest.raises(ValueError, match=r"^MSMLoss does not apply `start_step`"):
            MSMLoss(config=MSMConfig(start_step=5))
        real, fake = _moving_critic()
        x = torch.randn(SHAPE, dtype=torch.float64)
        scheduled = MSMLoss(lam=0.5, warmup_steps=2)  # lam and the schedule it does apply
        assert scheduled(x, real, fake, step=1).item() == 0.0
        assert scheduled(x, real, fake, step=2).item() == pytest.approx(0.5 * msm_loss(x, real, fake).item(), rel=1e-15)
