"""wrap_trainer on CausVid / Self-Forcing stand-ins: loss, gradient, logs, call counts, reversibility."""

import functools
import warnings

import numpy as np
import pytest
import torch
from omegaconf import OmegaConf

from msm_plugin.adapters import (
    apply_extra_losses,
    find_dmd,
    is_wrapped,
    pop_extra_logs,
    unwrap_trainer,
    wrap_dmd,
    wrap_trainer,
)
from msm_plugin.registry import get_loss
from tests.adapters.standins import (
    SHAPE,
    CausVidDMD,
    CausVidTrainer,
    SelfForcingDMD,
    SelfForcingTrainer,
    Sharded,
    call_counts,
    generator_step,
    make_config,
    text_dicts,
)
from tests.reference import msm_reference

HOSTS = {"causvid": CausVidDMD, "self_forcing": SelfForcingDMD}
KL_KEYS = {
    "causvid": {"dmdtrain_clean_latent", "dmdtrain_noisy_latent", "dmdtrain_pred_real_image",
                "dmdtrain_pred_fake_image", "dmdtrain_gradient_norm", "timestep"},
    "self_forcing": {"dmdtrain_gradient_norm", "timestep"},
}


def _video(seed=11):
    return torch.randn(SHAPE, generator=torch.Generator().manual_seed(seed))


def _mask(host, dmd):
    if host != "self_forcing":
        return None
    mask = torch.ones(SHAPE, dtype=torch.bool)
    mask[:, : dmd.num_frame_per_block] = False
    return mask


def _run_loss(dmd, x0, mask, seed=5):
    """One compute_distribution_matching_loss call on a leaf copy of x0; returns loss, log, x.grad
    and the keyword arguments of every fake_score call (recorded by a test-side pre-hook)."""
    seen = []
    handle = dmd.fake_score.register_forward_pre_hook(lambda m, a, kw: seen.append(kw), with_kwargs=True)
    cond, uncond = text_dicts()
    x = x0.clone().requires_grad_(True)
    torch.manual_seed(seed)
    try:
        loss, log = dmd.compute_distribution_matching_loss(x, cond, uncond, gradient_mask=mask)
    finally:
        handle.remove()
    loss.backward()
    return loss, log, x.grad, seen


def _reference_predictions(dmd, noisy, timestep):
    """Teacher and critic x0 predictions recomputed by calling the networks again, CFG by hand."""
    cond, uncond = text_dicts()

    def x0(net, c):
        out = net(noisy_image_or_video=noisy, conditional_dict=c, timestep=timestep)
        return out[1] if isinstance(out, tuple) else out

    with torch.no_grad():
        rc, ru = x0(dmd.real_score, cond), x0(dmd.real_score, uncond)
        real = rc + (rc - ru) * dmd.real_guidance_scale
        fake = x0(dmd.fake_score, cond)
        scale = getattr(dmd, "fake_guidance_scale", 0.0)
        if scale:
            fake = fake + (fake - x0(dmd.fake_score, uncond)) * scale
    return real.double().numpy(), fake.double().numpy()


def _counted_pairs(mask):
    if mask is None:
        return None
    frames = mask.flatten(2).all(2)
    return (frames[:, 1:] & frames[:, :-1]).numpy()[:, :, None, None, None]


