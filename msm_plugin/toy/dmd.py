"""``ToyDMD``: a compact Distribution Matching Distillation model with CausVid's interface.

Written from scratch to expose exactly the attributes, methods, signatures and log keys of
CausVid's ``causvid.dmd.DMD``, so that :func:`msm_plugin.wrap_trainer` reaches it through the
same code path as the real host. The DMD generator gradient (DMD eq. 7, normalised as eq. 8):

    grad = (x0_fake(x_t) - x0_real(x_t)) / mean_{F,C,H,W} |x - x0_real(x_t)|,
    x0_real = x0_cond + g * (x0_cond - x0_uncond),               (CFG, CausVid's convention)
    loss = 0.5 * mean((x - sg(x - grad))^2)                       (float64),

so that ``d loss / d x = grad / numel``. The critic (``fake_score``) learns the generator's
distribution by flow matching on noised generator samples.

Shapes follow the hosts: videos ``[B, F, C, H, W]``, timesteps ``[B, F]``.
"""

from __future__ import annotations

from typing import Tuple

import torch
import torch.nn.functional as F
from torch import Tensor, nn

__all__ = ["TASK_TYPES", "ToyDMD"]

TASK_TYPES = ("image", "bidirectional_video", "causal_video")


def _cfg(args, key, default):
    """Optional config keys are read like CausVid does (``getattr(args, key, default)``)."""
    value = getattr(args, key, default)
    return default if value is None else value


