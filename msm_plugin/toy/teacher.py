"""The toy teacher: a tiny ``WanTransformer3DModel`` trained by flow matching, its sampler and cache.

Flow matching (rectified flow, as Wan): with ``sigma = t / 1000`` in ``[0, 1]``,

    x_t = (1 - sigma) * x_0 + sigma * eps,        v* = eps - x_0,

the network predicts the velocity ``v`` and the clean estimate is ``x_0 = x_t - sigma * v``.
Training draws ``sigma`` from a logit-normal law and minimises ``|v - v*|^2``; the condition is a
learned class embedding passed as ``encoder_hidden_states`` (one "text" token), replaced by a
null class with probability ``null_prob`` so that classifier-free guidance works. Sampling
integrates the ODE with Euler steps from ``sigma = 1`` to ``0`` using guided velocities
``v = v_c + g * (v_c - v_u)`` (CausVid's convention for ``real_guidance_scale``).

A trained teacher is cached on disk under a hash of its full configuration, so later runs reuse
it; :func:`default_cache_dir` is ``$MSM_DEMO_CACHE`` or ``~/.cache/msm-plugin/toy``.
"""

from __future__ import annotations

import copy
import hashlib
import json
import os
import time
from dataclasses import asdict, dataclass
from pathlib import Path

import torch
import torch.nn as nn
import torch.nn.functional as F
from einops import rearrange

from msm_plugin.toy.data import ToyDataConfig, make_videos, sample_labels

__all__ = [
    "CACHE_ENV",
    "ClassTextEncoder",
    "FlowMatchScheduler",
    "TeacherConfig",
    "ToyDiffusionWrapper",
    "build_score_model",
    "cache_key",
    "default_cache_dir",
    "load_or_train_teacher",
    "sample_with_cfg",
    "train_teacher",
]

CACHE_ENV = "MSM_DEMO_CACHE"
# Bumped whenever training code changes in a way that makes old cached weights stale.
_CACHE_VERSION = 1


class FlowMatchScheduler:
    """Rectified-flow noise schedule on integer-like timesteps ``t`` in ``[0, num_train_timestep]``.

    ``add_noise`` works on flattened frames, as CausVid's scheduler: ``x`` and ``noise`` are
    ``[N, C, H, W]`` and ``timestep`` is ``[N]``.

    >>> s = FlowMatchScheduler()
    >>> s.add_noise(torch.ones(1, 1, 1, 1), torch.zeros(1, 1, 1, 1), torch.tensor([250.0])).item()
    0.75
    """

    def __init__(self, num_train_timestep: int = 1000):
        if not isinstance(num_train_timestep, int) or num_train_timestep < 1:
            raise ValueError(f"`num_train_timestep` should be a positive int, got {num_train_timestep!r}")
        self.num_train_timestep = num_train_timestep

    def sigma(self, timestep: torch.Tensor, ndim: int) -> torch.Tensor:
        """``t / T`` reshaped to broadcast against a tensor with ``ndim`` dimensions."""
        sigma = timestep.to(torch.float32) / self.num_train_timestep
        return sigma.reshape(*sigma.shape, *([1] * (ndim - sigma.ndim)))

    def add_noise(self, x: torch.Tensor, noise: torch.Tensor, timestep: torch.Tensor) -> torch.Tensor:
        """``(1 - sigma) x + sigma noise``."""
        if x.shape != noise.shape or timestep.shape != x.shape[: timestep.ndim]:
            raise ValueError(
                f"expected x and noise of one shape and timestep matching their leading axes, got "
                f"x {tuple(x.shape)}, noise {tuple(noise.shape)}, timestep {tuple(timestep.shape)}"
            )
        sigma = self.sigma(timestep, x.ndim).to(x.dtype)
        return (1 - sigma) * x + sigma * noise

    def x0_from_flow(self, xt: torch.Tensor, flow: torch.Tensor, timestep: torch.Tensor) -> torch.Tensor:
        """``x_0 = x_t - sigma * v``."""
        return xt - self.sigma(timestep, xt.ndim).to(xt.dtype) * flow

    def flow_from_x0(self, xt: torch.Tensor, x0: torch.Tensor, timestep: torch.Tensor) -> torch.Tensor:
        """``v = (x_t - x_0) / sigma`` (``sigma > 0`` required)."""
        return (xt - x0) / self.sigma(timestep, xt.ndim).to(xt.dtype)