class TestWrappedLoss:
    @pytest.mark.parametrize("host", sorted(HOSTS))
    @pytest.mark.parametrize("normalization", ["motion", "dmd"])
    def test_loss_and_gradient_equal_host_plus_lam_times_reference(self, host, normalization):
        lam = 0.7
        dmd = HOSTS[host](make_config(fake_guidance_scale=1.5))
        x0, mask = _video(), _mask(host, dmd)
        host_loss, host_log, host_grad, _ = _run_loss(dmd, x0, mask)
        wrap_trainer(dmd, lam=lam, normalization=normalization)
        loss, log, grad, seen = _run_loss(dmd, x0, mask)

        real, fake = _reference_predictions(dmd, seen[0]["noisy_image_or_video"], seen[0]["timestep"])
        ref_loss, ref_grad = msm_reference(x0.numpy(), real, fake, normalization=normalization, counted=_counted_pairs(mask))
        assert loss.dtype == torch.float64
        assert loss.item() == pytest.approx(host_loss.item() + lam * ref_loss, rel=1e-9)
        assert log["msm_loss"].item() == pytest.approx(ref_loss, rel=1e-9)
        assert log["dmd_loss"].item() == host_loss.item()
        assert log["msm_lambda"] == lam
        expected = host_grad.double() + lam * torch.from_numpy(ref_grad)
        torch.testing.assert_close(grad.double(), expected, rtol=1e-5, atol=1e-8)

    @pytest.mark.parametrize("host", sorted(HOSTS))
    @pytest.mark.parametrize("wrap_first", [False, True], ids=["fsdp_then_msm", "msm_then_fsdp"])
    def test_bf16_predictions_of_fsdp_like_wrapped_scores_are_scored_in_float64(self, host, wrap_first):
        # Upstream wraps the score networks in FSDP (bf16 MixedPrecision) after building the DMD:
        # the capture hooks must see the outer modules whichever came first, and MSM's small
        # frame differences must be formed in float64 from the bf16 predictions, not in bf16.
        lam = 0.7
        dmd = HOSTS[host](make_config(fake_guidance_scale=1.5))
        x0, mask = _video().bfloat16(), _mask(host, dmd)

        def shard():
            dmd.real_score, dmd.fake_score = (Sharded(m, torch.bfloat16) for m in (dmd.real_score, dmd.fake_score))

        shard()
        host_loss, _, host_grad, _ = _run_loss(dmd, x0, mask)
        dmd.real_score, dmd.fake_score = dmd.real_score.module, dmd.fake_score.module
        if wrap_first:
            wrap_trainer(dmd, lam=lam)
            shard()
        else:
            shard()
            wrap_trainer(dmd, lam=lam)
        loss, log, grad, seen = _run_loss(dmd, x0, mask)

        real, fake = _reference_predictions(dmd, seen[0]["noisy_image_or_video"], seen[0]["timestep"])
        assert real.dtype == np.float64 and seen[0]["noisy_image_or_video"].dtype != torch.bfloat16
        ref_loss, ref_grad = msm_reference(x0.double().numpy(), real, fake, counted=_counted_pairs(mask))
        assert log["msm_loss"].dtype == torch.float64
        assert log["msm_loss"].item() == pytest.approx(ref_loss, rel=1e-9)
        assert loss.item() == pytest.approx(host_loss.item() + lam * ref_loss, rel=1e-9)
        # x.grad is bf16 (the generator's dtype): each term is rounded to bf16 (unit roundoff 2^-8)
        # before they are summed in bf16, so the error is at most 2^-7 (|host| + lam |msm|).
        assert grad.dtype == torch.bfloat16
        msm_grad = lam * torch.from_numpy(ref_grad)
        bound = 2**-7 * (host_grad.double().abs() + msm_grad.abs())
        assert ((grad.double() - (host_grad.double() + msm_grad)).abs() <= bound).all()
        assert msm_grad.abs().max() > 2**-4 * host_grad.double().abs().max()  # MSM really moved it

    @pytest.mark.parametrize("host", sorted(HOSTS))
    def test_log_dict_keeps_every_host_key_and_adds_msm_keys(self, host):
        dmd = HOSTS[host](make_config())
        x0, mask = _video(), _mask(host, dmd)
        _, host_log, _, _ = _run_loss(dmd, x0, mask)
        assert set(host_log) == KL_KEYS[host]
        wrap_trainer(dmd, lam=0.5)
        _, log, _, _ = _run_loss(dmd, x0, mask)
        for key, value in host_log.items():
            assert torch.equal(log[key], value), key
        added = set(log) - set(host_log)
        default = {"dmd_loss", "msm_loss", "msm_lambda", "msm_gradient_norm", "msm_grad_ratio", "msm_motion_generated",
                   "msm_motion_pred_real", "msm_motion_pred_fake", "msm_motion_gap_real", "msm_motion_gap_fake"}
        # a gradient mask makes the share of counted motion entries informative
        assert added == default | ({"msm_pairs_counted"} if mask is not None else set())
        with pytest.warns(UserWarning, match="replacing the previous extra losses"):
            wrap_trainer(dmd, lam=0.5, per_pair_logs=True)
        _, log, _, _ = _run_loss(dmd, x0, mask)
        pairs = {f"msm_motion_pair/{which}_{k:02d}" for which in ("generated", "pred_real", "pred_fake") for k in range(SHAPE[1] - 1)}
        assert set(log) - set(host_log) - added == pairs

    @pytest.mark.parametrize("host", sorted(HOSTS))
    def test_grad_ratio_is_msms_share_of_the_hosts_own_gradient(self, host):
        """Through the host's code: ||grad(wrapped) - grad(host)|| / ||grad(host)|| by autograd, same noise."""
        dmd = HOSTS[host](make_config())
        x0, mask = _video(), _mask(host, dmd)
        _, _, host_grad, _ = _run_loss(dmd, x0, mask)
        wrap_trainer(dmd, lam=0.5)
        _, log, grad, _ = _run_loss(dmd, x0, mask)
        measured = ((grad.double() - host_grad.double()).norm() / host_grad.double().norm()).item()
        # float32 gradients, MSM's recovered as a difference of two: ~1e-6 relative, inside 1e-4
        assert log["msm_grad_ratio"].item() == pytest.approx(measured, rel=1e-4)
        assert 0.01 < measured < 100  # both terms really act

    @pytest.mark.parametrize("host", sorted(HOSTS))
    def test_no_extra_network_call(self, host):
        def one_step(dmd):
            cond, uncond = text_dicts()
            torch.manual_seed(3)
            dmd.generator_loss(list(SHAPE), cond, uncond, None)[0].backward()
            dmd.critic_loss(list(SHAPE), cond, uncond, None)[0].backward()
            return call_counts(dmd)

        plain = one_step(HOSTS[host](make_config(fake_guidance_scale=1.0)))
        wrapped = one_step(wrap_trainer(HOSTS[host](make_config(fake_guidance_scale=1.0)), lam=1.0))
        assert wrapped == plain
        # generator: 1 per loss; real: cond + uncond; fake: cond (+ uncond under Self-Forcing's
        # fake CFG) + 1 in the critic loss
        assert plain == {"causvid": (2, 2, 2), "self_forcing": (2, 2, 3)}[host]

    @pytest.mark.parametrize("host", sorted(HOSTS))
    def test_lam_zero_is_bit_identical_to_host(self, host):
        plain_loss, plain_log, plain_grads = generator_step(HOSTS[host](make_config()))
        loss, log, grads = generator_step(wrap_trainer(HOSTS[host](make_config()), lam=0.0))
        assert torch.equal(loss, plain_loss)
        assert all(torch.equal(a, b) for a, b in zip(grads, plain_grads))
        assert all(torch.equal(log[k], v) for k, v in plain_log.items())
        assert log["msm_loss"].item() > 0  # still computed and logged at lam = 0

    @pytest.mark.parametrize("host", sorted(HOSTS))
    def test_critic_loss_and_its_timestep_untouched(self, host):
        def critic(dmd):
            cond, uncond = text_dicts()
            torch.manual_seed(4)
            return dmd.critic_loss(list(SHAPE), cond, uncond, None)

        plain_loss, plain_log = critic(HOSTS[host](make_config()))
        dmd = wrap_trainer(HOSTS[host](make_config()), lam=2.0)
        loss, log = critic(dmd)
        assert torch.equal(loss, plain_loss)
        assert torch.equal(log["critic_timestep"], plain_log["critic_timestep"])
        assert "critic_loss" not in vars(dmd)

    def test_self_forcing_gradient_mask_counts_only_unmasked_pairs(self):
        dmd = wrap_trainer(SelfForcingDMD(make_config()), lam=1.0, normalization="none")
        x0 = _video()
        mask = _mask("self_forcing", dmd)  # frames 0-2 masked: only pairs (3,4) and (4,5) count
        _, log, _, _ = _run_loss(dmd, x0, mask)
        assert log["msm_pairs_counted"] == pytest.approx(2 / 5)
        # the MSM gradient never reaches frames 0-2 beyond what the host's masked DMD gives (zero)
        dmd_only = SelfForcingDMD(make_config())
        _, _, host_grad, _ = _run_loss(dmd_only, x0, mask)
        _, _, grad, _ = _run_loss(dmd, x0, mask)
        assert torch.equal(host_grad[:, :2], torch.zeros_like(host_grad[:, :2]))
        assert torch.equal(grad[:, :2], torch.zeros_like(grad[:, :2]))
        assert not torch.equal(grad[:, 3:], host_grad[:, 3:])


