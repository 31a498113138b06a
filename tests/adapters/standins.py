"""Tiny stand-ins for the hosts' DMD objects and Trainers, written from their documented interfaces.

Nothing here is upstream code: these classes reproduce the interfaces of CausVid
(``causvid/dmd.py``, ``causvid/train_distillation.py``) and Self-Forcing (``model/dmd.py``,
``trainer/distillation.py``), which ``test_upstream_interfaces.py`` compares with their sources
when given: method names and signatures, the call chain
``generator_loss -> _run_generator -> compute_distribution_matching_loss -> _compute_kl_grad``,
keyword calls of the score wrappers, ``[B, F]`` timesteps, CausVid's x0 outputs and log keys,
Self-Forcing's ``(flow_pred, x0_pred)`` tuples, ``gradient_mask`` (None when the generator rolls
out exactly the frames the teacher sees, 21 upstream; the first block masked after a longer
rollout), ``fake_guidance_scale`` and ``denoised_timestep_from/to``. The networks are tiny 3-D convolutions so that frames interact.
Every network call is counted (``.calls``) so tests can prove the adapter adds none.
"""

from __future__ import annotations

import os
from typing import List, Optional

import torch
import torch.nn.functional as F
from einops import rearrange
from torch import Tensor, nn

SHAPE = (2, 6, 3, 4, 4)  # [B, F, C, H, W]
EMBED = 5


class TinyScore(nn.Module):
    """x0 predictor ``forward(noisy_image_or_video, conditional_dict, timestep)``.

    ``tuple_output=True`` returns Self-Forcing's ``(flow_pred, x0_pred)``; otherwise CausVid's x0.
    """

    def __init__(self, channels: int, seed: int, tuple_output: bool = False) -> None:
        super().__init__()
        g = torch.Generator().manual_seed(seed)
        self.conv = nn.Conv3d(channels, channels, kernel_size=3, padding=1)
        self.cond = nn.Linear(EMBED, channels)
        with torch.no_grad():
            for p in self.parameters():
                p.copy_(0.3 * torch.randn(p.shape, generator=g))
        self.tuple_output = tuple_output
        self.calls = 0

    def forward(self, noisy_image_or_video: Tensor, conditional_dict: dict, timestep: Tensor):
        self.calls += 1
        x = noisy_image_or_video
        sigma = (timestep.float() / 1000.0)[..., None, None, None]  # [B, F, 1, 1, 1]
        h = self.conv(rearrange(x, "b f c h w -> b c f h w"))
        h = rearrange(h, "b c f h w -> b f c h w")
        emb = self.cond(conditional_dict["prompt_embeds"].mean(1))  # [B, C]
        x0 = x * (1 - sigma) + torch.tanh(h) * sigma + emb[:, None, :, None, None] * 0.1
        if not self.tuple_output:
            return x0
        flow = (x - x0) / sigma.clamp(min=1e-3)
        return flow, x0


class FlowScheduler:
    """Flow matching ``x_t = (1 - s) x + s noise`` with ``s = t / 1000`` on flattened ``[B*F, ...]``."""

    def add_noise(self, x: Tensor, noise: Tensor, timestep: Tensor) -> Tensor:
        s = (timestep.float() / 1000.0).reshape(-1, *([1] * (x.dim() - 1)))
        return (1 - s) * x + s * noise


def make_config(**overrides) -> dict:
    """A host config with the keys the stand-ins read (CausVid names)."""
    config = dict(
        generator_task="bidirectional_video", real_task_type="bidirectional_video",
        fake_task_type="bidirectional_video", num_frame_per_block=3, num_train_timestep=1000,
        timestep_shift=3.0, real_guidance_scale=2.5, fake_guidance_scale=0.0,
        denoising_step_list=[1000, 757, 522], lr=1e-3, dfake_gen_update_ratio=2, log_iters=100,
        image_or_video_shape=list(SHAPE), no_save=False, no_visualize=True, seed=0,
    )
    config.update(overrides)
    return config


def _get(config, key, default=None):
    return config.get(key, default) if isinstance(config, dict) else getattr(config, key, default)


