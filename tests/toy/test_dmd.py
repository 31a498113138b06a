"""ToyDMD follows CausVid's DMD interface, and its numbers match hand-derived formulas."""

from __future__ import annotations

import inspect

import pytest
import torch
from omegaconf import OmegaConf
from torch import nn

from msm_plugin.toy.dmd import ToyDMD
from msm_plugin.toy.teacher import FlowMatchScheduler

CAUSVID_LOG_KEYS = {
    "dmdtrain_clean_latent",
    "dmdtrain_noisy_latent",
    "dmdtrain_pred_real_image",
    "dmdtrain_pred_fake_image",
    "dmdtrain_gradient_norm",
    "timestep",
}
SHAPE = [2, 4, 3, 4, 4]


class FixedScore(nn.Module):
    """x0 prediction that ignores x_t: ``cond_out`` for the condition token 1, ``uncond_out`` for 0."""

    def __init__(self, cond_out, uncond_out=None):
        super().__init__()
        self.cond_out, self.uncond_out = cond_out, cond_out if uncond_out is None else uncond_out
        self.weight = nn.Parameter(torch.ones(()))

    def forward(self, noisy_image_or_video, conditional_dict, timestep):
        is_cond = conditional_dict["prompt_embeds"].reshape(-1, 1, 1, 1, 1)
        return self.weight * (is_cond * self.cond_out + (1 - is_cond) * self.uncond_out)

    def get_scheduler(self):
        return FlowMatchScheduler()


class ScaleScore(FixedScore):
    """x0 prediction ``s * x_t`` (a trainable ``s``)."""

    def __init__(self, s=0.5):
        super().__init__(None)
        self.weight = nn.Parameter(torch.tensor(float(s)))

    def forward(self, noisy_image_or_video, conditional_dict, timestep):
        return self.weight * noisy_image_or_video


def _dmd(generator, real, fake, **cfg):
    args = OmegaConf.create({"denoising_step_list": [1000], "real_guidance_scale": 1.5, **cfg})
    return ToyDMD(args, generator, real, fake)


def _conds(batch):
    return {"prompt_embeds": torch.ones(batch, 1, 1)}, {"prompt_embeds": torch.zeros(batch, 1, 1)}


def test_signatures_match_causvid():
    expected = {
        "generator_loss": ["image_or_video_shape", "conditional_dict", "unconditional_dict", "clean_latent"],
        "critic_loss": ["image_or_video_shape", "conditional_dict", "unconditional_dict", "clean_latent"],
        "_run_generator": ["image_or_video_shape", "conditional_dict", "unconditional_dict", "clean_latent"],
        "compute_distribution_matching_loss": ["image_or_video", "conditional_dict", "unconditional_dict", "gradient_mask"],
        "_compute_kl_grad": [
            "noisy_image_or_video",
            "estimated_clean_image_or_video",
            "timestep",
            "conditional_dict",
            "unconditional_dict",
            "normalization",
        ],
    }
    for name, params in expected.items():
        assert list(inspect.signature(getattr(ToyDMD, name)).parameters)[1:] == params, name


def test_attributes_match_causvid():
    dmd = _dmd(ScaleScore(), ScaleScore(), ScaleScore(), timestep_shift=3.0)
    assert (dmd.num_train_timestep, dmd.min_step, dmd.max_step) == (1000, 20, 980)
    assert dmd.real_guidance_scale == 1.5 and dmd.timestep_shift == 3.0
    assert dmd.denoising_step_list.tolist() == [1000] and dmd.denoising_step_list.dtype == torch.long
    assert dmd.real_task_type == dmd.fake_task_type == dmd.generator_task_type == "bidirectional_video"
    assert callable(dmd.scheduler.add_noise)


