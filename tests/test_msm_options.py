"""MSM's options: the schedule, the noise range and the smoothed operator, each against an
independent reference (explicit matrices, hand-computed values, float64 gradcheck); all options
off against the frozen pre-options code, bit for bit."""

import logging
import math

import numpy as np
import pytest
import torch

from msm_plugin import LossContext, MSMConfig, MSMLoss, MSMTerm, msm_loss, wrap_trainer
from msm_plugin.config import parse_extra_losses
from msm_plugin.hosts.base import ExtraLosses
from msm_plugin.losses.msm import scheduled_lam
from tests import msm_before_options
from tests.adapters.standins import SHAPE as SHAPE_HOST
from tests.adapters.standins import CausVidDMD, SelfForcingDMD, make_config, text_dicts
from tests.msm_case import check_against_reference, random_inputs
from tests.reference import msm_reference

SHAPE = (3, 6, 2, 3, 3)


def _inputs(seed=0, shape=SHAPE, dtype=torch.float64):
    return random_inputs(seed, shape, dtype)


def _uniform_timesteps(values, frames=SHAPE[1]):
    return torch.tensor(values, dtype=torch.float64)[:, None].expand(-1, frames).clone()


class TestSmoothedOperator:
    @pytest.mark.parametrize("normalization", ["motion", "dmd", "none"])
    @pytest.mark.parametrize("order", [1, 2])
    def test_matches_explicit_matrix_reference(self, normalization, order):
        x, real, fake = _inputs()
        loss = msm_loss(x, real, fake, normalization=normalization, order=order, smoothing="binomial")
        ref = msm_reference(x.detach().numpy(), real.numpy(), fake.numpy(), normalization=normalization, order=order, smoothing=True)
        check_against_reference(loss, x, *ref)

    def test_with_a_frame_mask(self):
        # entry f of D S reads frames f .. f+2 (order 1): it counts only where all three are unmasked
        x, real, fake = _inputs()
        frames = torch.tensor([[True] * 6, [False, True, True, True, True, True], [True, True, True, False, True, True]])
        counted = np.array([[1, 1, 1], [0, 1, 1], [0, 0, 0]], dtype=float)[:, :, None, None, None]
        loss = msm_loss(x, real, fake, gradient_mask=frames, smoothing="binomial")
        check_against_reference(loss, x, *msm_reference(x.detach().numpy(), real.numpy(), fake.numpy(), counted=counted, smoothing=True))

    def test_gradcheck_float64_surrogate_through_a_feature(self):
        # gradcheck <M sin(x), g> / N with M = D S written by hand (slices, not the package's
        # operator), then require msm_loss's fused backward to give the same gradient
        x, real, fake = _inputs(shape=(1, 5, 2, 2, 2))

        def m(y):
            s = (y[:, :-2] + 2 * y[:, 1:-1] + y[:, 2:]) / 4
            return s[:, 1:] - s[:, :-1]

        g = (m(torch.sin(fake)) - m(torch.sin(real))).detach()

        def surrogate(x_):
            return (m(torch.sin(x_)) * g).sum() / g.numel()

        assert torch.autograd.gradcheck(surrogate, (x,))
        (ours,) = torch.autograd.grad(msm_loss(x, real, fake, normalization="none", feature=torch.sin, smoothing="binomial"), x)
        (expected,) = torch.autograd.grad(surrogate(x), x)
        torch.testing.assert_close(ours, expected)

    def test_alternating_frame_error_gives_no_gradient_only_when_smoothed(self):
        # critic = teacher + (-1)^f: an error at the alternating-frame frequency. Plain MSM's
        # gradient is D^T D e / N (response 4 there); smoothed it is S^T D^T D S e = 0, since
        # S (-1)^f = (1 - 2 + 1) / 4 = 0 exactly.
        frames = 7
        real = torch.linspace(0, 1, frames, dtype=torch.float64).reshape(1, frames, 1, 1, 1)
        alternating = torch.tensor([(-1.0) ** f for f in range(frames)], dtype=torch.float64).reshape(1, frames, 1, 1, 1)
        x = real.clone().requires_grad_(True)
        (plain,) = torch.autograd.grad(msm_loss(x, real, real + alternating, normalization="none"), x)
        (smoothed,) = torch.autograd.grad(msm_loss(x, real, real + alternating, normalization="none", smoothing="binomial"), x)
        # D e = 2 (-1)^(f+1) on 6 entries; D^T g / 6 at interior frames is 4 (-1)^f / 6, edges half that
        expected = torch.tensor([1, -2, 2, -2, 2, -2, 1], dtype=torch.float64) * (2 / 6)
        torch.testing.assert_close(plain.flatten(), expected)
        assert torch.equal(smoothed, torch.zeros_like(smoothed))

    def test_needs_order_plus_three_frames(self):
        x, real, fake = _inputs(shape=(1, 3, 1, 2, 2))
        with pytest.raises(ValueError, match=r"expected `generated` to be a video tensor \[B, F, C, H, W\] with F >= 4, got shape \(1, 3, 1, 2, 2\)"):
            msm_loss(x, real, fake, smoothing="binomial")

    def test_unknown_smoothing(self):
        with pytest.raises(ValueError, match=r"`smoothing` should be one of \('none', 'binomial'\), got 'gauss'"):
            MSMConfig(smoothing="gauss")