class ToyDMD(nn.Module):
    """DMD over three CausVid-style score wrappers.

    Args:
        args: the config (an OmegaConf object or any attribute namespace). Read keys:
            ``denoising_step_list`` (required, e.g. ``[1000]`` for a one-step generator),
            ``real_guidance_scale`` (required), ``num_train_timestep`` (1000),
            ``timestep_shift`` (1.0), ``generator_task`` / ``real_task_type`` /
            ``fake_task_type`` (``bidirectional_video``), ``num_frame_per_block`` (1),
            ``backward_simulation`` (True), ``mixed_precision`` (False).
        generator, real_score, fake_score: modules with
            ``forward(noisy_image_or_video, conditional_dict, timestep) -> x0`` and
            ``get_scheduler()`` (the generator's scheduler becomes ``self.scheduler``).
        device: where noise and timesteps are drawn.

    >>> from omegaconf import OmegaConf
    >>> from msm_plugin.toy.teacher import FlowMatchScheduler
    >>> class Shrink(nn.Module):  # a stand-in score: x0 = (1 - t/2000) * x_t
    ...     def forward(self, noisy_image_or_video, conditional_dict, timestep):
    ...         return noisy_image_or_video * (1 - timestep[..., None, None, None] / 2000)
    ...     def get_scheduler(self):
    ...         return FlowMatchScheduler()
    >>> dmd = ToyDMD(OmegaConf.create({"denoising_step_list": [1000], "real_guidance_scale": 1.0}),
    ...              Shrink(), Shrink(), Shrink())
    >>> loss, logs = dmd.generator_loss([2, 3, 1, 4, 4], {}, {}, None)
    >>> loss.dtype, sorted(logs)[:2]
    (torch.float64, ['dmdtrain_clean_latent', 'dmdtrain_gradient_norm'])
    """

    def __init__(self, args, generator: nn.Module, real_score: nn.Module, fake_score: nn.Module, device="cpu"):
        super().__init__()
        for key in ("denoising_step_list", "real_guidance_scale"):
            if getattr(args, key, None) is None:
                raise ValueError(f"the DMD config needs `{key}`, got none")
        self.generator_task_type = _cfg(args, "generator_task_type", _cfg(args, "generator_task", "bidirectional_video"))
        self.real_task_type = _cfg(args, "real_task_type", self.generator_task_type)
        self.fake_task_type = _cfg(args, "fake_task_type", self.generator_task_type)
        for name in ("generator_task_type", "real_task_type", "fake_task_type"):
            if getattr(self, name) not in TASK_TYPES:
                raise ValueError(f"`{name}` should be one of {TASK_TYPES}, got {getattr(self, name)!r}")
        self.generator = generator
        self.real_score = real_score
        self.fake_score = fake_score
        self.num_frame_per_block = int(_cfg(args, "num_frame_per_block", 1))

        self.num_train_timestep = int(_cfg(args, "num_train_timestep", 1000))
        steps = [int(t) for t in args.denoising_step_list]
        if not steps or any(not 0 <= t <= self.num_train_timestep for t in steps):
            raise ValueError(
                f"`denoising_step_list` should be a non-empty list in [0, {self.num_train_timestep}], got {steps}"
            )
        self.denoising_step_list = torch.tensor(steps, dtype=torch.long, device=device)
        # Keep the score timesteps away from the ends, where x0 predictions are ill-conditioned.
        self.min_step, self.max_step = (int(frac * self.num_train_timestep) for frac in (0.02, 0.98))
        self.real_guidance_scale = float(args.real_guidance_scale)
        self.timestep_shift = float(_cfg(args, "timestep_shift", 1.0))
        self.args = args
        self.device = torch.device(device)
        self.dtype = torch.bfloat16 if _cfg(args, "mixed_precision", False) is True else torch.float32
        self.scheduler = generator.get_scheduler()

    # ----------------------------------------------------------------------------------- timesteps
    def _process_timestep(self, timestep: Tensor, type: str) -> Tensor:
        """Make ``timestep`` [B, F] equal over all frames (bidirectional) or within blocks (causal)."""
        if type == "image":
            if timestep.shape[1] != 1:
                raise ValueError(f"an image task expects one frame, got timestep shape {tuple(timestep.shape)}")
            return timestep
        if type == "bidirectional_video":
            return timestep[:, :1].expand_as(timestep).clone()
        if type == "causal_video":
            b, f = timestep.shape
            if f % self.num_frame_per_block:
                raise ValueError(f"{f} frames do not split into blocks of {self.num_frame_per_block}")
            blocks = timestep.reshape(b, f // self.num_frame_per_block, self.num_frame_per_block)
            return blocks[:, :, :1].expand_as(blocks).reshape(b, f).clone()
        raise ValueError(f"task type should be one of {TASK_TYPES}, got {type!r}")

    def _shift_and_clamp(self, timestep: torch.Tensor) -> torch.Tensor:
        """Timestep shift ``s t / (1 + (s - 1) t)`` on ``t / T`` (s > 1 favours high noise), then clamp."""
        if self.timestep_shift > 1:
            u = timestep / self.num_train_timestep
            timestep = self.timestep_shift * u / (1 + (self.timestep_shift - 1) * u) * self.num_train_timestep
        return timestep.clamp(self.min_step, self.max_step)

    def _noise(self, x: torch.Tensor, timestep: torch.Tensor):
        """``(noise, x_t)`` with the scheduler applied to flattened frames, as in CausVid."""
        noise = torch.randn_like(x)
        noisy = self.scheduler.add_noise(x.flatten(0, 1), noise.flatten(0, 1), timestep.flatten(0, 1))
        return noise, noisy.unflatten(0, x.shape[:2])

    # -------------------------------------------------------------------------------- generator
    def _compute_kl_grad(
        self,
        noisy_image_or_video: torch.Tensor,
        estimated_clean_image_or_video: Tensor,
        timestep: torch.Tensor,
        conditional_dict: dict,
        unconditional_dict: dict,
        normalization: bool = True,
    ) -> Tuple[torch.Tensor, dict]:
        """DMD gradient ``(pred_fake - pred_real) / normaliser`` and CausVid's log dict.

        Returns ``(grad [B, F, C, H, W], log_dict)`` with keys ``dmdtrain_clean_latent``,
        ``dmdtrain_noisy_latent``, ``dmdtrain_pred_real_image``, ``dmdtrain_pred_fake_image``,
        ``dmdtrain_gradient_norm`` (mean ``|grad|``) and ``timestep``, all detached.
        """
        pred_fake = self.fake_score(
            noisy_image_or_video=noisy_image_or_video, conditional_dict=conditional_dict, timestep=timestep
        )
        real_cond = self.real_score(
            noisy_image_or_video=noisy_image_or_video, conditional_dict=conditional_dict, timestep=timestep
        )
        if self.real_guidance_scale == 0:
            pred_real = real_cond  # what CFG gives at scale 0, without the unconditional call
        else:
            real_uncond = self.real_score(
                noisy_image_or_video=noisy_image_or_video, conditional_dict=unconditional_dict, timestep=timestep
            )
            pred_real = real_cond + self.real_guidance_scale * (real_cond - real_uncond)
        grad = pred_fake - pred_real
        if normalization:
            normalizer = (estimated_clean_image_or_video - pred_real).abs().mean(dim=(1, 2, 3, 4), keepdim=True)
            grad = grad / normalizer
        grad = torch.nan_to_num(grad)
        logs = dict(
            dmdtrain_clean_latent=estimated_clean_image_or_video,
            dmdtrain_noisy_latent=noisy_image_or_video,
            dmdtrain_pred_real_image=pred_real,
            dmdtrain_pred_fake_image=pred_fake,
            dmdtrain_gradient_norm=grad.abs().mean(),
            timestep=timestep,
        )
        return grad, {key: value.detach() for key, value in logs.items()}

    def compute_distribution_matching_loss(
        self, image_or_video: torch.Tensor, conditional_dict: dict, unconditional_dict: dict, gradient_mask=None
    ) -> Tuple[torch.Tensor, dict]:
        """The DMD loss on generator samples ``image_or_video`` [B, F, C, H, W] -> ``(loss, log_dict)``."""
        with torch.no_grad():
            timestep = torch.randint(
                0, self.num_train_timestep, tuple(image_or_video.shape[:2]), device=self.device, dtype=torch.long
            )
            timestep = self._shift_and_clamp(self._process_timestep(timestep, self.real_task_type))
            _, noisy = self._noise(image_or_video, timestep)
            grad, log_dict = self._compute_kl_grad(
                noisy_image_or_video=noisy,
                estimated_clean_image_or_video=image_or_video,
                timestep=timestep,
                conditional_dict=conditional_dict,
                unconditional_dict=unconditional_dict,
            )
        x = image_or_video.double()
        target = (x - grad.double()).detach()
        if gradient_mask is not None:
            x, target = x[gradient_mask], target[gradient_mask]
        return 0.5 * F.mse_loss(x, target, reduction="mean"), log_dict

    @torch.no_grad()
    def _consistency_backward_simulation(self, noise: Tensor, conditional_dict: dict) -> Tensor:
        """Generator inputs at every step of ``denoising_step_list``, as the sampler would see them.

        Runs the few-step generator from ``noise`` (DMD2 sec. 4.5, consistency sampling): the
        input at step i+1 is the x0 prediction at step i re-noised to ``t_{i+1}``.
        Returns ``[B, T, F, C, H, W]`` with ``T = len(denoising_step_list)``.
        """
        inputs, x = [], noise
        steps = self.denoising_step_list.tolist()
        for i, t in enumerate(steps):
            inputs.append(x)
            if i + 1 < len(steps):
                t_batch = torch.full(noise.shape[:2], t, device=noise.device, dtype=torch.long)
                x0 = self.generator(noisy_image_or_video=x, conditional_dict=conditional_dict, timestep=t_batch)
                t_next = torch.full(noise.shape[:2], steps[i + 1], device=noise.device, dtype=torch.long)
                x = self._noise(x0, t_next)[1]
        return torch.stack(inputs, dim=1)

    def _run_generator(
        self, image_or_video_shape, conditional_dict: dict, unconditional_dict: dict, clean_latent: torch.Tensor
    ):
        """One generator step on a simulated input at a random step of the list -> ``(x0, gradient_mask)``."""
        shape = list(image_or_video_shape)
        if _cfg(self.args, "backward_simulation", True):
            noise = torch.randn(shape, device=self.device, dtype=torch.float32)
            simulated = self._consistency_backward_simulation(noise, conditional_dict)
        else:
            if clean_latent is None or list(clean_latent.shape) != shape:
                got = None if clean_latent is None else tuple(clean_latent.shape)
                raise ValueError(f"without backward simulation a clean_latent of shape {tuple(shape)} is needed, got {got}")
            simulated = []
            for t in self.denoising_step_list.tolist():
                t_batch = torch.full(shape[:2], t, device=self.device, dtype=torch.long)
                simulated.append(self._noise(clean_latent, t_batch)[1] if t != 0 else clean_latent)
            simulated = torch.stack(simulated, dim=1)
        index = torch.randint(0, len(self.denoising_step_list), shape[:2], device=self.device, dtype=torch.long)
        index = self._process_timestep(index, self.generator_task_type)
        pick = index[:, None, :, None, None, None].expand(-1, 1, -1, *shape[2:])
        noisy_input = simulated.gather(1, pick).squeeze(1)
        step_t = self.denoising_step_list[index]
        pred = self.generator(noisy_image_or_video=noisy_input, conditional_dict=conditional_dict, timestep=step_t)
        return pred.type_as(noisy_input), None

    def generator_loss(
        self, image_or_video_shape, conditional_dict: dict, unconditional_dict: dict, clean_latent: torch.Tensor
    ) -> Tuple[torch.Tensor, dict]:
        """Run the generator and return its DMD loss ``(loss, log_dict)``."""
        pred, gradient_mask = self._run_generator(image_or_video_shape, conditional_dict, unconditional_dict, clean_latent)
        # Looked up on the instance so that an instance patch (msm_plugin.wrap_trainer) takes effect.
        return self.compute_distribution_matching_loss(
            image_or_video=pred,
            conditional_dict=conditional_dict,
            unconditional_dict=unconditional_dict,
            gradient_mask=gradient_mask,
        )

    # ----------------------------------------------------------------------------------- critic
    def critic_loss(
        self, image_or_video_shape, conditional_dict: dict, unconditional_dict: dict, clean_latent: torch.Tensor
    ) -> Tuple[torch.Tensor, dict]:
        """Flow-matching loss of ``fake_score`` on noised generator samples -> ``(loss, log_dict)``.

        ``loss = mean((v_fake - (eps - x))^2)`` with ``v_fake = (x_t - x0_fake) / sigma``.
        """
        with torch.no_grad():
            generated, _ = self._run_generator(image_or_video_shape, conditional_dict, unconditional_dict, clean_latent)
        timestep = torch.randint(
            0, self.num_train_timestep, tuple(image_or_video_shape[:2]), device=self.device, dtype=torch.long
        )
        timestep = self._shift_and_clamp(self._process_timestep(timestep, self.fake_task_type))
        noise, noisy = self._noise(generated, timestep)
        pred_fake = self.fake_score(noisy_image_or_video=noisy, conditional_dict=conditional_dict, timestep=timestep)
        flow_pred = self.scheduler.flow_from_x0(noisy, pred_fake, timestep)
        loss = F.mse_loss(flow_pred.float(), (noise - generated).float())
        return loss, {
            "critictrain_latent": generated.detach(),
            "critictrain_noisy_latent": noisy.detach(),
            "critictrain_pred_image": pred_fake.detach(),
            "critic_timestep": timestep.detach(),
        }

    # -------------------------------------------------------------------------------- inference
    @torch.no_grad()
    def generate(self, noise: torch.Tensor, conditional_dict: dict) -> torch.Tensor:
        """Few-step sampling with the generator: the last input of the backward simulation, denoised.

        Returns ``[B, F, C, H, W]``; with a one-step list this is ``generator(noise, t=1000)``.
        """
        last = self._consistency_backward_simulation(noise, conditional_dict)[:, -1]
        t = torch.full(noise.shape[:2], int(self.denoising_step_list[-1]), device=noise.device, dtype=torch.long)
        return self.generator(noisy_image_or_video=last, conditional_dict=conditional_dict, timestep=t)