class TestStages:
    def test_stage3_causal_generator_with_bidirectional_teacher(self):
        config = make_config(generator_task="causal_video", real_task_type="bidirectional_video")
        dmd = wrap_trainer(CausVidDMD(config), lam=1.0)
        cond, uncond = text_dicts()
        torch.manual_seed(0)
        loss, log = dmd.generator_loss(list(SHAPE), cond, uncond, None)
        assert torch.isfinite(loss)
        assert (log["timestep"] == log["timestep"][:, :1]).all()

    def test_causal_teacher_meets_strict_error(self):
        dmd = CausVidDMD(make_config(generator_task="causal_video", real_task_type="causal_video"))
        wrap_dmd(dmd, [get_loss("msm")(lam=1.0)])
        cond, uncond = text_dicts()
        torch.manual_seed(0)
        with pytest.raises(ValueError, match="differ across frames"):
            dmd.generator_loss(list(SHAPE), cond, uncond, None)

    def test_causal_teacher_with_pairs_policy_counts_pairs_inside_blocks(self):
        config = make_config(generator_task="causal_video", real_task_type="causal_video", extra_losses=["msm"],
                             msm={"timestep_policy": "pairs", "normalization": "none"})
        dmd = CausVidDMD(config)
        host_loss, _, _, _ = _run_loss(dmd, _video(), None, seed=1)
        wrap_trainer(dmd)
        loss, log, _, seen = _run_loss(dmd, _video(), None, seed=1)
        t = seen[0]["timestep"]
        assert not (t == t[:, :1]).all()  # per-block timesteps really differ
        shared = (t[:, 1:] == t[:, :-1]).numpy()[:, :, None, None, None]
        real, fake = _reference_predictions(dmd, seen[0]["noisy_image_or_video"], t)
        ref_loss, _ = msm_reference(_video().numpy(), real, fake, normalization="none", counted=shared)
        assert loss.item() == pytest.approx(host_loss.item() + ref_loss, rel=1e-9)
        assert log["msm_pairs_counted"] == pytest.approx(shared.mean())


