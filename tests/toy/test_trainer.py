"""ToyTrainer: CausVid's loop, the public wrap_trainer path, LoRA mode, determinism, checks."""

from __future__ import annotations

import copy

import pytest
import torch

import msm_plugin
from msm_plugin.toy.trainer import LORA_TARGETS, ToyTrainer, make_trainer_config

from .conftest import TINY_DATA


def _trainer(teacher, **overrides):
    score, encoder = teacher
    options = {"batch_size": 2, "dfake_gen_update_ratio": 2, **overrides}
    return ToyTrainer(make_trainer_config(**options), score, encoder, TINY_DATA)


def test_update_schedule_and_logs(tiny_teacher):
    trainer = _trainer(tiny_teacher)
    logs = [trainer.train_one_step() for _ in range(4)]
    assert ["generator_loss" in entry for entry in logs] == [True, False, True, False]
    assert {"critic_loss", "critic_grad_norm"} <= set(logs[1])
    assert {"generator_loss", "generator_grad_norm", "dmdtrain_gradient_norm"} <= set(logs[0])
    assert trainer.config.dfake_gen_update_ratio == trainer.dfake_gen_update_ratio == 2


def test_same_seed_same_training(tiny_teacher):
    a, b = _trainer(tiny_teacher, seed=3), _trainer(tiny_teacher, seed=3)
    assert [a.train_one_step() for _ in range(3)] == [b.train_one_step() for _ in range(3)]
    assert a.prompt_digest == b.prompt_digest
    c = _trainer(tiny_teacher, seed=4)
    c.train_one_step()
    assert c.prompt_digest != _trainer(tiny_teacher, seed=3).prompt_digest


def test_msm_reaches_toydmd_through_wrap_trainer(tiny_teacher):
    plain = _trainer(tiny_teacher, seed=1).train_one_step()
    zero = _trainer(tiny_teacher, seed=1)
    msm_plugin.wrap_trainer(zero, lam=0.0)
    zero_logs = zero.train_one_step()
    assert zero_logs["generator_loss"] == plain["generator_loss"]  # lam = 0: exactly the host's loss
    wrapped = _trainer(tiny_teacher, seed=1)
    assert msm_plugin.wrap_trainer(wrapped, lam=2.0) is wrapped
    logs = wrapped.train_one_step()
    assert logs["msm_loss"] > 0 and logs["msm_lambda"] == 2.0
    assert logs["generator_loss"] == pytest.approx(plain["generator_loss"] + 2.0 * logs["msm_loss"], rel=1e-6)


def _lora_param_count(model, rank):
    # r * (in + out) per adapted Linear, counted from the teacher's own layers.
    total = 0
    for name, module in model.named_modules():
        if isinstance(module, torch.nn.Linear) and any(name.endswith(t) for t in LORA_TARGETS):
            total += rank * (module.in_features + module.out_features)
    return total


def test_lora_mode_trains_only_adapters(tiny_teacher):
    score, encoder = tiny_teacher
    trainer = _trainer(tiny_teacher, lora=True, lora_rank=2, dfake_gen_update_ratio=1)
    shared = trainer.shared_score
    dmd = trainer.distillation_model
    x = torch.randn(2, *TINY_DATA.video_shape)
    t = torch.full((2, TINY_DATA.num_frames), 1000)
    cond = encoder(torch.tensor([0, 1]))
    # Fresh adapters start at zero: the generator equals the teacher.
    torch.testing.assert_close(dmd.generator(x, cond, t), score(x, cond, t))
    before = {n: p.detach().clone() for n, p in shared.named_parameters()}
    for _ in range(2):
        trainer.train_one_step()
    changed = {n for n, p in shared.named_parameters() if not torch.equal(p, before[n])}
    assert changed and all("lora_" in n for n in changed)
    assert any(".generator." in n for n in changed) and any(".critic." in n for n in changed)
    # The real score is the frozen teacher, even after the adapters moved.
    torch.testing.assert_close(dmd.real_score(x, cond, t), score(x, cond, t))

    report = trainer.parameter_report()
    expected = _lora_param_count(score.model, 2)
    assert report["trainable_generator"] == report["trainable_critic"] == expected
    teacher_params = sum(p.numel() for p in score.parameters())
    assert report["stored_parameters"] == teacher_params + 2 * expected
    full = _trainer(tiny_teacher).parameter_report()
    assert full["stored_parameters"] == 3 * teacher_params and full["trainable_generator"] == teacher_params
    assert report["total_bytes"] < full["total_bytes"]


def test_non_finite_training_is_reported(tiny_teacher):
    score, encoder = tiny_teacher
    broken = copy.deepcopy(score)
    with torch.no_grad():
        next(broken.parameters()).fill_(float("nan"))
    trainer = ToyTrainer(make_trainer_config(batch_size=2), broken, encoder, TINY_DATA)
    with pytest.raises(FloatingPointError, match="non-finite training logs at step 1"):
        trainer.train_one_step()


def test_config_errors(tiny_teacher):
    with pytest.raises(ValueError, match=r"unknown trainer option\(s\) \['lr_gen'\]; known: \["):
        make_trainer_config(lr_gen=1.0)
    score, encoder = tiny_teacher
    cfg = make_trainer_config()
    cfg.extra = 1
    with pytest.raises(ValueError, match=r"unknown trainer option\(s\) \['extra'\]"):
        ToyTrainer(cfg, score, encoder, TINY_DATA)
    with pytest.raises(ValueError, match="expected dfake_gen_update_ratio >= 1 and batch_size >= 1, got 0 and 16"):
        ToyTrainer(make_trainer_config(dfake_gen_update_ratio=0), score, encoder, TINY_DATA)