class TestNoiseRange:
    def test_counts_only_samples_inside_the_range(self):
        # timesteps 100, 500, 950 of 1000 -> fractions 0.1, 0.5, 0.95; [0.2, 0.9] keeps sample 1 only
        x, real, fake = _inputs()
        t = _uniform_timesteps([100, 500, 950])
        counted = np.array([0, 1, 0], dtype=float)[:, None, None, None, None]
        for normalization in ("motion", "dmd", "none"):
            loss = msm_loss(x, real, fake, timestep=t, timestep_scale=1000, t_min=0.2, t_max=0.9, normalization=normalization)
            check_against_reference(loss, x, *msm_reference(x.detach().numpy(), real.numpy(), fake.numpy(), normalization=normalization, counted=counted))

    def test_bounds_are_inclusive_and_the_scale_is_the_hosts(self):
        # FastGen-like timesteps in [0, 1]: 0.25 and 0.75 sit on the bounds and count
        x, real, fake = _inputs()
        t = _uniform_timesteps([0.25, 0.75, 0.8])
        loss = msm_loss(x, real, fake, timestep=t, timestep_scale=1, t_min=0.25, t_max=0.75)
        counted = np.array([1, 1, 0], dtype=float)[:, None, None, None, None]
        check_against_reference(loss, x, *msm_reference(x.detach().numpy(), real.numpy(), fake.numpy(), counted=counted))

    def test_per_frame_timesteps_under_pairs_policy_with_smoothing(self):
        # sample 0: blocks of 3 frames at 900 / 300; sample 1 all 300; sample 2 all 900. Range
        # [0, 0.5]: frames at 300 count. Smoothed order-1 entries read frames f .. f+3 (reach 3),
        # so they count only where those four frames share a timestep and lie in the range.
        x, real, fake = _inputs()
        t = torch.tensor([[900, 900, 900, 300, 300, 300], [300] * 6, [900] * 6], dtype=torch.float64)
        counted = np.array([[0, 0, 0], [1, 1, 1], [0, 0, 0]], dtype=float)[:, :, None, None, None]
        loss = msm_loss(x, real, fake, timestep=t, timestep_scale=1000, t_max=0.5, timestep_policy="pairs", smoothing="binomial")
        check_against_reference(loss, x, *msm_reference(x.detach().numpy(), real.numpy(), fake.numpy(), counted=counted, smoothing=True))

    def test_a_batch_outside_the_range_is_zero_without_a_warning_and_logs_its_share(self, caplog):
        x, real, fake = _inputs()
        ctx = LossContext(x, real, fake, timestep=_uniform_timesteps([100, 150, 990]), timestep_scale=1000)
        with caplog.at_level(logging.WARNING, logger="msm_plugin"):
            loss, logs = MSMTerm(t_min=0.5, t_max=0.9)(ctx)
        # 0 and out of the graph: no zero gradient flows back into the host's tensors
        assert loss.item() == 0 and loss.grad_fn is None and not loss.requires_grad
        assert logs["msm_noise_range_share"].item() == 0 and logs["msm_pairs_counted"] == 0
        assert not caplog.records
        _, logs = MSMTerm(t_min=0.1, t_max=0.9)(ctx)
        assert logs["msm_noise_range_share"].item() == pytest.approx(2 / 3, rel=1e-15)

    @pytest.mark.parametrize("timestep, scale, message", [
        (None, 1000, r"MSM's noise range \[t_min, t_max\] = \[0.2, 1\] needs the score timestep, but none was given \(the host's LossContext.timestep is None\)"),
        ("t", None, r"MSM's noise range \[t_min, t_max\] = \[0.2, 1\] needs the host's timestep scale \(a positive number: 1000 for CausVid / Self-Forcing, 1 for timesteps in \[0, 1\]\), got None"),
        ("t", 0, r"needs the host's timestep scale .*, got 0$"),
        ("t", True, r"needs the host's timestep scale .*, got True$"),
    ])
    def test_needs_timestep_and_scale(self, timestep, scale, message):
        x, real, fake = _inputs()
        t = _uniform_timesteps([100, 500, 950]) if timestep == "t" else None
        term = MSMTerm(t_min=0.2)
        with pytest.raises(ValueError, match=message):
            term(LossContext(x, real, fake, timestep=t, timestep_scale=scale))
        assert term.step == 0  # refused before the step counter moved

    @pytest.mark.parametrize("kwargs, error, message", [
        ({"t_min": -0.1}, ValueError, r"^`t_min` should be in \[0, 1\], got -0.1$"),
        ({"t_max": 1.5}, ValueError, r"^`t_max` should be in \[0, 1\], got 1.5$"),
        ({"t_max": math.nan}, ValueError, r"^`t_max` should be in \[0, 1\], got nan$"),
        ({"t_min": "0.2"}, TypeError, r"^`t_min` should be a real number, got str '0.2'$"),
        ({"t_min": 0.8, "t_max": 0.2}, ValueError, r"^the noise range needs `t_min` <= `t_max`, got t_min=0.8 > t_max=0.2$"),
    ])
    def test_rules(self, kwargs, error, message):
        with pytest.raises(error, match=message):
            MSMConfig(**kwargs)


