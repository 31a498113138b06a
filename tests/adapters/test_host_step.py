"""The schedule follows the host's own step, in generator (optimiser) steps: gradient accumulation
and resumed runs included; a second wrap says what changed; FastGen's time scale is its schedule's."""

import math
import threading

import pytest
import torch

import msm_plugin.hosts.fastgen as fastgen
import msm_plugin.hosts.fastvideo as fastvideo
from msm_plugin import active_losses, wrap_trainer
from msm_plugin.adapters import pop_extra_logs
from tests.adapters import framework_standins as sf
from tests.adapters.standins import SHAPE, CausVidDMD, CausVidTrainer, SelfForcingTrainer, make_config, text_dicts

SCHEDULE = {"lam": 0.5, "warmup_steps": 2, "per_pair_logs": False}



# ---------------------------------------------------------------- FastVideo


def fastvideo_method(**method):
    return fastvideo.MSMDMD2Method(cfg=sf.fastvideo_cfg(extra_losses=["msm"], **method), role_models=sf.fastvideo_roles())


def lams(steps):
    return [metrics["msm_lambda"] for _, _, metrics in steps if "msm_lambda" in metrics]


def test_fastvideo_gradient_accumulation_counts_optimiser_steps(frameworks):
    method = fastvideo_method(msm=SCHEDULE)
    steps = sf.fastvideo_train(method, sf.fastvideo_batch(), range(1, 5), accumulation=3)
    # three micro-batches per optimiser step share its weight; the warm-up lasts 2 steps, not 2 calls
    assert lams(steps) == [0.0] * 6 + [0.5] * 6
    assert [m["msm_step"] for _, _, m in steps] == [0, 0, 0, 1, 1, 1, 2, 2, 2, 3, 3, 3]


def test_fastvideo_generator_update_interval_and_resume(frameworks):
    method = fastvideo_method(msm=SCHEDULE, generator_update_interval=3)
    steps = sf.fastvideo_train(method, sf.fastvideo_batch(), range(1, 10))
    assert [m.get("msm_step") for _, _, m in steps] == [None, None, 0, None, None, 1, None, None, 2]
    resumed = fastvideo_method(msm=SCHEDULE, generator_update_interval=3)  # FastVideo resumes at its start step + 1
    steps = sf.fastvideo_train(resumed, sf.fastvideo_batch(), range(601, 604))
    assert [m.get("msm_step") for _, _, m in steps] == [None, None, 200] and lams(steps) == [0.5]


def test_fastvideo_refuses_start_step(frameworks):
    with pytest.raises(ValueError, match=r"^MSM's `start_step` \(10\) is not used: the schedule follows FastVideo's training iteration, "
                                         r"which the host restores on resume; remove `start_step`$"):
        fastvideo_method(msm={"warmup_steps": 20, "start_step": 10})


def test_fastvideo_dmd_loss_outside_a_step_counts_calls(frameworks):
    method = fastvideo_method(msm=SCHEDULE)
    x = torch.randn(sf.FV_SHAPE)
    for _ in range(3):
        method._dmd_loss(x, sf.fastvideo_batch())
    assert active_losses(method)[0].step == 3


# ---------------------------------------------------------------- FastGen


def fastgen_model(**msm):
    return fastgen.MSMDMD2Model(sf.fastgen_config(torch.float64), extra_losses=["msm"], msm=msm)


def test_fastgen_iterations_accumulation_and_resume(frameworks):
    model = fastgen_model(**SCHEDULE)
    # student_update_freq 5: the student trains at iterations 5, 10, 15 (FastGen counts from 1)
    steps = sf.fastgen_train(model, range(1, 16), accumulation=2)
    assert [m["msm_step"].item() for m, _ in steps if "msm_step" in m] == [0, 0, 1, 1, 2, 2]
    assert [m["msm_lambda"].item() for m, _ in steps if "msm_lambda" in m] == [0.0] * 4 + [0.5] * 2
    resumed = fastgen_model(**SCHEDULE)
    (loss_map, _), = sf.fastgen_train(resumed, range(1000, 1001))
    assert (loss_map["msm_step"].item(), loss_map["msm_lambda"].item()) == (199, 0.5)


def test_fastgen_validation_at_iteration_0_does_not_move_the_schedule(frameworks):
    model = fastgen_model(**SCHEDULE)
    with torch.no_grad():
        sf.fastgen_train(model, range(0, 1))  # FastGen validates before training, at iteration 0
    (loss_map, _), = sf.fastgen_train(model, range(5, 6))
    assert loss_map["msm_step"].item() == 0


def test_fastgen_refuses_start_step(frameworks):
    with pytest.raises(ValueError, match=r"^MSM's `start_step` \(3\) is not used: the schedule follows FastGen's training iteration"):
        fastgen_model(start_step=3)


# ---------------------------------------------------------------- CausVid / Self-Forcing


def test_causvid_follows_the_trainers_step_and_start_step_counts_earlier_runs():
    trainer = wrap_trainer(CausVidTrainer(make_config(output_path="unused", dfake_gen_update_ratio=2)), **SCHEDULE)
    seen = []
    for _ in range(6):  # steps 0, 2, 4 train the generator: generator steps 0, 1, 2
        trainer.train_one_step()
        seen.append(pop_extra_logs(trainer).get("msm_step"))
        trainer.step += 1
    assert seen == [0, None, 1, None, 2, None]
    # CausVid starts its step at 0 in every run: a resumed run says how many generator steps came before
    resumed = wrap_trainer(CausVidTrainer(make_config(output_path="unused", dfake_gen_update_ratio=2)), start_step=40, **SCHEDULE)
    resumed.step = 4  # the trainer's own step, wherever it stands
    resumed.train_one_step()
    assert pop_extra_logs(resumed)["msm_step"] == 42