def test_kl_grad_matches_hand_formula_and_log_keys():
    torch.manual_seed(0)
    a, rc, ru, x = (torch.randn(SHAPE) for _ in range(4))
    dmd = _dmd(ScaleScore(), FixedScore(rc, ru), FixedScore(a))
    cond, uncond = _conds(2)
    t = torch.full(SHAPE[:2], 500)
    grad, log = dmd._compute_kl_grad(torch.randn(SHAPE), x, t, cond, uncond)
    real = rc + 1.5 * (rc - ru)  # CausVid's CFG: cond + g (cond - uncond)
    normaliser = torch.stack([(x[i] - real[i]).abs().mean() for i in range(2)]).reshape(2, 1, 1, 1, 1)
    torch.testing.assert_close(grad, (a - real) / normaliser)
    assert set(log) == CAUSVID_LOG_KEYS
    for key in CAUSVID_LOG_KEYS - {"dmdtrain_gradient_norm", "timestep"}:
        assert tuple(log[key].shape) == tuple(SHAPE) and not log[key].requires_grad
    torch.testing.assert_close(log["dmdtrain_pred_real_image"], real)
    torch.testing.assert_close(log["dmdtrain_gradient_norm"], grad.abs().mean())
    assert tuple(log["timestep"].shape) == tuple(SHAPE[:2])
    unnormalised, _ = dmd._compute_kl_grad(torch.randn(SHAPE), x, t, cond, uncond, normalization=False)
    torch.testing.assert_close(unnormalised, a - real)


def test_dmd_loss_gradient_is_grad_over_numel():
    torch.manual_seed(1)
    a, rc, ru = (torch.randn(SHAPE) for _ in range(3))
    dmd = _dmd(ScaleScore(), FixedScore(rc, ru), FixedScore(a))
    x = torch.randn(SHAPE, requires_grad=True)
    loss, log = dmd.compute_distribution_matching_loss(x, *_conds(2))
    loss.backward()
    real = rc + 1.5 * (rc - ru)
    grad = (a - real) / (x.detach() - real).abs().mean(dim=(1, 2, 3, 4), keepdim=True)
    assert loss.dtype == torch.float64 and loss.ndim == 0
    torch.testing.assert_close(loss, 0.5 * grad.double().pow(2).mean())
    torch.testing.assert_close(x.grad, grad / x.numel())
    t = log["timestep"]
    assert bool((t == t[:, :1]).all()) and int(t.min()) >= dmd.min_step and int(t.max()) <= dmd.max_step


def test_gradient_mask_restricts_the_loss():
    torch.manual_seed(2)
    a, r = torch.randn(SHAPE), torch.randn(SHAPE)
    dmd = _dmd(ScaleScore(), FixedScore(r), FixedScore(a))
    x = torch.randn(SHAPE)
    mask = torch.zeros(SHAPE, dtype=torch.bool)
    mask[:, 2:] = True
    loss, _ = dmd.compute_distribution_matching_loss(x, *_conds(2), gradient_mask=mask)
    grad = (a - r) / (x - r).abs().mean(dim=(1, 2, 3, 4), keepdim=True)
    torch.testing.assert_close(loss, 0.5 * grad.double()[:, 2:].pow(2).mean())


def test_timestep_processing_per_task_type():
    dmd = _dmd(ScaleScore(), ScaleScore(), ScaleScore(), num_frame_per_block=2)
    t = torch.tensor([[1, 2, 3, 4], [5, 6, 7, 8]])
    assert dmd._process_timestep(t, "bidirectional_video").tolist() == [[1, 1, 1, 1], [5, 5, 5, 5]]
    assert dmd._process_timestep(t, "causal_video").tolist() == [[1, 1, 3, 3], [5, 5, 7, 7]]
    with pytest.raises(ValueError, match="task type should be one of"):
        dmd._process_timestep(t, "video")
    with pytest.raises(ValueError, match="an image task expects one frame"):
        dmd._process_timestep(t, "image")
    three = _dmd(ScaleScore(), ScaleScore(), ScaleScore(), num_frame_per_block=3)
    with pytest.raises(ValueError, match="4 frames do not split into blocks of 3"):
        three._process_timestep(t, "causal_video")


