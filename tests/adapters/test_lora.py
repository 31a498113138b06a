"""MSM with a peft LoRA student: a tiny diffusers ``WanTransformer3DModel`` wrapped by peft as the generator.

On the CausVid / Self-Forcing chain (their stand-ins, networks swapped for Wan score wrappers) and
on FastVideo's method stand-in: gradients reach only the adapter weights, lam = 0 is the host's
loss and adapter gradients bit for bit, the saved adapter loads in plain peft and reproduces the
trained student's outputs, and ``unwrap_trainer`` gives back the host untouched.
"""

import pytest
import torch
from einops import rearrange
from torch import nn

from msm_plugin import active_losses, unwrap_trainer, wrap_trainer
from msm_plugin.adapters import pop_extra_logs
from tests.adapters import framework_standins as sf
from tests.adapters.standins import EMBED, SHAPE, CausVidDMD, SelfForcingDMD, make_config, text_dicts

peft = pytest.importorskip("peft")
diffusers = pytest.importorskip("diffusers")

CHANNELS = SHAPE[2]
WAN = dict(patch_size=(1, 2, 2), num_attention_heads=2, attention_head_dim=8, in_channels=CHANNELS,
           out_channels=CHANNELS, text_dim=EMBED, freq_dim=16, ffn_dim=32, num_layers=2)
# init_lora_weights=False: A and B both random, so both get gradients and the adapter changes outputs
LORA = dict(r=4, lora_alpha=8, target_modules=["to_q", "to_k", "to_v", "to_out.0"], init_lora_weights=False)


def wan(seed: int) -> nn.Module:
    torch.manual_seed(seed)
    return diffusers.WanTransformer3DModel(**WAN)


def lora_student(seed: int = 0):
    return peft.get_peft_model(wan(seed), peft.LoraConfig(**LORA))


def flow(model: nn.Module, noisy: torch.Tensor, timestep: torch.Tensor, text: torch.Tensor) -> torch.Tensor:
    """Wan's velocity on ``[B, F, C, H, W]`` (it works on ``[B, C, F, H, W]``), one timestep per sample."""
    out = model(hidden_states=rearrange(noisy, "b f c h w -> b c f h w"), timestep=timestep.float(),
                encoder_hidden_states=text.float(), return_dict=False)[0]
    return rearrange(out, "b c f h w -> b f c h w")


class WanScore(nn.Module):
    """A CausVid (x0) or Self-Forcing ((flow, x0)) score wrapper over Wan, on the stand-ins' flow
    schedule ``x_t = (1 - s) x + s noise``, ``s = t / 1000``: ``x0 = x_t - s v``."""

    def __init__(self, model: nn.Module, tuple_output: bool) -> None:
        super().__init__()
        self.model, self.tuple_output = model, tuple_output

    def forward(self, noisy_image_or_video, conditional_dict, timestep):
        v = flow(self.model, noisy_image_or_video, timestep[:, 0], conditional_dict["prompt_embeds"])
        x0 = noisy_image_or_video - (timestep.float() / 1000)[..., None, None, None] * v
        return (v, x0) if self.tuple_output else x0


def chain_dmd(host: str):
    """The host's DMD stand-in with a LoRA Wan generator, a frozen Wan teacher and a Wan critic."""
    dmd = {"causvid": CausVidDMD, "self_forcing": SelfForcingDMD}[host](make_config())
    tuple_output = host == "self_forcing"  # Self-Forcing also masks its first block (gradient_mask)
    dmd.generator = WanScore(lora_student(), tuple_output)
    dmd.real_score = WanScore(wan(1), tuple_output).requires_grad_(False)
    dmd.fake_score = WanScore(wan(2), tuple_output)
    return dmd


def generator_step(dmd):
    """One generator step (same seed every time): ``(loss, logs, {name: grad})``, grads then cleared."""
    cond, uncond = text_dicts()
    torch.manual_seed(5)
    loss, logs = dmd.generator_loss(list(SHAPE), cond, uncond, None)
    loss.backward()
    grads = {n: p.grad.clone() for n, p in dmd.named_parameters() if p.grad is not None}
    dmd.zero_grad(set_to_none=True)
    return loss.detach(), logs, grads


def adapter_names(module: nn.Module):
    return {n for n, _ in module.named_parameters() if "lora_" in n}


@pytest.mark.parametrize("host", ["causvid", "self_forcing"])
def test_chain_msm_trains_only_the_adapter_and_lam_zero_is_the_host_bit_for_bit(host):
    dmd = chain_dmd(host)
    adapters = {f"generator.model.{n}" for n in adapter_names(dmd.generator.model)}
    assert len(adapters) == 2 * 4 * 2 * 2  # A and B of q, k, v, out in both attentions of both blocks

    host_loss, _, host_grads = generator_step(dmd)
    assert set(host_grads) == adapters  # frozen Wan weights, teacher and critic: no gradient

    wrap_trainer(dmd, lam=0.0)
    loss, logs, grads = generator_step(dmd)
    assert torch.equal(loss, host_loss) and torch.equal(logs["dmd_loss"], host_loss)
    assert grads.keys() == host_grads.keys() and all(torch.equal(grads[n], host_grads[n]) for n in grads)

    with pytest.warns(UserWarning, match="replacing the previous extra losses"):
        wrap_trainer(dmd, lam=0.5)
    loss, logs, grads = generator_step(dmd)
    assert set(grads) == adapters and all(grads[n].abs().sum() > 0 for n in grads)
    assert loss.item() == pytest.approx(logs["dmd_loss"].item() + 0.5 * logs["msm_loss"].item(), rel=1e-12)
    assert any(not torch.equal(grads[n], host_grads[n]) for n in grads)  # MSM moves the adapter update
    assert 0 < logs["msm_grad_ratio"].item() < float("inf")


