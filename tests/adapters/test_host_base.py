"""The pieces a host adapter reuses: recorded_calls (for a subclassing host) and ExtraLosses."""

import pytest
import torch
from torch import nn

from msm_plugin.hosts.hooks import patch_method, unpatch_method
from msm_plugin.hosts import ExtraLosses, recorded_calls
from msm_plugin.context import LossContext
from msm_plugin.registry import get_loss
from tests.reference import msm_reference


class Critic(nn.Module):
    """A FastVideo-like score model: ``predict_x0(noisy, timestep, batch, conditional=...)``."""

    def __init__(self) -> None:
        super().__init__()
        self.scale = nn.Parameter(torch.tensor(0.5))
        self.calls = 0

    def predict_x0(self, noisy, timestep, batch, conditional=True):
        self.calls += 1
        return noisy * self.scale * (1.0 if conditional else 0.5)


def test_records_outputs_by_argument_name_without_extra_calls_and_restores():
    critic, x = Critic(), torch.ones(1, 3, 1, 1, 1)
    before = dict(vars(critic))
    with recorded_calls(critic, "predict_x0") as calls:
        out_cond = critic.predict_x0(x, torch.tensor([500.0]), {}, conditional=True)
        out_uncond = critic.predict_x0(x, torch.tensor([500.0]), batch={}, conditional=False)
    assert critic.calls == 2 and len(calls) == 2
    assert calls[0].output is out_cond and calls[1].output is out_uncond  # references, not copies
    assert [c.arguments["conditional"] for c in calls] == [True, False] and calls[1].arguments["batch"] == {}
    assert vars(critic).keys() == before.keys() and "scale" in dict(critic.named_parameters())


def test_restored_after_an_exception_and_through_an_instance_patch():
    critic = Critic()
    patch_method(critic, "predict_x0", lambda original: lambda *a, **k: original(*a, **k) + 1)
    patched = vars(critic)["predict_x0"]
    with pytest.raises(RuntimeError, match="boom"):
        with recorded_calls(critic, "predict_x0") as calls:
            critic.predict_x0(torch.zeros(1), 0, {})
            raise RuntimeError("boom")
    assert calls[0].output.item() == 1.0 and vars(critic)["predict_x0"] is patched
    unpatch_method(critic, "predict_x0")
    assert "predict_x0" not in vars(critic)


def test_not_a_method_is_refused():
    with pytest.raises(TypeError, match=r"expected Critic.forward_x0 to be a method, got None"):
        with recorded_calls(Critic(), "forward_x0"):
            pass


def test_a_subclassing_host_adds_msm_from_recorded_predictions():
    """How a FastVideo-like subclass uses the pieces: the host's loss method makes the teacher and
    critic calls; the subclass records them, builds the context and adds the losses."""
    teacher, critic = Critic(), Critic()
    with torch.no_grad():
        teacher.scale.fill_(0.8)
    g = torch.Generator().manual_seed(0)
    x = torch.randn(2, 4, 1, 2, 2, generator=g, dtype=torch.float64, requires_grad=True)

    def host_loss(x):  # the host's own DMD loss: predictions are local variables
        with torch.no_grad():
            fake = critic.predict_x0(x, None, {}, conditional=True)
            real = teacher.predict_x0(x, None, {}, conditional=True)
        return 0.5 * ((x - (x - (fake - real)).detach()) ** 2).mean()

    extra = ExtraLosses([get_loss("msm")(lam=0.5, normalization="none")])
    with recorded_calls(teacher, "predict_x0") as real_calls, recorded_calls(critic, "predict_x0") as fake_calls:
        dmd = host_loss(x)
    ctx = LossContext(x, real_calls[0].output, fake_calls[0].output, host="stand_in")
    total, logs = extra.add(dmd, {}, ctx)
    ref, _ = msm_reference(x.detach().numpy(), real_calls[0].output.numpy(), fake_calls[0].output.numpy(), normalization="none")
    assert logs["msm_loss"].item() == pytest.approx(ref, rel=1e-12)
    assert total.item() == pytest.approx(dmd.item() + 0.5 * ref, rel=1e-12)
    assert teacher.calls == critic.calls == 1
    assert extra.pop_logs()["msm_lambda"] == 0.5 and extra.pop_logs() == {}