class TestWrapTrainer:
    def test_accepts_causvid_trainer_self_forcing_trainer_and_dmd(self):
        causvid = CausVidTrainer(make_config(output_path="unused"))
        self_forcing = SelfForcingTrainer(make_config())
        dmd = CausVidDMD(make_config())
        assert wrap_trainer(causvid, lam=1.0) is causvid and is_wrapped(causvid.distillation_model)
        assert wrap_trainer(self_forcing, lam=1.0) is self_forcing and is_wrapped(self_forcing.model)
        assert wrap_trainer(dmd, lam=1.0) is dmd and is_wrapped(dmd)

    def test_rejects_other_objects(self):
        with pytest.raises(TypeError, match="expected a CausVid Trainer"):
            wrap_trainer(object())
        with pytest.raises(TypeError, match="lacks _compute_kl_grad"):
            wrap_trainer(type("T", (), {"distillation_model": torch.nn.Linear(1, 1)})())

    def test_options_come_from_config_and_arguments_override_them(self):
        config = make_config(extra_losses=["msm"], msm={"lam": 0.3, "normalization": "none"})
        dmd = wrap_trainer(CausVidDMD(config))
        _, log, _, seen = _run_loss(dmd, _video(), None)
        real, fake = _reference_predictions(dmd, seen[0]["noisy_image_or_video"], seen[0]["timestep"])
        ref_none, _ = msm_reference(_video().numpy(), real, fake, normalization="none")
        assert log["msm_lambda"] == 0.3 and log["msm_loss"].item() == pytest.approx(ref_none, rel=1e-9)
        with pytest.warns(UserWarning, match="already wrapped"):
            wrap_trainer(dmd, lam=0.9)
        _, log, _, _ = _run_loss(dmd, _video(), None)
        assert log["msm_lambda"] == 0.9 and log["msm_loss"].item() == pytest.approx(ref_none, rel=1e-9)

    def test_omegaconf_trainer_config_of_self_forcing(self):
        # Self-Forcing keeps an OmegaConf.merge result as trainer.config, not a dict.
        config = OmegaConf.create(make_config(extra_losses=["msm"], msm={"lam": 0.3, "order": 2}))
        trainer = wrap_trainer(SelfForcingTrainer(config))
        dmd = trainer.model
        _, log, _, seen = _run_loss(dmd, _video(), None)
        real, fake = _reference_predictions(dmd, seen[0]["noisy_image_or_video"], seen[0]["timestep"])
        ref_loss, _ = msm_reference(_video().numpy(), real, fake, order=2)
        assert log["msm_lambda"] == 0.3 and log["msm_loss"].item() == pytest.approx(ref_loss, rel=1e-9)

    def test_apply_extra_losses_is_a_no_op_without_extra_losses(self):
        dmd = CausVidDMD(make_config())
        apply_extra_losses(dmd)
        assert not is_wrapped(dmd) and "_msm_plugin_patches" not in vars(dmd)
        listed = apply_extra_losses(CausVidDMD(make_config(extra_losses=["msm"], msm={"lam": 0.4})))
        _, log, _, _ = _run_loss(listed, _video(), None)
        assert is_wrapped(listed) and log["msm_lambda"] == 0.4

    def test_wrapping_twice_replaces_instead_of_stacking(self):
        dmd = CausVidDMD(make_config())
        x0 = _video()
        host_loss, _, _, _ = _run_loss(dmd, x0, None)
        wrap_trainer(dmd, lam=1.0)
        _, log_once, _, _ = _run_loss(dmd, x0, None)
        with pytest.warns(UserWarning, match="already wrapped"):
            wrap_trainer(dmd, lam=2.0)
        loss, log, _, _ = _run_loss(dmd, x0, None)
        assert loss.item() == pytest.approx(host_loss.item() + 2.0 * log_once["msm_loss"].item(), rel=1e-12)
        wrapped = vars(dmd)["compute_distribution_matching_loss"]
        assert wrapped.__wrapped__.__func__ is CausVidDMD.compute_distribution_matching_loss

    @pytest.mark.parametrize("host", sorted(HOSTS))
    def test_unwrap_restores_the_original_exactly(self, host):
        dmd = HOSTS[host](make_config())
        before = dict(vars(dmd))
        wrap_trainer(dmd, lam=1.0)
        assert vars(dmd)["compute_distribution_matching_loss"].__name__ == "compute_distribution_matching_loss"
        _run_loss(dmd, _video(), _mask(host, dmd))
        assert unwrap_trainer(dmd) is dmd
        assert vars(dmd).keys() == before.keys()
        assert all(vars(dmd)[k] is v for k, v in before.items())
        for name in ("compute_distribution_matching_loss", "_compute_kl_grad"):
            assert getattr(dmd, name).__func__ is getattr(type(dmd), name)
        assert not dmd.real_score._forward_hooks and not dmd.fake_score._forward_hooks
        with warnings.catch_warnings():
            warnings.simplefilter("error")
            wrap_trainer(dmd, lam=1.0)  # a clean slate: no "already wrapped" warning

    def test_unwrap_of_a_trainer_unwraps_its_dmd(self):
        trainer = wrap_trainer(SelfForcingTrainer(make_config()), lam=1.0)
        unwrap_trainer(trainer)
        assert not is_wrapped(trainer.model) and "_msm_plugin_patches" not in vars(trainer.model)

    @pytest.mark.parametrize("host", sorted(HOSTS))
    def test_state_dicts_identical_after_wrap(self, host):
        dmd = HOSTS[host](make_config())
        before = {k: v.clone() for k, v in dmd.state_dict().items()}
        modules = [name for name, _ in dmd.named_modules()]
        wrap_trainer(dmd, lam=1.0)
        after = dmd.state_dict()
        assert after.keys() == before.keys() and all(torch.equal(after[k], v) for k, v in before.items())
        assert [name for name, _ in dmd.named_modules()] == modules

    def test_checkpoint_of_an_msm_run_loads_in_plain_host(self, tmp_path):
        trainer = CausVidTrainer(make_config(output_path=str(tmp_path), max_steps=3, log_iters=2))
        wrap_trainer(trainer, lam=1.0)
        trainer.train()
        path = tmp_path / "checkpoint_model_000002" / "model.pt"
        state = torch.load(path)
        plain = CausVidDMD(make_config())
        plain.generator.load_state_dict(state["generator"], strict=True)
        plain.fake_score.load_state_dict(state["critic"], strict=True)
        trained = trainer.distillation_model
        assert not torch.equal(plain.generator.conv.weight, CausVidDMD(make_config()).generator.conv.weight)
        for k, v in state["generator"].items():  # saved at the last step: the trained weights
            assert torch.equal(v, trained.generator.state_dict()[k])

    def test_pop_extra_logs_gives_floats_once(self):
        trainer = wrap_trainer(CausVidTrainer(make_config(output_path="unused")), lam=0.5)
        assert pop_extra_logs(trainer) == {}
        trainer.train_one_step()  # step 0 trains the generator
        logs = pop_extra_logs(trainer)
        assert all(type(v) is float for v in logs.values())
        assert {"dmd_loss", "msm_loss", "msm_lambda"} <= logs.keys() and "dmdtrain_gradient_norm" not in logs
        assert logs["msm_lambda"] == 0.5 and pop_extra_logs(trainer) == {}
        assert pop_extra_logs(CausVidDMD(make_config())) == {}


