"""``ToyTrainer``: CausVid's distillation training loop at toy size, with accelerate and optional LoRA.

Like ``causvid.train_distillation.Trainer`` it holds ``.config`` (OmegaConf),
``.distillation_model`` (a :class:`~msm_plugin.toy.dmd.ToyDMD`), ``generator_optimizer`` /
``critic_optimizer`` (AdamW) and ``dfake_gen_update_ratio``, and ``train_one_step()`` updates
the generator every ``dfake_gen_update_ratio`` steps and the critic every step. So
``msm_plugin.wrap_trainer(trainer, lam=...)`` treats it exactly as a real host.

Full mode copies the teacher into the generator and the critic (three networks). LoRA mode
(``lora: true``) keeps ONE frozen copy of the teacher's transformer with two peft adapters,
``generator`` and ``critic``; the real score is that copy with adapters disabled.
"""

from __future__ import annotations

import contextlib
import copy
import hashlib
import math
import warnings
from typing import Optional

import torch
from omegaconf import OmegaConf
from torch import nn

from msm_plugin.toy.data import ToyDataConfig, make_videos, sample_labels
from msm_plugin.toy.dmd import ToyDMD
from msm_plugin.toy.teacher import ClassTextEncoder, ToyDiffusionWrapper

__all__ = ["DEFAULT_TRAINER_CONFIG", "LORA_TARGETS", "ToyTrainer", "make_trainer_config"]

DEFAULT_TRAINER_CONFIG = {
    "seed": 0,
    "batch_size": 16,
    "lr": 1e-4,
    "lr_critic": 1e-4,
    "beta1": 0.9,
    "beta2": 0.999,
    "weight_decay": 0.0,
    "max_grad_norm": 10.0,
    "dfake_gen_update_ratio": 5,
    "denoising_step_list": [1000],
    "num_train_timestep": 1000,
    "real_guidance_scale": 1.0,
    "timestep_shift": 1.0,
    "generator_task": "bidirectional_video",
    "real_task_type": "bidirectional_video",
    "fake_task_type": "bidirectional_video",
    "backward_simulation": True,
    "mixed_precision": "no",
    "lora": False,
    "lora_rank": 8,
    "lora_lr": 1e-3,
    "wandb": False,
    "wandb_project": "msm-demo",
    "wandb_name": None,
}
# The attention and feed-forward projections of every Wan block.
LORA_TARGETS = ["to_q", "to_k", "to_v", "to_out.0", "ffn.net.0.proj", "ffn.net.2"]


def make_trainer_config(**overrides):
    """The default trainer config with ``overrides`` merged in (unknown keys are an error).

    >>> make_trainer_config(batch_size=4).batch_size
    4
    """
    unknown = sorted(set(overrides) - set(DEFAULT_TRAINER_CONFIG))
    if unknown:
        raise ValueError(f"unknown trainer option(s) {unknown}; known: {sorted(DEFAULT_TRAINER_CONFIG)}")
    return OmegaConf.create({**DEFAULT_TRAINER_CONFIG, **overrides})


class _AdapterScore(nn.Module):
    """A view of a shared LoRA'd score wrapper with one adapter active (``None``: the frozen base)."""

    def __init__(self, shared: ToyDiffusionWrapper, adapter: Optional[str]):
        super().__init__()
        # A list keeps the shared module out of this module's children, so that the three
        # views do not each register (and state_dict) the same weights.
        self._shared = [shared]
        self.adapter = adapter

    def get_scheduler(self):
        return self._shared[0].get_scheduler()

    def forward(self, noisy_image_or_video, conditional_dict, timestep):
        shared = self._shared[0]
        _activate_adapter(shared, self.adapter)
        return shared(noisy_image_or_video=noisy_image_or_video, conditional_dict=conditional_dict, timestep=timestep)


def _activate_adapter(model: nn.Module, adapter: Optional[str]) -> None:
    """Route every LoRA layer of ``model`` through ``adapter`` (or none).

    peft's switches also flip ``requires_grad`` of the inactive adapters; both adapters must
    stay trainable (each optimiser only sees its own), so their flags are restored here.
    """
    from peft.tuners.tuners_utils import BaseTunerLayer

    for module in model.modules():
        if isinstance(module, BaseTunerLayer):
            if adapter is None:
                module.enable_adapters(False)
            else:
                module.enable_adapters(True)
                module.set_adapter(adapter)
    for name, param in model.named_parameters():
        if "lora_" in name:
            param.requires_grad_(True)


def _param_bytes(params) -> int:
    return sum(p.numel() * p.element_size() for p in params)


