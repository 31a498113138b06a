"""ToyTrainer: CausVid's loop, extra losses from its config or wrap_trainer, residual start, determinism, checks."""

from __future__ import annotations

import pytest
import torch

import msm_plugin
from msm_plugin.toy.teacher import ExactTeacher
from msm_plugin.toy.trainer import ToyTrainer, make_trainer_config

from .conftest import TINY_CRITIC, TINY_DATA, TINY_GENERATOR


def _trainer(teacher, **overrides):
    score, encoder = teacher
    options = {"batch_size": 2, "dfake_gen_update_ratio": 2, **overrides}
    return ToyTrainer(make_trainer_config(**options), score, encoder, TINY_DATA, TINY_GENERATOR, TINY_CRITIC)


def test_update_schedule_and_logs(tiny_exact):
    trainer = _trainer(tiny_exact)
    logs = [trainer.train_one_step() for _ in range(4)]
    assert ["generator_loss" in entry for entry in logs] == [True, False, True, False]
    assert {"critic_loss", "critic_grad_norm"} <= set(logs[1])
    assert {"generator_loss", "generator_grad_norm", "dmdtrain_gradient_norm"} <= set(logs[0])
    assert trainer.config.dfake_gen_update_ratio == trainer.dfake_gen_update_ratio == 2


def test_critic_error_spectrum_on_every_generator_step(tiny_exact):
    trainer = _trainer(tiny_exact, real_guidance_scale=0.0)  # no CFG: pred_real is the teacher's conditional x0
    for _ in range(5):
        trainer.train_one_step()
    spectra = trainer.critic_error_spectra
    assert len(spectra) == 3 and spectra[0].shape == (TINY_DATA.num_frames // 2 + 1,)
    # The critic starts as the teacher (zero-initialised residual): on the first generator step
    # pred_fake - pred_real is exactly 0; once the critic has trained, it is not.
    assert torch.equal(spectra[0], torch.zeros_like(spectra[0]))
    assert float(spectra[-1].sum()) > 0


def test_same_seed_same_training(tiny_exact):
    a, b = _trainer(tiny_exact, seed=3), _trainer(tiny_exact, seed=3)
    assert [a.train_one_step() for _ in range(3)] == [b.train_one_step() for _ in range(3)]
    assert a.prompt_digest == b.prompt_digest
    c = _trainer(tiny_exact, seed=4)
    c.train_one_step()
    assert c.prompt_digest != _trainer(tiny_exact, seed=3).prompt_digest


def test_msm_reaches_toydmd_through_wrap_trainer(tiny_exact):
    def third_step(trainer):
        return [trainer.train_one_step() for _ in range(3)][2]

    plain = third_step(_trainer(tiny_exact, seed=1))
    zero = _trainer(tiny_exact, seed=1)
    msm_plugin.wrap_trainer(zero, lam=0.0)
    assert third_step(zero)["generator_loss"] == plain["generator_loss"]  # lam = 0: exactly the host's loss
    wrapped = _trainer(tiny_exact, seed=1)
    assert msm_plugin.wrap_trainer(wrapped, lam=2.0) is wrapped
    logs = third_step(wrapped)
    assert logs["msm_loss"] > 0 and logs["msm_lambda"] == 2.0
    assert logs["generator_loss"] == pytest.approx(logs["dmd_loss"] + 2.0 * logs["msm_loss"], rel=1e-12)


def test_extra_losses_in_the_config_are_installed_like_wrap_trainer(tiny_exact):
    # The config route (what a user writes) and the wrap_trainer call give the same training.
    configured = _trainer(tiny_exact, seed=1, extra_losses=["msm"], msm={"lam": 2.0, "normalization": "dmd"})
    wrapped = msm_plugin.wrap_trainer(_trainer(tiny_exact, seed=1), lam=2.0, normalization="dmd")
    assert [loss.name for loss in msm_plugin.active_losses(configured)] == ["msm"]
    a = [configured.train_one_step() for _ in range(3)][2]
    b = [wrapped.train_one_step() for _ in range(3)][2]
    assert a == b and a["msm_lambda"] == 2.0 and a["msm_loss"] > 0
    assert msm_plugin.active_losses(_trainer(tiny_exact)) == ()  # no extra_losses: plain DMD


def test_generator_and_critic_start_as_the_teacher(tiny_exact):
    teacher, encoder = tiny_exact
    trainer = _trainer(tiny_exact, dfake_gen_update_ratio=1)
    dmd = trainer.distillation_model
    x = torch.randn(2, *TINY_DATA.video_shape)
    t = torch.full((2, TINY_DATA.num_frames), 1000)
    cond = encoder(torch.tensor([0, 1]))
    assert dmd.real_score is teacher
    for score in (dmd.generator, dmd.fake_score):
        assert torch.equal(score(x, cond, t), teacher(x, cond, t))
    report = trainer.parameter_report()
    assert report["trainable_generator"] == sum(p.numel() for p in dmd.generator.parameters())
    assert report["trainable_critic"] == sum(p.numel() for p in dmd.fake_score.parameters())
    before = [p.detach().clone() for p in dmd.generator.parameters()]
    trainer.train_one_step()
    assert any(not torch.equal(a, b) for a, b in zip(before, dmd.generator.parameters()))


def test_non_finite_training_is_reported(tiny_exact):
    score, encoder = tiny_exact
    broken = ExactTeacher(torch.full_like(score.videos, float("nan")), score.labels, TINY_DATA.num_conditions)
    trainer = ToyTrainer(make_trainer_config(batch_size=2), broken, encoder, TINY_DATA, TINY_GENERATOR, TINY_CRITIC)
    with pytest.raises(FloatingPointError, match="non-finite training logs at step 1"):
        trainer.train_one_step()


def test_config_errors(tiny_exact):
    with pytest.raises(ValueError, match=r"unknown trainer option\(s\) \['lr_gen'\]; known: \["):
        make_trainer_config(lr_gen=1.0)
    score, encoder = tiny_exact
    cfg = make_trainer_config()
    cfg.extra = 1
    with pytest.raises(ValueError, match=r"unknown trainer option\(s\) \['extra'\]"):
        ToyTrainer(cfg, score, encoder, TINY_DATA, TINY_GENERATOR, TINY_CRITIC)
    with pytest.raises(ValueError, match="expected dfake_gen_update_ratio >= 1 and batch_size >= 1, got 0 and 16"):
        ToyTrainer(make_trainer_config(dfake_gen_update_ratio=0), score, encoder, TINY_DATA, TINY_GENERATOR, TINY_CRITIC)
    # A bad extra_losses section fails at construction, as in a patched CausVid trainer.
    with pytest.raises(ValueError, match=r"unknown extra loss 'msn' in `extra_losses`; known losses: .*msm"):
        ToyTrainer(make_trainer_config(extra_losses=["msn"]), score, encoder, TINY_DATA, TINY_GENERATOR, TINY_CRITIC)
    with pytest.raises(ValueError, match=r"unknown option `msm.lamda`; did you mean `lam`\?"):
        _trainer(tiny_exact, extra_losses=["msm"], msm={"lamda": 1.0})