class TestSchedule:
    def test_hand_computed_weights(self):
        assert [scheduled_lam(MSMConfig(lam=0.5, warmup_steps=3), s) for s in range(5)] == [0, 0, 0, 0.5, 0.5]
        assert [scheduled_lam(MSMConfig(lam=2.0, ramp_steps=4), s) for s in range(6)] == [0.5, 1.0, 1.5, 2.0, 2.0, 2.0]
        assert [scheduled_lam(MSMConfig(lam=1.0, warmup_steps=1, ramp_steps=1), s) for s in range(3)] == [0, 1, 1]
        assert scheduled_lam(MSMConfig(lam=0.3), 0) == 0.3  # no schedule: lam itself, bit for bit

    def test_term_applies_its_weight_and_counts_its_steps_through_extra_losses(self):
        x, real, fake = _inputs()
        ctx = LossContext(x, real, fake)
        unweighted = msm_loss(x, real, fake).item()
        term = MSMTerm(lam=0.8, warmup_steps=2, ramp_steps=2, per_pair_logs=False)
        extra = ExtraLosses([term])
        host = torch.tensor(1.5, dtype=torch.float64)
        seen = []
        for _ in range(5):
            total, logs = extra.add(host, {}, ctx)
            seen.append((logs["msm_step"], logs["msm_lambda"], total.item()))
        expected_weights = [0.0, 0.0, 0.4, 0.8, 0.8]
        assert [s for s, _, _ in seen] == [0, 1, 2, 3, 4]
        assert [w for _, w, _ in seen] == expected_weights
        for (_, w, total), lam_s in zip(seen, expected_weights):
            assert total == pytest.approx(1.5 + lam_s * unweighted, rel=1e-15)
        assert term.step == 5

    def test_gradient_at_a_ramp_step_is_host_plus_scheduled_lam_times_reference(self):
        x, real, fake = _inputs()
        term = MSMTerm(lam=0.9, ramp_steps=3, start_step=1)  # weight 0.9 * 2 / 3
        host = 0.5 * (x**2).sum()
        total, _ = ExtraLosses([term]).add(host, {}, LossContext(x, real, fake))
        (grad,) = torch.autograd.grad(total, x)
        _, ref_grad = msm_reference(x.detach().numpy(), real.numpy(), fake.numpy())
        # float64; the reference sums in another order, hence a few-ulp tolerance
        torch.testing.assert_close(grad, x.detach() + 0.9 * 2 / 3 * torch.from_numpy(ref_grad), rtol=1e-9, atol=1e-12)

    def test_warmup_steps_are_bit_identical_to_the_host(self):
        x, real, fake = _inputs()

        def host_loss():
            return 0.5 * ((x - (x - (fake - real)).detach()) ** 2).mean()

        (g_host,) = torch.autograd.grad(host_loss(), x)
        total, _ = ExtraLosses([MSMTerm(warmup_steps=1)]).add(host_loss(), {}, LossContext(x, real, fake))
        (g_total,) = torch.autograd.grad(total, x)
        assert torch.equal(total, host_loss()) and torch.equal(g_total, g_host)

    def test_resume_by_option_or_method(self):
        assert MSMTerm(lam=1.0, ramp_steps=10, start_step=4).weight == 0.5
        term = MSMTerm(lam=1.0, ramp_steps=10)
        term.set_step(9)
        assert (term.step, term.weight) == (9, 1.0)

    def test_module_takes_the_step(self):
        x, real, fake = _inputs()
        module = MSMLoss(lam=1.0, warmup_steps=1, ramp_steps=2)
        assert module(x, real, fake, step=0).item() == 0
        assert module(x, real, fake, step=1).item() == pytest.approx(0.5 * msm_loss(x, real, fake).item(), rel=1e-15)
        with pytest.raises(ValueError, match=r"^this MSMLoss has a schedule \(warmup_steps=1, ramp_steps=2\); pass the generator step: forward\(\.\.\., step=step\)$"):
            module(x, real, fake)

    @pytest.mark.parametrize("kwargs, message", [
        ({"warmup_steps": -1}, r"^`warmup_steps` should be an integer >= 0, got -1$"),
        ({"ramp_steps": 2.5}, r"^`ramp_steps` should be an integer >= 0, got 2.5$"),
        ({"start_step": True}, r"^`start_step` should be an integer >= 0, got True$"),
    ])
    def test_rules(self, kwargs, message):
        with pytest.raises(ValueError, match=message):
            MSMConfig(**kwargs)

    def test_bad_steps(self):
        with pytest.raises(ValueError, match=r"^MSMTerm.set_step expects the generator step, an integer >= 0, got -3$"):
            MSMTerm().set_step(-3)
        with pytest.raises(ValueError, match=r"^the generator step should be an integer >= 0, got 1.0$"):
            scheduled_lam(MSMConfig(), 1.0)


