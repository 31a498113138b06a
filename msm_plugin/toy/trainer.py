"""``ToyTrainer``: CausVid's distillation training loop at toy size, on accelerate.

Like ``causvid.train_distillation.Trainer`` it holds ``.config`` (OmegaConf),
``.distillation_model`` (a :class:`~msm_plugin.toy.dmd.ToyDMD`), ``generator_optimizer`` /
``critic_optimizer`` (AdamW) and ``dfake_gen_update_ratio``, and ``train_one_step()`` updates
the generator every ``dfake_gen_update_ratio`` steps and the critic every step. So
``msm_plugin.wrap_trainer(trainer, lam=...)`` treats it exactly as a real host.

The real score is the teacher; the generator and the critic start as the teacher plus a
zero-initialised residual each (:class:`~msm_plugin.toy.networks.ResidualScore`), the
toy's form of DMD's "start both as copies of the teacher".
"""

from __future__ import annotations

import contextlib
import copy
import hashlib
import math

import torch
from omegaconf import OmegaConf
from torch import nn

from msm_plugin.toy.data import ToyDataConfig, make_videos, sample_labels
from msm_plugin.toy.dmd import ToyDMD
from msm_plugin.toy.networks import ResidualConfig, ResidualScore, build_residual
from msm_plugin.toy.teacher import ClassTextEncoder
from msm_plugin.toy.tracking import temporal_spectrum

__all__ = ["DEFAULT_TRAINER_CONFIG", "ToyTrainer", "make_trainer_config"]

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
    "wandb": False,
    "wandb_project": "msm-demo",
    "wandb_name": None,
}
#: The config keys that switch on extra losses, as in a patched CausVid config (``extra_losses:
#: [msm]`` plus an ``msm:`` section); they are validated by :func:`msm_plugin.config.parse_extra_losses`.
EXTRA_LOSS_KEY = "extra_losses"


def _unknown_keys(keys) -> list:
    """Keys that are neither trainer options nor extra-loss entries (``extra_losses`` and loss sections)."""
    from msm_plugin.registry import available_losses

    known = set(DEFAULT_TRAINER_CONFIG) | {EXTRA_LOSS_KEY} | set(available_losses())
    return sorted(set(keys) - known)


def make_trainer_config(**overrides):
    """The default trainer config with ``overrides`` merged in (unknown keys are an error).

    >>> make_trainer_config(batch_size=4).batch_size
    4
    """
    unknown = _unknown_keys(overrides)
    if unknown:
        raise ValueError(f"unknown trainer option(s) {unknown}; known: {sorted(DEFAULT_TRAINER_CONFIG)}")
    return OmegaConf.create({**DEFAULT_TRAINER_CONFIG, **overrides})


class ToyTrainer:
    """DMD distillation of a toy teacher, CausVid-style.

    Args:
        config: an OmegaConf config (see :data:`DEFAULT_TRAINER_CONFIG`; build with
            :func:`make_trainer_config`).
        teacher: the real score, a CausVid-style x0 score (e.g. the
            :class:`~msm_plugin.toy.teacher.ExactTeacher`), left untouched and shared.
        text_encoder: the :class:`~msm_plugin.toy.teacher.ClassTextEncoder` (frozen).
        data: the :class:`~msm_plugin.toy.data.ToyDataConfig` that fixes shapes and conditions.
        generator_net, critic_net: architectures of the generator's and the critic's residuals.

    Like a CausVid trainer with msm-plugin's patch, it installs the extra losses its config lists
    (``extra_losses: [msm]`` and an ``msm:`` section) with
    :func:`msm_plugin.adapters.apply_extra_losses` at the end of its construction.
    """

    def __init__(self, config, teacher: nn.Module, text_encoder: ClassTextEncoder, data: ToyDataConfig,
                 generator_net: ResidualConfig = ResidualConfig(),
                 critic_net: ResidualConfig = ResidualConfig(width=256, reads_base=True)):
        from accelerate import Accelerator

        from msm_plugin.adapters import apply_extra_losses
        from msm_plugin.config import build_extra_losses

        unknown = _unknown_keys(config.keys())
        if unknown:
            raise ValueError(f"unknown trainer option(s) {unknown}; known: {sorted(DEFAULT_TRAINER_CONFIG)}")
        if int(config.dfake_gen_update_ratio) < 1 or int(config.batch_size) < 1:
            raise ValueError(
                "expected dfake_gen_update_ratio >= 1 and batch_size >= 1, got "
                f"{config.dfake_gen_update_ratio} and {config.batch_size}"
            )
        build_extra_losses(config)  # a bad extra_losses section fails here, before anything is built
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

        # The residuals' hidden layers are drawn from the run's seed (their outputs start at zero).
        with self._own_rng():
            generator = ResidualScore(teacher, build_residual(data, generator_net)).to(device).train()
            fake_score = ResidualScore(teacher, build_residual(data, critic_net)).to(device).train()
        real_score = teacher
        gen_params, critic_params = list(generator.parameters()), list(fake_score.parameters())
        lr_gen, lr_critic = float(config.lr), float(config.lr_critic)
        betas = (float(config.beta1), float(config.beta2))
        # fused: one kernel per step instead of one per tensor (measured 2-3x faster on one CPU thread).
        options = dict(betas=betas, weight_decay=float(config.weight_decay), fused=True)
        self.generator_optimizer = torch.optim.AdamW(gen_params, lr=lr_gen, **options)
        self.critic_optimizer = torch.optim.AdamW(critic_params, lr=lr_critic, **options)
        self._gen_params, self._critic_params = gen_params, critic_params
        self.distillation_model = ToyDMD(config, generator, real_score, fake_score, device=device)
        self.generator_optimizer, self.critic_optimizer = self.accelerator.prepare(
            self.generator_optimizer, self.critic_optimizer
        )
        # Conditions come from their own stream so that both arms of an experiment see the same
        # prompts whatever the losses consume from the global RNG.
        self._prompt_rng = torch.Generator().manual_seed(int(config.seed) + 1)
        self._prompt_digest = hashlib.sha256()
        # Temporal spectrum of pred_fake - pred_real on each generator step (what MSM high-passes).
        self.critic_error_spectra = []
        apply_extra_losses(self)  # the config's extra_losses (none: plain DMD), as the patched CausVid trainer

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

    # ------------------------------------------------------------------------------ reporting
    def parameter_report(self) -> dict:
        """Trainable parameter counts of the generator's and the critic's residuals."""
        return {
            "trainable_generator": sum(p.numel() for p in self._gen_params),
            "trainable_critic": sum(p.numel() for p in self._critic_params),
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
            fake, real = log_dict.get("dmdtrain_pred_fake_image"), log_dict.get("dmdtrain_pred_real_image")
            if fake is not None and real is not None:
                self.critic_error_spectra.append(temporal_spectrum(fake.detach() - real.detach()))
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