class _BaseDMD(nn.Module):
    """What both hosts share: attributes, timestep processing, generator run, critic loss."""

    tuple_output = False

    def __init__(self, args, device="cpu") -> None:
        super().__init__()
        c = SHAPE[2]
        self.generator = TinyScore(c, seed=1, tuple_output=self.tuple_output)
        self.real_score = TinyScore(c, seed=2, tuple_output=self.tuple_output).requires_grad_(False)
        self.fake_score = TinyScore(c, seed=3, tuple_output=self.tuple_output)
        self.scheduler = FlowScheduler()
        self.args = args
        self.device = torch.device(device)
        self.dtype = torch.float32
        self.num_train_timestep = _get(args, "num_train_timestep")
        # Score timesteps are clamped to the middle 96 % of the schedule, as both hosts document.
        self.min_step, self.max_step = (int(share * self.num_train_timestep) for share in (0.02, 0.98))
        self.real_guidance_scale = _get(args, "real_guidance_scale")
        self.timestep_shift = _get(args, "timestep_shift", 1.0)
        self.num_frame_per_block = _get(args, "num_frame_per_block", 1)
        self.generator_task_type = _get(args, "generator_task")
        self.real_task_type = _get(args, "real_task_type", self.generator_task_type)
        self.fake_task_type = _get(args, "fake_task_type", self.generator_task_type)
        self.denoising_step_list = torch.tensor(_get(args, "denoising_step_list"), dtype=torch.long)
        # Only the distributed test sets this: per-sample seeds so that a batch split across
        # ranks draws the same noise per sample as the whole batch in one process.
        self.sample_seeds: Optional[List[int]] = None

    # -- random draws (global RNG like the hosts, or per sample) ---------------------------------
    def _randn(self, shape, tag: int) -> Tensor:
        if self.sample_seeds is None:
            return torch.randn(shape)
        return torch.stack([torch.randn(shape[1:], generator=torch.Generator().manual_seed(s * 100 + tag)) for s in self.sample_seeds])

    def _randint(self, high: int, shape, tag: int) -> Tensor:
        if self.sample_seeds is None:
            return torch.randint(0, high, shape, dtype=torch.long)
        return torch.stack([torch.randint(0, high, shape[1:], generator=torch.Generator().manual_seed(s * 100 + tag)) for s in self.sample_seeds])

    def _process_timestep(self, timestep: Tensor, type: str) -> Tensor:
        if type == "bidirectional_video":  # one timestep for the whole clip
            return timestep[:, :1].expand_as(timestep).clone()
        if type == "causal_video":  # one timestep per block of frames
            blocks = rearrange(timestep, "b (n k) -> b n k", k=self.num_frame_per_block)
            return rearrange(blocks[:, :, :1].expand_as(blocks), "b n k -> b (n k)").clone()
        raise ValueError(f"unsupported task type {type!r}")

    def _shift(self, t: Tensor) -> Tensor:
        if self.timestep_shift > 1:
            u = t / 1000
            t = self.timestep_shift * u / (1 + (self.timestep_shift - 1) * u) * 1000
        return t.clamp(self.min_step, self.max_step)

    def _x0(self, out):
        return out[1] if isinstance(out, tuple) else out

    def _normalised_grad(self, x: Tensor, pred_real: Tensor, pred_fake: Tensor) -> Tensor:
        grad = pred_fake - pred_real
        normalizer = (x - pred_real).abs().mean(dim=[1, 2, 3, 4], keepdim=True)
        return torch.nan_to_num(grad / normalizer)

    def _dmd_from_grad(self, x: Tensor, grad: Tensor, gradient_mask) -> Tensor:
        target = (x.double() - grad.double()).detach()
        if gradient_mask is not None:
            return 0.5 * F.mse_loss(x.double()[gradient_mask], target[gradient_mask])
        return 0.5 * F.mse_loss(x.double(), target)

    def _generate(self, image_or_video_shape, conditional_dict) -> Tensor:
        b, f = image_or_video_shape[:2]
        noise = self._randn(image_or_video_shape, tag=1)
        index = self._process_timestep(self._randint(len(self.denoising_step_list), (b, f), tag=2), self.generator_task_type)
        return self._x0(self.generator(
            noisy_image_or_video=noise, conditional_dict=conditional_dict, timestep=self.denoising_step_list[index]))

    def critic_loss(self, image_or_video_shape, conditional_dict: dict, unconditional_dict: dict, clean_latent):
        with torch.no_grad():
            generated = self._generate(image_or_video_shape, conditional_dict)
        b, f = image_or_video_shape[:2]
        t = self._shift(self._process_timestep(self._randint(self.num_train_timestep, (b, f), tag=3), self.fake_task_type).float())
        noise = self._randn(image_or_video_shape, tag=4)
        noisy = self.scheduler.add_noise(generated.flatten(0, 1), noise.flatten(0, 1), t.flatten(0, 1)).unflatten(0, (b, f))
        pred = self._x0(self.fake_score(noisy_image_or_video=noisy, conditional_dict=conditional_dict, timestep=t))
        return F.mse_loss(pred, generated), {"critic_timestep": t.detach()}