@dataclass(frozen=True)
class TeacherConfig:
    """Architecture, training and sampling settings of the teacher.

    The architecture follows TOY-NOTES: patch ``(1, 4, 4)``, 4 heads x 16, 3 layers, ffn 128,
    ``text_dim`` 16 (about 0.2 M parameters); patch ``(1, 2, 2)`` is ~5x slower on CPU.

    Args:
        num_layers, num_heads, head_dim, ffn_dim, text_dim, freq_dim, patch_size: the
            ``WanTransformer3DModel`` config.
        train_steps: optimiser steps of flow-matching training.
        batch_size: videos per step.
        lr: AdamW learning rate (cosine-decayed to 10% over training).
        null_prob: probability of replacing the class by the null class (for CFG).
        ema_decay: decay of the exponential moving average whose weights become the teacher.
        seed: seed of data and initialisation.
        sample_steps: Euler steps of the teacher's sampler.
        guidance_scale: CFG scale ``g`` in ``v_c + g (v_c - v_u)`` for the teacher's samples.

    >>> TeacherConfig(train_steps=10).train_steps
    10
    """

    num_layers: int = 3
    num_heads: int = 4
    head_dim: int = 16
    ffn_dim: int = 128
    text_dim: int = 16
    freq_dim: int = 64
    patch_size: tuple = (1, 4, 4)
    train_steps: int = 1200
    batch_size: int = 32
    lr: float = 1e-3
    null_prob: float = 0.1
    ema_decay: float = 0.995
    seed: int = 0
    sample_steps: int = 20
    guidance_scale: float = 1.0

    def __post_init__(self):
        for name in ("num_layers", "num_heads", "head_dim", "ffn_dim", "text_dim", "freq_dim", "train_steps",
                     "batch_size", "seed", "sample_steps"):
            value = getattr(self, name)
            if not isinstance(value, int) or isinstance(value, bool):
                raise TypeError(f"`{name}` should be an int, got {type(value).__name__}")
            if value < (0 if name == "seed" else 1):
                raise ValueError(f"`{name}` should be positive, got {value}")
        if not 0 < self.lr or not 0 <= self.null_prob < 1 or not 0 <= self.ema_decay < 1 or self.guidance_scale < 0:
            raise ValueError(
                "expected lr > 0, 0 <= null_prob < 1, 0 <= ema_decay < 1 and guidance_scale >= 0, got "
                f"lr={self.lr}, null_prob={self.null_prob}, ema_decay={self.ema_decay}, "
                f"guidance_scale={self.guidance_scale}"
            )
        object.__setattr__(self, "patch_size", tuple(int(p) for p in self.patch_size))
        if len(self.patch_size) != 3:
            raise ValueError(f"`patch_size` should have 3 entries (t, h, w), got {self.patch_size}")

    def to_dict(self) -> dict:
        """Plain-JSON form."""
        return {k: list(v) if isinstance(v, tuple) else v for k, v in asdict(self).items()}


class ClassTextEncoder(nn.Module):
    """The toy "text encoder": one learned ``text_dim`` token per class, plus a null class.

    Returns CausVid-style condition dicts ``{"prompt_embeds": [B, 1, text_dim]}``.

    >>> enc = ClassTextEncoder(num_classes=4, text_dim=8)
    >>> enc(torch.tensor([0, 3]))["prompt_embeds"].shape
    torch.Size([2, 1, 8])
    >>> enc.null(2)["prompt_embeds"].shape
    torch.Size([2, 1, 8])
    """

    def __init__(self, num_classes: int, text_dim: int):
        super().__init__()
        self.num_classes = num_classes
        self.embedding = nn.Embedding(num_classes + 1, text_dim)

    def forward(self, labels: torch.Tensor) -> dict:
        if labels.ndim != 1 or int(labels.min()) < 0 or int(labels.max()) > self.num_classes:
            raise ValueError(
                f"expected class labels [B] in [0, {self.num_classes}] (the last is null), got shape "
                f"{tuple(labels.shape)} with range [{int(labels.min())}, {int(labels.max())}]"
            )
        return {"prompt_embeds": self.embedding(labels)[:, None, :]}

    def null(self, batch_size: int) -> dict:
        """The unconditional dict (null class) for ``batch_size`` samples."""
        labels = torch.full((batch_size,), self.num_classes, dtype=torch.long, device=self.embedding.weight.device)
        return self.forward(labels)


def build_score_model(data: ToyDataConfig, config: TeacherConfig):
    """A freshly initialised tiny ``WanTransformer3DModel`` for ``data``'s videos.

    >>> m = build_score_model(ToyDataConfig(), TeacherConfig())
    >>> 0.1e6 < sum(p.numel() for p in m.parameters()) < 0.5e6
    True
    """
    from diffusers import WanTransformer3DModel

    if data.size % config.patch_size[1] or data.num_frames % config.patch_size[0]:
        raise ValueError(
            f"video (F={data.num_frames}, H=W={data.size}) is not divisible by patch_size {config.patch_size}"
        )
    return WanTransformer3DModel(
        patch_size=config.patch_size,
        num_attention_heads=config.num_heads,
        attention_head_dim=config.head_dim,
        in_channels=data.channels,
        out_channels=data.channels,
        text_dim=config.text_dim,
        freq_dim=config.freq_dim,
        ffn_dim=config.ffn_dim,
        num_layers=config.num_layers,
        rope_max_seq_len=64,
    )


