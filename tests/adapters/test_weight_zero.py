"""Weight 0 is the host bit for bit, on every host with its own tensor layout.

Whenever MSM's effective weight is 0 (``lam: 0``, a warm-up step, a batch outside the noise
range) its term stays out of the autograd graph: a zero gradient returned through the host's
tensors (FastGen's frames-first view of a channels-last network output) changes the summation
order of the host's backward pass, and with it the last bits of the student's gradients.
"""

import pytest
import torch

import msm_plugin.hosts.fastgen as fastgen
import msm_plugin.hosts.fastvideo as fastvideo
from msm_plugin import wrap_trainer
from msm_plugin.adapters import pop_extra_logs
from tests.adapters import framework_standins as sf
from tests.adapters.standins import SHAPE, CausVidDMD, SelfForcingDMD, generator_step, make_config

# every score timestep of the stand-ins lies in [0.02, 0.98] of the host's range: t_min 0.99 counts none
WEIGHT_ZERO = {
    "lam_0": {"lam": 0.0},
    "warm_up": {"lam": 0.5, "warmup_steps": 1},
    "empty_noise_range": {"lam": 0.5, "t_min": 0.99},
}



def _same(a, b):
    return all(torch.equal(x, y) and x.dtype == y.dtype for x, y in zip(a, b))


@pytest.mark.parametrize("case", sorted(WEIGHT_ZERO))
@pytest.mark.parametrize("host, rollout", [("causvid", None), ("self_forcing", None), ("self_forcing", SHAPE[1] + 3)],
                         ids=["causvid", "self_forcing", "self_forcing_masked"])
def test_dmd_chain(case, host, rollout):
    def dmd(**options):
        built = {"causvid": CausVidDMD, "self_forcing": SelfForcingDMD}[host](make_config())
        built.generated_frames = rollout
        return wrap_trainer(built, **options) if options else built

    plain_loss, _, plain_grads = generator_step(dmd())
    loss, log, grads = generator_step(dmd(**WEIGHT_ZERO[case]))
    assert torch.equal(loss, plain_loss) and _same(grads, plain_grads)
    assert log["msm_lambda"] == 0.0 or log["msm_pairs_counted"] == 0


@pytest.mark.parametrize("case", sorted(WEIGHT_ZERO))
def test_fastvideo(frameworks, case):
    def student_step(method):
        torch.manual_seed(0)
        loss_map, _, _ = method.single_train_step(sf.fastvideo_batch(), 1)
        loss_map["total_loss"].backward()
        return loss_map, [p.grad for p in method.student.transformer.parameters()]

    roles = sf.fastvideo_roles
    method = fastvideo.MSMDMD2Method(cfg=sf.fastvideo_cfg(extra_losses=["msm"], msm=WEIGHT_ZERO[case]), role_models=roles())
    ours, grads = student_step(method)
    theirs, plain_grads = student_step(sf.DMD2Method(cfg=sf.fastvideo_cfg(), role_models=roles()))
    assert all(torch.equal(ours[k], theirs[k]) for k in theirs) and _same(grads, plain_grads)


@pytest.mark.parametrize("case", sorted(WEIGHT_ZERO))
@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16])
def test_fastgen(frameworks, case, dtype):
    def student_step(model):
        torch.manual_seed(0)
        loss_map, _ = model.single_train_step(sf.fastgen_data(dtype=dtype), 5)
        loss_map["total_loss"].backward()
        return loss_map, [p.grad for p in model.net.parameters()]

    model = fastgen.MSMDMD2Model(sf.fastgen_config(dtype), extra_losses=["msm"], msm=WEIGHT_ZERO[case])
    ours, grads = student_step(model)
    theirs, plain_grads = student_step(sf.DMD2Model(sf.fastgen_config(dtype)))
    assert all(torch.equal(ours[k], theirs[k]) for k in theirs) and _same(grads, plain_grads)
    assert ours["total_loss"] is not None and ours["msm_loss"].dtype == torch.float64


def test_a_nonzero_weight_does_reach_fastgens_gradients(frameworks):
    """The comparison above can fail: with lam 0.5 the student's gradients move."""
    def grads(model):
        torch.manual_seed(0)
        model.single_train_step(sf.fastgen_data(), 5)[0]["total_loss"].backward()
        return [p.grad for p in model.net.parameters()]

    moved = grads(fastgen.MSMDMD2Model(sf.fastgen_config(), extra_losses=["msm"], msm={"lam": 0.5}))
    assert not _same(moved, grads(sf.DMD2Model(sf.fastgen_config())))


def test_weight_zero_still_logs_the_loss(frameworks):
    method = fastvideo.MSMDMD2Method(cfg=sf.fastvideo_cfg(extra_losses=["msm"], msm={"lam": 0.0}), role_models=sf.fastvideo_roles())
    torch.manual_seed(0)
    _, _, metrics = method.single_train_step(sf.fastvideo_batch(), 1)
    assert metrics["msm_lambda"] == 0.0 and metrics["msm_loss"] > 0
    assert pop_extra_logs(method) == {}  # already handed to the step's metrics