class ToyTrainer:
    """DMD distillation of a toy teacher, CausVid-style.

    Args:
        config: an OmegaConf config (see :data:`DEFAULT_TRAINER_CONFIG`; build with
            :func:`make_trainer_config`).
        teacher: the trained :class:`~msm_plugin.toy.teacher.ToyDiffusionWrapper` (left untouched).
        text_encoder: the teacher's :class:`~msm_plugin.toy.teacher.ClassTextEncoder` (frozen).
        data: the :class:`~msm_plugin.toy.data.ToyDataConfig` that fixes shapes and conditions.
    """

    def __init__(self, config, teacher: ToyDiffusionWrapper, text_encoder: ClassTextEncoder, data: ToyDataConfig):
        from accelerate import Accelerator

        unknown = sorted(set(config.keys()) - set(DEFAULT_TRAINER_CONFIG))
        if unknown:
            raise ValueError(f"unknown trainer option(s) {unknown}; known: {sorted(DEFAULT_TRAINER_CONFIG)}")
        if int(config.dfake_gen_update_ratio) < 1 or int(config.batch_size) < 1:
            raise ValueError(
                "expected dfake_gen_update_ratio >= 1 and batch_size >= 1, got "
                f"{config.dfake_gen_update_ratio} and {config.batch_size}"
            )
        self.config = config
        self.data = data
        self.step = 0
        self.dfake_gen_update_ratio = int(config.dfake_gen_update_ratio)
        self.accelerator = Accelerator(
            cpu=not torch.cuda.is_available(),
            mixed_precision=config.mixed_precision,
            log_with="wandb" if config.wandb else None,
        )
        if config.wandb:
            self.accelerator.init_trackers(
                config.wandb_project,
                config=OmegaConf.to_container(config),
                init_kwargs={"wandb": {"name": config.wandb_name}},
            )
        device = self.accelerator.device
        # Each trainer owns its RNG stream (saved and restored around every step), so runs are
        # reproducible even when several trainers are interleaved in one process.
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(int(config.seed))
            self._rng_state = torch.get_rng_state()
        self.text_encoder = copy.deepcopy(text_encoder).to(device).requires_grad_(False)

        if config.lora:
            generator, real_score, fake_score = self._lora_scores(teacher, device)
            gen_params = [p for n, p in self.shared_score.named_parameters() if ".generator." in n]
            critic_params = [p for n, p in self.shared_score.named_parameters() if ".critic." in n]
            lr_gen = lr_critic = float(config.lora_lr)
        else:
            real_score = copy.deepcopy(teacher).to(device).requires_grad_(False)
            generator = copy.deepcopy(teacher).to(device).requires_grad_(True).train()
            fake_score = copy.deepcopy(teacher).to(device).requires_grad_(True).train()
            gen_params, critic_params = list(generator.parameters()), list(fake_score.parameters())
            lr_gen, lr_critic = float(config.lr), float(config.lr_critic)
        betas = (float(config.beta1), float(config.beta2))
        self.generator_optimizer = torch.optim.AdamW(gen_params, lr=lr_gen, betas=betas, weight_decay=config.weight_decay)
        self.critic_optimizer = torch.optim.AdamW(critic_params, lr=lr_critic, betas=betas, weight_decay=config.weight_decay)
        self._gen_params, self._critic_params = gen_params, critic_params
        self.distillation_model = ToyDMD(config, generator, real_score, fake_score, device=device)
        self.generator_optimizer, self.critic_optimizer = self.accelerator.prepare(
            self.generator_optimizer, self.critic_optimizer
        )
        # Conditions come from their own stream so that both arms of an experiment see the same
        # prompts whatever the losses consume from the global RNG.
        self._prompt_rng = torch.Generator().manual_seed(int(config.seed) + 1)
        self._prompt_digest = hashlib.sha256()

    @contextlib.contextmanager
    def _own_rng(self):
        with torch.random.fork_rng(devices=[]):
            torch.set_rng_state(self._rng_state)
            try:
                yield
            finally:
                self._rng_state = torch.get_rng_state()

    @property
    def prompt_digest(self) -> str:
        """Hash of every prompt label drawn so far: equal digests = the same prompts in the same order."""
        return self._prompt_digest.hexdigest()[:16]

    def _lora_scores(self, teacher: ToyDiffusionWrapper, device):
        from peft import LoraConfig, inject_adapter_in_model

        shared = copy.deepcopy(teacher).to(device).requires_grad_(False)
        for name in ("generator", "critic"):
            lora = LoraConfig(r=int(self.config.lora_rank), lora_alpha=int(self.config.lora_rank), target_modules=LORA_TARGETS)
            with warnings.catch_warnings():
                # peft warns on the second adapter of a model; two adapters are the point here.
                warnings.filterwarnings("ignore", message="Already found a `peft_config`")
                inject_adapter_in_model(lora, shared.model, adapter_name=name)
        _activate_adapter(shared, None)
        self.shared_score = shared
        return _AdapterScore(shared, "generator"), _AdapterScore(shared, None), _AdapterScore(shared, "critic")

    # ------------------------------------------------------------------------------ reporting
    def parameter_report(self) -> dict:
        """Trainable parameter counts and the bytes held by weights, grads and AdamW states.

        Full mode stores three networks and trains two; LoRA mode stores one network plus two
        adapters. Bytes count fp32 weights + (for trainable tensors) a gradient and AdamW's two
        moment buffers, the dominant terms of training memory at this size.
        """
        dmd = self.distillation_model
        trainable = self._gen_params + self._critic_params
        if self.config.lora:
            stored = list(self.shared_score.parameters())
        else:
            stored = [p for m in (dmd.generator, dmd.real_score, dmd.fake_score) for p in m.parameters()]
        weights = _param_bytes(stored)
        training = 3 * _param_bytes(trainable)
        return {
            "mode": "lora" if self.config.lora else "full",
            "trainable_generator": sum(p.numel() for p in self._gen_params),
            "trainable_critic": sum(p.numel() for p in self._critic_params),
            "stored_parameters": sum(p.numel() for p in stored),
            "weights_bytes": weights,
            "grads_and_adam_bytes": training,
            "total_bytes": weights + training,
        }

    # ------------------------------------------------------------------------------- training
    def sample_conditions(self, batch_size: int):
        """``(labels [B], conditional_dict, unconditional_dict)`` for a batch of random prompts."""
        labels = sample_labels(batch_size, self.data, self._prompt_rng)
        self._prompt_digest.update(labels.numpy().tobytes())
        labels = labels.to(self.accelerator.device)
        return labels, self.text_encoder(labels), self.text_encoder.null(batch_size)

    def train_one_step(self) -> dict:
        """One critic update, plus a generator update every ``dfake_gen_update_ratio`` steps (see :meth:`_step`)."""
        with self._own_rng():
            return self._step()

    def _step(self) -> dict:
        """The step itself, on this trainer's RNG stream.

        Returns float logs: ``critic_loss``, ``critic_grad_norm`` and, on generator steps,
        ``generator_loss``, ``generator_grad_norm``, ``dmdtrain_gradient_norm`` plus any scalar
        the (possibly wrapped) loss adds to its log dict.
        """
        dmd = self.distillation_model
        b = int(self.config.batch_size)
        shape = [b, *self.data.video_shape]
        labels, cond, uncond = self.sample_conditions(b)
        clean = None
        if not self.config.backward_simulation:
            clean = make_videos(labels.cpu(), self.data, self._prompt_rng).to(self.accelerator.device)
        logs = {}
        if self.step % self.dfake_gen_update_ratio == 0:
            with self.accelerator.autocast():
                loss, log_dict = dmd.generator_loss(shape, cond, uncond, clean)
            self.generator_optimizer.zero_grad()
            self.accelerator.backward(loss)
            grad_norm = self.accelerator.clip_grad_norm_(self._gen_params, float(self.config.max_grad_norm))
            self.generator_optimizer.step()
            logs["generator_loss"] = float(loss.detach())
            logs["generator_grad_norm"] = float(grad_norm)
            for key, value in log_dict.items():
                if isinstance(value, torch.Tensor) and value.numel() == 1:
                    logs[key] = float(value)
                elif isinstance(value, (int, float)):
                    logs[key] = float(value)
        with self.accelerator.autocast():
            critic_loss, _ = dmd.critic_loss(shape, cond, uncond, clean)
        self.critic_optimizer.zero_grad()
        self.accelerator.backward(critic_loss)
        critic_norm = self.accelerator.clip_grad_norm_(self._critic_params, float(self.config.max_grad_norm))
        self.critic_optimizer.step()
        logs["critic_loss"] = float(critic_loss.detach())
        logs["critic_grad_norm"] = float(critic_norm)
        if self.config.wandb:
            self.accelerator.log(logs, step=self.step)
        self.step += 1
        if not all(math.isfinite(v) for v in logs.values()):
            raise FloatingPointError(f"non-finite training logs at step {self.step}: {logs}")
        return logs

    @torch.no_grad()
    def generate(self, labels: torch.Tensor, noise: torch.Tensor) -> torch.Tensor:
        """Generator samples ``[B, F, C, H, W]`` for class ``labels`` [B] from ``noise``."""
        device = self.accelerator.device
        with self._own_rng():
            return self.distillation_model.generate(noise.to(device), self.text_encoder(labels.to(device))).float().cpu()

    def finish(self) -> None:
        """Close trackers (wandb) if any were started."""
        if self.config.wandb:
            self.accelerator.end_training()