def test_self_forcing_follows_the_trainers_step():
    trainer = wrap_trainer(SelfForcingTrainer(make_config(dfake_gen_update_ratio=5)), **SCHEDULE)
    trainer.step = 15  # the generator trained at steps 0, 5, 10: this is generator step 3
    trainer.model.generator_loss(list(SHAPE), *text_dicts(), None)
    assert pop_extra_logs(trainer)["msm_step"] == 3


def test_a_bare_dmd_object_counts_its_calls():
    dmd = wrap_trainer(CausVidDMD(make_config()), **SCHEDULE)
    for _ in range(3):
        dmd.generator_loss(list(SHAPE), *text_dicts(), None)
    assert pop_extra_logs(dmd)["msm_step"] == 2 and active_losses(dmd)[0].step == 3


# ---------------------------------------------------------------- a second wrap


def test_a_second_wrap_says_what_changed_and_the_schedule_continues():
    dmd = wrap_trainer(CausVidDMD(make_config()), lam=0.5, order=2, warmup_steps=10)
    for _ in range(3):
        dmd.generator_loss(list(SHAPE), *text_dicts(), None)
    with pytest.warns(UserWarning) as warned:
        wrap_trainer(dmd, lam=1.0, warmup_steps=10)
    (message,) = [str(w.message) for w in warned]
    assert message == ("CausVidDMD is already wrapped by msm_plugin; replacing the previous extra losses (wrappers never stack): "
                       "msm.lam 0.5 -> 1.0, msm.order 2 -> 1; the schedule of msm continues at step 3")
    (term,) = active_losses(dmd)
    assert (term.config.order, term.weight, term.step) == (1, 0.0, 3)


def test_a_second_wrap_of_a_framework_model_says_what_changed(frameworks):
    model = fastgen_model(lam=0.5)
    with pytest.warns(UserWarning, match=r"replacing them \(they never stack\): msm.normalization 'motion' -> 'dmd'$"):
        wrap_trainer(model, lam=0.5, normalization="dmd")
    with pytest.warns(UserWarning, match=r": the same losses and options$"):
        wrap_trainer(model, lam=0.5, normalization="dmd")


# ---------------------------------------------------------------- FastGen's time scale


class Probe:
    name, weight = "probe", 1.0

    def __call__(self, ctx):
        self.ctx = ctx
        return ctx.generated.sum() * 0, {}


@pytest.mark.parametrize("schedule, max_t", [("rf", 0.999), ("edm", 80.0), ("trig", math.pi / 2)])
def test_fastgen_timestep_scale_is_the_schedules_max_t(frameworks, schedule, max_t):
    model = sf.DMD2Model(sf.fastgen_config(torch.float64, schedule=schedule))
    probe = Probe()
    fastgen.FastGenHost().install(model, [probe])
    sf.fastgen_train(model, range(5, 6))
    assert probe.ctx.timestep_scale == max_t
    assert bool(((probe.ctx.timestep / max_t >= 0) & (probe.ctx.timestep / max_t <= 1)).all())


def test_fastgen_noise_range_on_an_edm_schedule(frameworks):
    model = fastgen.MSMDMD2Model(sf.fastgen_config(torch.float64, schedule="edm"), extra_losses=["msm"], msm={"t_max": 0.5})
    seen = []
    model.fake_score.register_forward_pre_hook(lambda module, args: seen.append(args[1]))
    shares = []
    for seed in range(4):
        (loss_map, _), = sf.fastgen_train(model, range(5, 6), seed=seed)
        shares.append((loss_map["msm_noise_range_share"].item(), (seen[-1] / 80 <= 0.5).double().mean().item()))
    assert all(a == b for a, b in shares) and {a for a, _ in shares} != {1.0}


def test_fastgen_without_a_noise_schedule_the_scale_is_unknown_not_1(frameworks):
    # None: a noise range then refuses with "needs the host's timestep scale" (test_msm_options)
    assert fastgen.max_time(object()) is None and fastgen.max_time(fastgen_model()) == 0.999


# ---------------------------------------------------------------- FastGen: one model's capture is its own


def test_another_model_stepping_inside_one_models_step_is_neither_recorded_nor_affected(frameworks):
    """FastGen's module is never changed: a second model (or thread) calling the same loss function
    while the first model is in its student step sees the plain function."""
    ours = fastgen_model(lam=0.5)
    other, alone = sf.DMD2Model(sf.fastgen_config(torch.float64)), sf.DMD2Model(sf.fastgen_config(torch.float64))
    inner = []

    def step_the_other(module, args):
        if not inner:
            inner.append(sf.fastgen_train(other, range(5, 6), seed=1)[0][0])

    ours.fake_score.register_forward_pre_hook(step_the_other)
    (loss_map, _), = sf.fastgen_train(ours, range(5, 6))
    (reference, _), = sf.fastgen_train(alone, range(5, 6), seed=1)
    assert "msm_loss" in loss_map and "msm_loss" not in inner[0]
    assert torch.equal(inner[0]["total_loss"], reference["total_loss"])


def test_two_models_in_two_threads(frameworks):
    models = [fastgen_model(lam=0.5), sf.DMD2Model(sf.fastgen_config(torch.float64))]
    barrier, results, errors = threading.Barrier(2), {}, []

    def run(i):
        try:
            for _ in range(3):
                barrier.wait(timeout=30)
                results.setdefault(i, []).append(models[i].single_train_step(sf.fastgen_data(dtype=torch.float64), 5)[0])
        except Exception as exc:  # reported below, with the thread's error
            errors.append(exc)

    threads = [threading.Thread(target=run, args=(i,)) for i in range(2)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not errors, errors
    assert all("msm_loss" in r for r in results[0]) and not any("msm_loss" in r for r in results[1])