class TestAllOptionsOff:
    """Options at their defaults, or set explicitly to their off values, reproduce the MSM of
    before the options (tests/msm_before_options.py) bit for bit, on this machine."""

    OFF = dict(warmup_steps=0, ramp_steps=0, start_step=0, t_min=0.0, t_max=1.0, smoothing="none")

    @pytest.mark.parametrize("normalization", ["motion", "dmd", "none"])
    @pytest.mark.parametrize("order", [1, 2])
    @pytest.mark.parametrize("case", ["plain", "mask", "pairs", "feature"])
    @pytest.mark.parametrize("explicit", [False, True])
    def test_loss_and_gradient_bit_for_bit(self, normalization, order, case, explicit):
        # float64: a float32 result would round away a last-bit change of the float64 computation
        x, real, fake = _inputs()
        t = torch.tensor([[700] * 6, [900, 900, 900, 400, 400, 400], [50] * 6]) if case == "pairs" else None
        mask = torch.tensor([[True] * 6, [False] + [True] * 5, [True] * 6]) if case == "mask" else None
        options = dict(normalization=normalization, order=order, timestep_policy="pairs" if case == "pairs" else "strict",
                       feature=torch.tanh if case == "feature" else None)
        old = msm_before_options._msm_terms(x, real, fake, t, mask, MSMConfig(**options))
        (g_old,) = torch.autograd.grad(old.loss, x)
        new = msm_loss(x, real, fake, timestep=t, gradient_mask=mask, timestep_scale=1000 if explicit else None,
                       **options, **(self.OFF if explicit else {}))
        (g_new,) = torch.autograd.grad(new, x)
        assert torch.equal(new, old.loss) and torch.equal(g_new, g_old)

    def test_term_weight_and_log_keys_unchanged(self):
        x, real, fake = _inputs()
        term = MSMTerm(lam=0.35, **self.OFF)
        for _ in range(3):
            assert term.weight == 0.35
            _, logs = term(LossContext(x, real, fake, timestep=_uniform_timesteps([1, 2, 3]), timestep_scale=1000))
            assert logs["msm_lambda"] == 0.35
        assert "msm_step" not in logs and "msm_noise_range_share" not in logs