class ToyDiffusionWrapper(nn.Module):
    """CausVid-style diffusion wrapper: ``forward(noisy_image_or_video, conditional_dict, timestep) -> x_0``.

    Args:
        model: a ``WanTransformer3DModel`` predicting the flow velocity on ``[B, C, F, H, W]``.
        scheduler: the :class:`FlowMatchScheduler`.

    Shapes: ``noisy_image_or_video`` ``[B, F, C, H, W]``; ``timestep`` ``[B, F]`` with one value
    per sample (bidirectional video, as the paper's MSM requires); output ``[B, F, C, H, W]``.
    """

    def __init__(self, model: nn.Module, scheduler: FlowMatchScheduler):
        super().__init__()
        self.model = model
        self.scheduler = scheduler

    def get_scheduler(self) -> FlowMatchScheduler:
        return self.scheduler

    def flow(self, noisy_image_or_video: torch.Tensor, conditional_dict: dict, timestep: torch.Tensor) -> torch.Tensor:
        """The predicted velocity ``v``, ``[B, F, C, H, W]``."""
        if noisy_image_or_video.ndim != 5 or timestep.shape != noisy_image_or_video.shape[:2]:
            raise ValueError(
                "expected noisy_image_or_video [B, F, C, H, W] and timestep [B, F], got "
                f"{tuple(noisy_image_or_video.shape)} and {tuple(timestep.shape)}"
            )
        if not bool((timestep == timestep[:, :1]).all()):
            raise ValueError("the bidirectional toy model needs one timestep per sample (equal over frames)")
        hidden = rearrange(noisy_image_or_video, "b f c h w -> b c f h w")
        out = self.model(
            hidden_states=hidden,
            timestep=timestep[:, 0].to(hidden.dtype),
            encoder_hidden_states=conditional_dict["prompt_embeds"].to(hidden.dtype),
            return_dict=False,
        )[0]
        return rearrange(out, "b c f h w -> b f c h w")

    def forward(self, noisy_image_or_video: torch.Tensor, conditional_dict: dict, timestep: torch.Tensor) -> torch.Tensor:
        flow = self.flow(noisy_image_or_video, conditional_dict, timestep)
        return self.scheduler.x0_from_flow(noisy_image_or_video, flow, timestep)


@torch.no_grad()
def sample_with_cfg(
    score: ToyDiffusionWrapper,
    conditional_dict: dict,
    unconditional_dict: dict,
    noise: torch.Tensor,
    steps: int,
    guidance_scale: float,
) -> torch.Tensor:
    """Euler integration of the guided flow ODE from ``sigma = 1`` (``noise``) to ``sigma = 0``.

    ``x <- x + (sigma_next - sigma) * (v_c + g (v_c - v_u))`` on a uniform sigma grid.

    Returns the samples ``[B, F, C, H, W]``.
    """
    scheduler = score.get_scheduler()
    x = noise
    timesteps = torch.linspace(scheduler.num_train_timestep, 0, steps + 1)
    both = {k: torch.cat([conditional_dict[k], unconditional_dict[k]]) for k in conditional_dict}
    for t, t_next in zip(timesteps[:-1], timesteps[1:]):
        t_batch = torch.full((2 * x.shape[0], x.shape[1]), float(t))
        v_c, v_u = score.flow(torch.cat([x, x]), both, t_batch).chunk(2)
        x = x + (float(t_next) - float(t)) / scheduler.num_train_timestep * (v_c + guidance_scale * (v_c - v_u))
    return x