class CausVidDMD(_BaseDMD):
    """CausVid's ``causvid.dmd.DMD`` interface: x0 outputs, predictions in the log dict."""

    def _compute_kl_grad(self, noisy_image_or_video, estimated_clean_image_or_video, timestep,
                         conditional_dict, unconditional_dict, normalization=True):
        kw = dict(noisy_image_or_video=noisy_image_or_video, timestep=timestep)
        pred_fake = self.fake_score(conditional_dict=conditional_dict, **kw)
        cond = self.real_score(conditional_dict=conditional_dict, **kw)
        uncond = self.real_score(conditional_dict=unconditional_dict, **kw)
        pred_real = cond + (cond - uncond) * self.real_guidance_scale
        grad = self._normalised_grad(estimated_clean_image_or_video, pred_real, pred_fake)
        return grad, {
            "dmdtrain_clean_latent": estimated_clean_image_or_video.detach(),
            "dmdtrain_noisy_latent": noisy_image_or_video.detach(),
            "dmdtrain_pred_real_image": pred_real.detach(),
            "dmdtrain_pred_fake_image": pred_fake.detach(),
            "dmdtrain_gradient_norm": grad.abs().mean().detach(),
            "timestep": timestep.detach(),
        }

    def compute_distribution_matching_loss(self, image_or_video, conditional_dict, unconditional_dict, gradient_mask=None):
        x = image_or_video
        b, f = x.shape[:2]
        with torch.no_grad():
            t = self._shift(self._process_timestep(self._randint(self.num_train_timestep, (b, f), tag=5), self.real_task_type).float())
            noisy = self.scheduler.add_noise(x.flatten(0, 1), self._randn(x.shape, tag=6).flatten(0, 1), t.flatten(0, 1)).detach().unflatten(0, (b, f))
            grad, log = self._compute_kl_grad(
                noisy_image_or_video=noisy, estimated_clean_image_or_video=x, timestep=t,
                conditional_dict=conditional_dict, unconditional_dict=unconditional_dict,
            )
        return self._dmd_from_grad(x, grad, gradient_mask), log

    def _run_generator(self, image_or_video_shape, conditional_dict, unconditional_dict, clean_latent):
        return self._generate(image_or_video_shape, conditional_dict), None

    def generator_loss(self, image_or_video_shape, conditional_dict, unconditional_dict, clean_latent):
        pred, mask = self._run_generator(image_or_video_shape=image_or_video_shape, conditional_dict=conditional_dict,
                                         unconditional_dict=unconditional_dict, clean_latent=clean_latent)
        return self.compute_distribution_matching_loss(image_or_video=pred, conditional_dict=conditional_dict,
                                                       unconditional_dict=unconditional_dict, gradient_mask=mask)