class TestConfigKeys:
    def test_every_option_from_a_yaml_section(self):
        (parsed,) = parse_extra_losses({"extra_losses": ["msm"], "msm": {
            "lam": 0.5, "warmup_steps": 100, "ramp_steps": 50, "start_step": 20, "t_min": 0.2, "t_max": 0.9, "smoothing": "binomial"}})
        term = parsed.build()
        c = term.config
        assert (c.warmup_steps, c.ramp_steps, c.start_step, c.t_min, c.t_max, c.smoothing) == (100, 50, 20, 0.2, 0.9, "binomial")
        assert term.step == 20 and term.weight == 0

    @pytest.mark.parametrize("section, error, message", [
        ({"t_min": "0.2"}, TypeError, r"^option `msm.t_min` should be int or float, got str '0.2'$"),
        ({"t_max": 2}, ValueError, r"^option `msm.t_max` should be in \[0, 1\], got 2$"),
        ({"warmup_steps": 1.5}, TypeError, r"^option `msm.warmup_steps` should be int, got float 1.5$"),
        ({"smoothing": 121}, TypeError, r"^option `msm.smoothing` should be str, got int 121$"),
        ({"t_min": 0.9, "t_max": 0.1}, ValueError, r"^the noise range needs `t_min` <= `t_max`, got t_min=0.9 > t_max=0.1$"),
    ])
    def test_section_errors(self, section, error, message):
        with pytest.raises(error, match=message):
            parse_extra_losses({"extra_losses": ["msm"], "msm": section})


class TestThroughAHost:
    @pytest.mark.parametrize("host", ["causvid", "self_forcing"])
    def test_wrap_trainer_options_reach_the_term_and_its_logs(self, host):
        # the DMD chain hands the term the host's num_train_timestep (1000) as the timestep scale;
        # the share inside [0, 0.5] is recomputed here from the timestep the host logged
        dmd = {"causvid": CausVidDMD, "self_forcing": SelfForcingDMD}[host](make_config())
        wrap_trainer(dmd, lam=0.6, warmup_steps=1, t_max=0.5, smoothing="binomial")
        cond, uncond = text_dicts()
        lams = []
        for _ in range(2):
            x = torch.randn(SHAPE_HOST, generator=torch.Generator().manual_seed(3)).requires_grad_(True)
            _, log = dmd.compute_distribution_matching_loss(x, cond, uncond)
            lams.append(log["msm_lambda"])
            share = (log["timestep"].double() / 1000 <= 0.5).double().mean().item()
            assert log["msm_noise_range_share"].item() == share
        assert lams == [0.0, 0.6] and log["msm_step"] == 1