class TestCaptureFailures:
    def test_self_forcing_with_one_dict_for_both_branches_cannot_be_attributed(self):
        dmd = wrap_trainer(SelfForcingDMD(make_config()), lam=1.0)
        cond, _ = text_dicts()
        with pytest.raises(RuntimeError, match="same object"):
            dmd.compute_distribution_matching_loss(_video(), cond, cond)
        assert not dmd.real_score._forward_hooks  # hooks removed even on failure

    def test_causvid_reads_its_log_so_one_dict_for_both_branches_is_fine(self):
        dmd = wrap_trainer(CausVidDMD(make_config()), lam=1.0)
        cond, _ = text_dicts()
        loss, _ = dmd.compute_distribution_matching_loss(_video(), cond, cond)
        assert torch.isfinite(loss)

    def test_host_that_skips_compute_kl_grad_is_reported(self):
        dmd = CausVidDMD(make_config())
        wrap_trainer(dmd, lam=1.0)
        object.__setattr__(dmd, "_compute_kl_grad", CausVidDMD._compute_kl_grad.__get__(dmd))
        with pytest.raises(RuntimeError, match="called it 0 times"):
            dmd.compute_distribution_matching_loss(_video(), *text_dicts())

    @pytest.mark.parametrize("host", sorted(HOSTS))
    def test_compute_kl_grad_outside_the_loss_is_the_host_s_and_keeps_nothing(self, host):
        dmd = wrap_trainer(HOSTS[host](make_config()), lam=1.0)
        x, t = _video(), torch.full(SHAPE[:2], 500.0)
        grad, log = dmd._compute_kl_grad(x, x, t, *text_dicts())
        plain_grad, plain_log = type(dmd)._compute_kl_grad(dmd, x, x, t, *text_dicts())
        assert torch.equal(grad, plain_grad) and log.keys() == plain_log.keys()
        assert vars(dmd)["_msm_plugin_state"].calls is None
        assert not dmd.real_score._forward_hooks and not dmd.fake_score._forward_hooks
        _run_loss(dmd, x, _mask(host, dmd))  # the next loss call still finds exactly one call
        assert vars(dmd)["_msm_plugin_state"].calls is None

    def test_host_log_with_dmd_loss_key_is_refused(self):
        dmd = CausVidDMD(make_config())
        original = dmd.compute_distribution_matching_loss

        @functools.wraps(original)
        def with_key(*args, **kwargs):
            loss, log = original(*args, **kwargs)
            return loss, {**log, "dmd_loss": loss}

        object.__setattr__(dmd, "compute_distribution_matching_loss", with_key)
        wrap_trainer(dmd, lam=1.0)
        with pytest.raises(ValueError, match="already has a `dmd_loss` key"):
            dmd.compute_distribution_matching_loss(_video(), *text_dicts())

    def test_host_loss_without_image_or_video_parameter_is_refused_before_any_change(self):
        dmd = CausVidDMD(make_config())
        object.__setattr__(dmd, "compute_distribution_matching_loss", lambda video, c, u: None)
        with pytest.raises(TypeError, match="`image_or_video` parameter"):
            wrap_trainer(dmd, lam=1.0)
        assert not is_wrapped(dmd) and "_msm_plugin_patches" not in vars(dmd)

    @pytest.mark.parametrize(
        "options, error, match",
        [({"lamda": 1.0}, ValueError, "did you mean `lam`"), ({"lam": -1.0}, ValueError, "should be finite and >= 0")],
    )
    def test_bad_code_given_options_are_refused_before_any_change(self, options, error, match):
        dmd = CausVidDMD(make_config())
        with pytest.raises(error, match=match):
            wrap_trainer(dmd, **options)
        assert not is_wrapped(dmd) and "_msm_plugin_patches" not in vars(dmd)

    def test_score_networks_that_are_not_modules_are_refused_at_wrap_time(self):
        dmd = CausVidDMD(make_config())
        object.__setattr__(dmd, "real_score", lambda **kwargs: kwargs["noisy_image_or_video"])
        with pytest.raises(TypeError, match="expected the DMD object to have an nn.Module `real_score`, got <function"):
            wrap_trainer(dmd, lam=1.0)
        assert not is_wrapped(dmd) and "_msm_plugin_patches" not in vars(dmd)

    def test_wrap_dmd_refuses_unbuilt_losses(self):
        with pytest.raises(TypeError, match="expected built extra losses"):
            wrap_dmd(CausVidDMD(make_config()), [get_loss("msm")])

    def test_find_dmd_reports_trainer_config(self):
        trainer = SelfForcingTrainer(make_config(foo=1))
        dmd, config = find_dmd(trainer)
        assert dmd is trainer.model and config["foo"] == 1
        assert np.isclose(find_dmd(dmd)[1]["real_guidance_scale"], 2.5)