class SelfForcingDMD(_BaseDMD):
    """Self-Forcing's ``model.dmd.DMD`` interface: tuple outputs, predictions hidden, masks."""

    tuple_output = True

    def __init__(self, args, device="cpu") -> None:
        super().__init__(args, device)
        self.fake_guidance_scale = _get(args, "fake_guidance_scale", 0.0)
        # Frames the generator rolls out; the teacher sees the last image_or_video_shape[1] of
        # them (21 upstream). None: exactly those, and then there is no gradient mask.
        self.generated_frames: Optional[int] = None

    def _compute_kl_grad(self, noisy_image_or_video, estimated_clean_image_or_video, timestep,
                         conditional_dict, unconditional_dict, normalization=True):
        kw = dict(noisy_image_or_video=noisy_image_or_video, timestep=timestep)
        _, fake_cond = self.fake_score(conditional_dict=conditional_dict, **kw)
        if self.fake_guidance_scale != 0.0:
            _, fake_uncond = self.fake_score(conditional_dict=unconditional_dict, **kw)
            pred_fake = fake_cond + (fake_cond - fake_uncond) * self.fake_guidance_scale
        else:
            pred_fake = fake_cond
        _, cond = self.real_score(conditional_dict=conditional_dict, **kw)
        _, uncond = self.real_score(conditional_dict=unconditional_dict, **kw)
        pred_real = cond + (cond - uncond) * self.real_guidance_scale
        grad = self._normalised_grad(estimated_clean_image_or_video, pred_real, pred_fake)
        return grad, {"dmdtrain_gradient_norm": grad.abs().mean().detach(), "timestep": timestep.detach()}

    def compute_distribution_matching_loss(self, image_or_video, conditional_dict, unconditional_dict,
                                           gradient_mask=None, denoised_timestep_from=0, denoised_timestep_to=0):
        x = image_or_video
        b, f = x.shape[:2]
        low = denoised_timestep_to or self.min_step
        with torch.no_grad():
            # uniform_timestep=True: one draw per sample, repeated over frames
            t = low + self._randint(self.num_train_timestep - low, (b, 1), tag=5).expand(b, f)
            t = self._shift(t.float())
            noisy = self.scheduler.add_noise(x.flatten(0, 1), self._randn(x.shape, tag=6).flatten(0, 1), t.flatten(0, 1)).detach().unflatten(0, (b, f))
            grad, log = self._compute_kl_grad(
                noisy_image_or_video=noisy, estimated_clean_image_or_video=x, timestep=t,
                conditional_dict=conditional_dict, unconditional_dict=unconditional_dict,
            )
        return self._dmd_from_grad(x, grad, gradient_mask), log

    def critic_loss(self, image_or_video_shape, conditional_dict: dict, unconditional_dict: dict, clean_latent, initial_latent=None):
        return super().critic_loss(image_or_video_shape, conditional_dict, unconditional_dict, clean_latent)

    def _run_generator(self, image_or_video_shape, conditional_dict, initial_latent=None):
        window = image_or_video_shape[1]
        generated = self.generated_frames or window
        pred = self._generate([image_or_video_shape[0], generated, *image_or_video_shape[2:]], conditional_dict)[:, -window:]
        mask = None
        if generated != window:  # a longer rollout: the first block of the window is context, not trained
            mask = torch.ones_like(pred, dtype=torch.bool)
            mask[:, : self.num_frame_per_block] = False
        return pred, mask, 1000, 250

    def generator_loss(self, image_or_video_shape, conditional_dict, unconditional_dict, clean_latent, initial_latent=None):
        pred, mask, t_from, t_to = self._run_generator(image_or_video_shape=image_or_video_shape,
                                                       conditional_dict=conditional_dict, initial_latent=initial_latent)
        return self.compute_distribution_matching_loss(
            image_or_video=pred, conditional_dict=conditional_dict, unconditional_dict=unconditional_dict,
            gradient_mask=mask, denoised_timestep_from=t_from, denoised_timestep_to=t_to,
        )


def text_dicts(batch: int = SHAPE[0], seed: int = 7):
    """``(conditional_dict, unconditional_dict)`` like the hosts' text encoders return."""
    g = torch.Generator().manual_seed(seed)
    cond = {"prompt_embeds": torch.randn(batch, 4, EMBED, generator=g)}
    uncond = {"prompt_embeds": torch.zeros(batch, 4, EMBED)}
    return cond, uncond


def generator_step(dmd, *, seed: int = 9):
    """One generator step of a DMD stand-in, with the same noise whatever the seed state:
    ``(loss, logs, [the generator's gradients])``."""
    torch.manual_seed(seed)
    loss, log = dmd.generator_loss(list(SHAPE), *text_dicts(), None)
    loss.backward()
    return loss, log, [p.grad.clone() for p in dmd.generator.parameters()]