def train_teacher(data: ToyDataConfig, config: TeacherConfig, progress: bool = True):
    """Train the teacher by flow matching; returns ``(score_wrapper, text_encoder, info)``.

    The returned modules hold the EMA weights, are in eval mode and do not require grad.
    ``info`` records the loss curve (every 50 steps) and the wall time.
    """
    from tqdm.auto import tqdm

    torch.manual_seed(config.seed)
    gen = torch.Generator().manual_seed(config.seed)
    scheduler = FlowMatchScheduler()
    score = ToyDiffusionWrapper(build_score_model(data, config), scheduler)
    encoder = ClassTextEncoder(data.num_conditions, config.text_dim)
    params = list(score.parameters()) + list(encoder.parameters())
    opt = torch.optim.AdamW(params, lr=config.lr, weight_decay=0.0)
    sched = torch.optim.lr_scheduler.LambdaLR(
        opt, lambda i: 0.1 + 0.9 * 0.5 * (1 + torch.cos(torch.tensor(torch.pi * i / config.train_steps)).item())
    )
    ema_score, ema_encoder = copy.deepcopy(score), copy.deepcopy(encoder)
    ema_params = list(ema_score.parameters()) + list(ema_encoder.parameters())
    losses, start = [], time.perf_counter()
    bar = tqdm(range(config.train_steps), desc="teacher (flow matching)", disable=not progress, leave=False)
    running = None
    for step in bar:
        labels = sample_labels(config.batch_size, data, gen)
        x0 = make_videos(labels, data, gen)
        drop = torch.rand(config.batch_size, generator=gen) < config.null_prob
        cond = encoder(torch.where(drop, torch.full_like(labels, data.num_conditions), labels))
        sigma = torch.sigmoid(torch.randn(config.batch_size, generator=gen))  # logit-normal
        timestep = (sigma * scheduler.num_train_timestep)[:, None].expand(-1, data.num_frames)
        noise = torch.randn(x0.shape, generator=gen)
        xt = scheduler.add_noise(x0, noise, timestep)
        loss = F.mse_loss(score.flow(xt, cond, timestep), noise - x0)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(params, 1.0)
        opt.step()
        sched.step()
        with torch.no_grad():
            # Warm-up of the EMA so that a short run is not dominated by the random init.
            decay = min(config.ema_decay, (1 + step) / (10 + step))
            for e, p in zip(ema_params, params):
                e.lerp_(p, 1 - decay)
        running = loss.item() if running is None else 0.98 * running + 0.02 * loss.item()
        if step % 50 == 0 or step == config.train_steps - 1:
            losses.append([step, running])
            bar.set_postfix(loss=f"{running:.4f}")
    info = {"loss_curve": losses, "train_seconds": time.perf_counter() - start}
    for module in (ema_score, ema_encoder):
        module.eval().requires_grad_(False)
    return ema_score, ema_encoder, info


def cache_key(data: ToyDataConfig, config: TeacherConfig) -> str:
    """Hex digest identifying a teacher: same configs -> same key -> reused weights.

    >>> cache_key(ToyDataConfig(), TeacherConfig()) == cache_key(ToyDataConfig(), TeacherConfig())
    True
    >>> cache_key(ToyDataConfig(), TeacherConfig()) == cache_key(ToyDataConfig(), TeacherConfig(seed=1))
    False
    """
    payload = {"version": _CACHE_VERSION, "data": data.to_dict(), "teacher": config.to_dict()}
    return hashlib.sha256(json.dumps(payload, sort_keys=True).encode()).hexdigest()[:16]


def default_cache_dir() -> Path:
    """``$MSM_DEMO_CACHE`` when set, else ``~/.cache/msm-plugin/toy``."""
    env = os.environ.get(CACHE_ENV)
    return Path(env).expanduser() if env else Path.home() / ".cache" / "msm-plugin" / "toy"


def load_or_train_teacher(data: ToyDataConfig, config: TeacherConfig, cache_dir=None, progress: bool = True):
    """Load the cached teacher for these configs, or train and cache it.

    Returns ``(score_wrapper, text_encoder, info)``; ``info["cached"]`` says whether the
    weights came from disk and ``info["path"]`` where they live.
    """
    cache_dir = Path(cache_dir) if cache_dir is not None else default_cache_dir()
    path = cache_dir / f"teacher-{cache_key(data, config)}.pt"
    if path.exists():
        blob = torch.load(path, map_location="cpu", weights_only=True)
        score = ToyDiffusionWrapper(build_score_model(data, config), FlowMatchScheduler())
        encoder = ClassTextEncoder(data.num_conditions, config.text_dim)
        score.load_state_dict(blob["score"])
        encoder.load_state_dict(blob["encoder"])
        for module in (score, encoder):
            module.eval().requires_grad_(False)
        info = json.loads(blob["info"])
        info.update(cached=True, path=str(path))
        return score, encoder, info
    score, encoder, info = train_teacher(data, config, progress=progress)
    cache_dir.mkdir(parents=True, exist_ok=True)
    # Write then rename so that an interrupted run never leaves a truncated cache entry.
    tmp = path.with_suffix(f".tmp{os.getpid()}")
    torch.save({"score": score.state_dict(), "encoder": encoder.state_dict(), "info": json.dumps(info)}, tmp)
    os.replace(tmp, path)
    info.update(cached=False, path=str(path))
    return score, encoder, info
