"""Recovering the host's predictions: CausVid's log dict, Self-Forcing's score outputs."""

import pytest
import torch
from torch import nn

from msm_plugin.hosts._capture import ScoreCapture, predictions_from_log

X = torch.arange(6.0).reshape(1, 2, 3, 1, 1)


class Score(nn.Module):
    """x0 = input * dict["scale"] + offset; returns (flow, x0) or x0."""

    def __init__(self, offset, tuple_output=True):
        super().__init__()
        self.offset, self.tuple_output = offset, tuple_output

    def forward(self, noisy_image_or_video, conditional_dict, timestep=None):
        x0 = noisy_image_or_video * conditional_dict["scale"] + self.offset
        return (x0 - noisy_image_or_video, x0) if self.tuple_output else x0


def _dmd(real_scale=2.0, fake_scale=0.0, tuple_output=True):
    dmd = nn.Module()
    dmd.real_score, dmd.fake_score = Score(1.0, tuple_output), Score(-1.0, tuple_output)
    dmd.real_guidance_scale, dmd.fake_guidance_scale = real_scale, fake_scale
    return dmd


COND, UNCOND = {"scale": 3.0}, {"scale": 1.0}


def _host_calls(dmd, fake_uncond=False, positional=False):
    kw = dict(noisy_image_or_video=X, timestep=None)
    if positional:
        dmd.fake_score(X, COND)
        dmd.real_score(X, COND)
        dmd.real_score(X, UNCOND)
        return
    dmd.fake_score(conditional_dict=COND, **kw)
    if fake_uncond:
        dmd.fake_score(conditional_dict=UNCOND, **kw)
    dmd.real_score(conditional_dict=COND, **kw)
    dmd.real_score(conditional_dict=UNCOND, **kw)


@pytest.mark.parametrize("positional", [False, True])
def test_recombines_with_the_host_guidance_scales(positional):
    dmd = _dmd(real_scale=2.0)
    with ScoreCapture(dmd, COND, UNCOND) as cap:
        _host_calls(dmd, positional=positional)
    real, fake = cap.combined()
    # real: cond 3x+1, uncond x+1 -> 3x+1 + 2*(2x) = 7x+1; fake (no fake CFG): 3x-1
    assert torch.equal(real, 7 * X + 1) and torch.equal(fake, 3 * X - 1)


def test_fake_guidance_uses_the_unconditional_critic_call():
    dmd = _dmd(real_scale=0.0, fake_scale=0.5)
    with ScoreCapture(dmd, COND, UNCOND) as cap:
        _host_calls(dmd, fake_uncond=True)
    real, fake = cap.combined()
    assert torch.equal(real, 3 * X + 1)
    assert torch.equal(fake, 3 * X - 1 + (2 * X) * 0.5)


def test_plain_tensor_outputs_and_hooks_removed_after_the_block():
    dmd = _dmd(tuple_output=False)
    with ScoreCapture(dmd, COND, UNCOND) as cap:
        _host_calls(dmd)
    assert not dmd.real_score._forward_hooks and not dmd.fake_score._forward_hooks
    dmd.real_score(noisy_image_or_video=X, conditional_dict=COND)  # outside: not recorded again
    assert torch.equal(cap.combined()[1], 3 * X - 1)


def test_predictions_from_log():
    log = {"dmdtrain_pred_real_image": X, "dmdtrain_pred_fake_image": -X, "timestep": torch.ones(1, 2)}
    pred = predictions_from_log(log)
    assert pred.host == "causvid" and torch.equal(pred.pred_real, X) and torch.equal(pred.pred_fake, -X)
    assert torch.equal(pred.timestep, torch.ones(1, 2))
    assert predictions_from_log({"dmdtrain_gradient_norm": torch.tensor(1.0), "timestep": torch.ones(1, 2)}) is None


@pytest.mark.parametrize(
    "calls, match",
    [
        (lambda d: d.real_score(noisy_image_or_video=X, conditional_dict={"scale": 1.0}), "neither the conditional"),
        (lambda d: [d.fake_score(noisy_image_or_video=X, conditional_dict=COND) for _ in range(2)], "more than once"),
        (lambda d: d.fake_score(noisy_image_or_video=X, conditional_dict=COND), r"no conditional real_score call"),
    ],
)
def test_unattributable_calls_raise_only_when_predictions_are_needed(calls, match):
    dmd = _dmd()
    with ScoreCapture(dmd, COND, UNCOND) as cap:
        calls(dmd)  # never raises inside the host's forward
    with pytest.raises(RuntimeError, match=match):
        cap.combined()


def test_same_dict_for_both_branches_is_reported():
    dmd = _dmd()
    with ScoreCapture(dmd, COND, COND) as cap:
        _host_calls(dmd)
    with pytest.raises(RuntimeError, match="same object"):
        cap.combined()


def test_output_without_x0_is_reported():
    dmd = _dmd()
    dmd.real_score.forward = lambda **kw: "not a tensor"
    with ScoreCapture(dmd, COND, UNCOND) as cap:
        dmd.real_score(noisy_image_or_video=X, conditional_dict=COND)
    with pytest.raises(TypeError, match=r"expected real_score to return an x0 tensor or a \(flow_pred, x0_pred"):
        cap._get("real_score", "cond")


def test_requires_score_modules():
    with pytest.raises(TypeError, match="nn.Module `real_score`"):
        ScoreCapture(object(), COND, UNCOND)