def call_counts(dmd) -> tuple:
    return dmd.generator.calls, dmd.real_score.calls, dmd.fake_score.calls


class CausVidTrainer:
    """CausVid's ``train_distillation.Trainer`` interface: ``.distillation_model``, ``.config``,
    ``train_one_step()`` logging to wandb at ``step=self.step`` on the main process, ``save()``
    writing ``{"generator", "critic"}``, ``train()`` (bounded here by ``max_steps``)."""

    def __init__(self, config) -> None:
        self.config = config
        self.is_main_process = True
        self.output_path = _get(config, "output_path")
        self.use_wandb = _get(config, "use_wandb", False)
        if self.is_main_process and self.use_wandb:
            import wandb

            os.makedirs(self.output_path, exist_ok=True)
            wandb.init(config=dict(config) if isinstance(config, dict) else None, dir=self.output_path,
                       project="msm-plugin-tests")
        torch.manual_seed(_get(config, "seed", 0))
        self.distillation_model = CausVidDMD(config)
        self.generator_optimizer = torch.optim.AdamW(self.distillation_model.generator.parameters(), lr=_get(config, "lr"))
        self.critic_optimizer = torch.optim.AdamW(self.distillation_model.fake_score.parameters(), lr=_get(config, "lr"))
        self.step = 0
        self.conditional_dict, self.unconditional_dict = text_dicts()

    def save(self) -> str:
        state = {"generator": self.distillation_model.generator.state_dict(),
                 "critic": self.distillation_model.fake_score.state_dict()}
        folder = os.path.join(self.output_path, f"checkpoint_model_{self.step:06d}")
        os.makedirs(folder, exist_ok=True)
        path = os.path.join(folder, "model.pt")
        torch.save(state, path)
        return path

    def train_one_step(self) -> None:
        train_generator = self.step % _get(self.config, "dfake_gen_update_ratio") == 0
        shape = list(_get(self.config, "image_or_video_shape"))
        logs = {}
        if train_generator:
            loss, generator_log = self.distillation_model.generator_loss(
                image_or_video_shape=shape, conditional_dict=self.conditional_dict,
                unconditional_dict=self.unconditional_dict, clean_latent=None)
            self.generator_optimizer.zero_grad()
            loss.backward()
            self.generator_optimizer.step()
            logs.update(generator_loss=loss.item(), dmdtrain_gradient_norm=generator_log["dmdtrain_gradient_norm"].item())
        critic_loss, _ = self.distillation_model.critic_loss(
            image_or_video_shape=shape, conditional_dict=self.conditional_dict,
            unconditional_dict=self.unconditional_dict, clean_latent=None)
        self.critic_optimizer.zero_grad()
        critic_loss.backward()
        self.critic_optimizer.step()
        logs["critic_loss"] = critic_loss.item()
        if self.is_main_process and self.use_wandb:
            import wandb

            wandb.log(logs, step=self.step)

    def train(self) -> None:
        while self.step < _get(self.config, "max_steps"):
            self.train_one_step()
            if not _get(self.config, "no_save") and self.step % _get(self.config, "log_iters") == 0:
                self.save()
            self.step += 1


class SelfForcingTrainer:
    """Self-Forcing's ``trainer.distillation.Trainer`` interface as far as the adapter sees it."""

    def __init__(self, config) -> None:
        self.config = config
        self.model = SelfForcingDMD(config)
        self.step = 0


class Sharded(nn.Module):
    """An outer wrapper like FSDP's: ``forward(*args, **kwargs)`` passes everything to the inner module.

    With ``output_dtype`` it also casts the floating outputs, as FSDP's ``MixedPrecision``
    (bf16 ``param_dtype``) hands bf16 predictions to the host.
    """

    def __init__(self, module: nn.Module, output_dtype: Optional[torch.dtype] = None) -> None:
        super().__init__()
        self.module = module
        self.output_dtype = output_dtype

    def forward(self, *args, **kwargs):
        out = self.module(*args, **kwargs)
        if self.output_dtype is None:
            return out
        if isinstance(out, tuple):
            return tuple(o.to(self.output_dtype) for o in out)
        return out.to(self.output_dtype)