@pytest.mark.parametrize("host", ["causvid", "self_forcing"])
def test_the_trained_adapter_loads_in_plain_peft_and_unwrap_restores_everything(host, tmp_path):
    dmd = chain_dmd(host)
    student = dmd.generator.model
    before = {k: v.clone() for k, v in dmd.state_dict().items()}
    wrap_trainer(dmd, lam=0.5)
    optimizer = torch.optim.SGD([p for p in student.parameters() if p.requires_grad], lr=0.5)
    for _ in range(2):
        cond, uncond = text_dicts()
        dmd.generator_loss(list(SHAPE), cond, uncond, None)[0].backward()
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)
    trained = dmd.state_dict()
    changed = {k for k in before if not torch.equal(before[k], trained[k])}
    assert changed and all("lora_" in k for k in changed)  # only adapter weights moved
    student.save_pretrained(str(tmp_path))

    unwrap_trainer(dmd)
    assert active_losses(dmd) == () and pop_extra_logs(dmd) == {}
    assert not {"compute_distribution_matching_loss", "_compute_kl_grad", "_msm_plugin_state"} & set(vars(dmd))
    after = dmd.state_dict()
    assert after.keys() == before.keys() and all(torch.equal(after[k], trained[k]) for k in after)
    assert isinstance(student, peft.PeftModel) and student.active_adapter == "default"

    noisy = torch.randn(SHAPE, generator=torch.Generator().manual_seed(9))
    text, t = text_dicts()[0]["prompt_embeds"], torch.full((SHAPE[0],), 757.0)
    with torch.no_grad():
        expected = flow(student, noisy, t, text)
        loaded = peft.PeftModel.from_pretrained(wan(0), str(tmp_path))
        assert torch.equal(flow(loaded, noisy, t, text), expected)
        fresh = peft.get_peft_model(wan(0), peft.LoraConfig(**LORA))
        from safetensors.torch import load_file

        result = peft.set_peft_model_state_dict(fresh, load_file(str(tmp_path / "adapter_model.safetensors")))
        assert not result.unexpected_keys
        assert torch.equal(flow(fresh, noisy, t, text), expected)
        assert not torch.equal(flow(wan(0), noisy, t, text), expected)  # the adapter is what differs


# ------------------------------------------------------------------ FastVideo's method stand-in

FV_SHAPE = (1, 5, CHANNELS, 4, 4)


class WanRole(sf.Role):
    """A FastVideo role model whose ``transformer`` is a Wan (LoRA-wrapped for the student)."""

    def __init__(self, model: nn.Module) -> None:
        self.transformer = model

    def predict_x0(self, noisy_latents, timestep, batch, conditional=True, cfg_uncond=None, attn_kind="dense"):
        text = batch.text if conditional else batch.negative
        t = timestep.float().reshape(-1).expand(noisy_latents.shape[0])
        v = flow(self.transformer, noisy_latents, t, text)
        return noisy_latents - (t / 1000)[:, None, None, None, None] * v


@pytest.fixture
def fv(frameworks):
    import msm_plugin.hosts.fastvideo as fastvideo

    return fastvideo


def fastvideo_step(method, batch):
    loss_map, _, metrics = method.single_train_step(batch, 0)
    loss_map["generator_loss"].backward()
    student = method.student.transformer
    grads = {n: p.grad.clone() for n, p in student.named_parameters() if p.grad is not None}
    for net in (student, method.critic.transformer):
        net.zero_grad(set_to_none=True)
    return loss_map["generator_loss"].detach(), metrics, grads


def test_fastvideo_lora_student_lam_zero_bit_for_bit_and_unwrap(fv):
    roles = {"student": WanRole(lora_student()), "teacher": WanRole(wan(1).requires_grad_(False)), "critic": WanRole(wan(2))}
    g = torch.Generator().manual_seed(0)
    batch = sf.SimpleNamespace(latents=torch.randn(FV_SHAPE, generator=g), text=torch.randn(1, 4, EMBED, generator=g),
                               negative=torch.randn(1, 4, EMBED, generator=g))
    # Same roles; each method seeds its own generator (the score timestep and noise) identically.
    upstream = sf.DMD2Method(cfg=sf.fastvideo_cfg(), role_models=roles)
    method = fv.MSMDMD2Method(cfg=sf.fastvideo_cfg(extra_losses=["msm"], msm={"lam": 0.0}), role_models=roles)
    host_loss, _, host_grads = fastvideo_step(upstream, batch)
    assert set(host_grads) == adapter_names(roles["student"].transformer)
    loss, metrics, grads = fastvideo_step(method, batch)
    assert torch.equal(loss, host_loss) and grads.keys() == host_grads.keys()
    assert all(torch.equal(grads[n], host_grads[n]) for n in grads)
    assert metrics["msm_lambda"] == 0.0 and metrics["msm_loss"].item() > 0  # measured, not applied

    with pytest.warns(UserWarning, match="already has msm_plugin extra losses; replacing them"):
        wrap_trainer(method, lam=0.5)
    method.cuda_generator.manual_seed(7)
    loss, metrics, grads = fastvideo_step(method, batch)
    assert set(grads) == set(host_grads) and any(not torch.equal(grads[n], host_grads[n]) for n in grads)
    assert loss.item() == pytest.approx(metrics["dmd_loss"].item() + 0.5 * metrics["msm_loss"].item(), rel=1e-6)

    unwrap_trainer(method)
    assert not {"_dmd_loss", "single_train_step", "_msm_plugin_extra"} & set(vars(method))
    student = roles["student"].transformer
    assert {n for n, p in student.named_parameters() if p.requires_grad} == adapter_names(student)