def test_timestep_shift_formula():
    dmd = _dmd(ScaleScore(), ScaleScore(), ScaleScore(), timestep_shift=3.0)
    # s u / (1 + (s - 1) u) at u = 0.5, s = 3: 1.5 / 2 = 0.75
    assert dmd._shift_and_clamp(torch.tensor([500.0, 0.0, 1000.0])).tolist() == [750.0, 20.0, 980.0]


def test_generator_and_critic_losses_on_the_toy_model(tiny_teacher):
    import copy

    score, encoder = tiny_teacher
    gen, fake = copy.deepcopy(score).requires_grad_(True), copy.deepcopy(score).requires_grad_(True)
    dmd = _dmd(gen, score, fake, denoising_step_list=[1000, 500])
    shape = [2, 4, 3, 8, 8]
    labels = torch.tensor([0, 3])
    loss, log = dmd.generator_loss(shape, encoder(labels), encoder.null(2), None)
    assert set(log) == CAUSVID_LOG_KEYS and tuple(log["dmdtrain_clean_latent"].shape) == tuple(shape)
    loss.backward()
    assert all(p.grad is not None for p in gen.parameters()) and all(p.grad is None for p in fake.parameters())
    critic, critic_log = dmd.critic_loss(shape, encoder(labels), encoder.null(2), None)
    assert set(critic_log) == {"critictrain_latent", "critictrain_noisy_latent", "critictrain_pred_image", "critic_timestep"}
    gen.zero_grad(set_to_none=True)
    critic.backward()
    assert all(p.grad is None for p in gen.parameters()) and all(p.grad is not None for p in fake.parameters())
    assert tuple(dmd.generate(torch.randn(shape), encoder(labels)).shape) == tuple(shape)


def test_critic_loss_is_flow_matching_mse():
    torch.manual_seed(3)
    target_x0 = torch.randn(SHAPE)
    gen = FixedScore(target_x0)
    fake = ScaleScore(0.0)  # x0_fake = 0, so v_fake = x_t / sigma
    dmd = _dmd(gen, gen, fake)
    torch.manual_seed(4)
    loss, log = dmd.critic_loss(SHAPE, *_conds(2), None)
    sigma = log["critic_timestep"].float()[..., None, None, None] / 1000
    noise = (log["critictrain_noisy_latent"] - (1 - sigma) * target_x0) / sigma
    expected = (log["critictrain_noisy_latent"] / sigma - (noise - target_x0)).pow(2).mean()
    torch.testing.assert_close(loss, expected)


def test_no_backward_simulation_needs_a_clean_latent():
    dmd = _dmd(ScaleScore(), ScaleScore(), ScaleScore(), backward_simulation=False, denoising_step_list=[1000, 0])
    with pytest.raises(ValueError, match=r"without backward simulation a clean_latent of shape \(2, 4, 3, 4, 4\)"):
        dmd._run_generator(SHAPE, *_conds(2), None)
    clean = torch.randn(SHAPE)
    out, mask = dmd._run_generator(SHAPE, *_conds(2), clean)
    assert out.shape == clean.shape and mask is None


@pytest.mark.parametrize(
    "cfg, match",
    [
        ({"real_guidance_scale": 1.0}, "the DMD config needs `denoising_step_list`"),
        ({"denoising_step_list": [1000]}, "the DMD config needs `real_guidance_scale`"),
        ({"denoising_step_list": [1200], "real_guidance_scale": 1.0}, r"`denoising_step_list` should be a non-empty list in \[0, 1000\]"),
        ({"denoising_step_list": [1000], "real_guidance_scale": 1.0, "real_task_type": "movie"}, "`real_task_type` should be one of"),
    ],
)
def test_config_errors(cfg, match):
    with pytest.raises(ValueError, match=match):
        ToyDMD(OmegaConf.create(cfg), ScaleScore(), ScaleScore(), ScaleScore())
