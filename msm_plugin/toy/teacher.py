"""Score networks of the toy: the exact teacher, the Wan score wrapper, the noise schedule and the sampler.

Rectified flow (as Wan): with ``sigma = t / 1000`` in ``[0, 1]``,

    x_t = (1 - sigma) * x_0 + sigma * eps,        v = eps - x_0,   x_0 = x_t - sigma * v.

The teacher is :class:`ExactTeacher`, the optimal denoiser of the demo's finite data set
``{x_i}`` (:func:`~msm_plugin.toy.data.make_dataset`): the posterior mean

    E[x_0 | x_t, c] = sum_i w_i x_i,    w = softmax_i(-|x_t - (1 - sigma) x_i|^2 / (2 sigma^2))

over the videos of condition ``c`` (over all videos for the null condition), with float64
logits. It is exact by construction, so its samples carry the data's motion; a learned tiny
Wan teacher could not denoise precisely enough at low noise to do so on 2 CPU cores (the
demo's documentation, docs/demo.md). :class:`ToyDiffusionWrapper` turns a ``WanTransformer3DModel`` predicting
the flow into a CausVid-style x0 score (used by :mod:`.residual` and the step benchmarks).
Sampling (:func:`sample_with_cfg`) integrates the probability-flow ODE with Euler steps using
guided x0 predictions ``x0_c + g (x0_c - x0_u)`` (CausVid's ``real_guidance_scale``).
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

import torch
import torch.nn as nn
from einops import rearrange

from msm_plugin.toy.data import ToyDataConfig

__all__ = [
    "ClassTextEncoder",
    "ExactTeacher",
    "FlowMatchScheduler",
    "NetConfig",
    "ToyDiffusionWrapper",
    "build_score_model",
    "check_video_and_timestep",
    "sample_with_cfg",
]


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
class NetConfig:
    """Architecture of a tiny ``WanTransformer3DModel`` (the ``wan`` residual of :mod:`.networks`, the step benchmarks).

    Patch ``(1, 4, 4)`` keeps 8 x 16 x 16 videos at 128 tokens (patch ``(1, 2, 2)`` is ~5x
    slower on CPU); 2 layers of 4 heads x 16 is ~0.1 M parameters.

    >>> NetConfig(num_layers=1).num_layers
    1
    """

    num_layers: int = 2
    num_heads: int = 4
    head_dim: int = 16
    ffn_dim: int = 128
    text_dim: int = 16
    freq_dim: int = 64
    patch_size: tuple = (1, 4, 4)

    def __post_init__(self):
        for name in ("num_layers", "num_heads", "head_dim", "ffn_dim", "text_dim", "freq_dim"):
            value = getattr(self, name)
            if not isinstance(value, int) or isinstance(value, bool):
                raise TypeError(f"`{name}` should be an int, got {type(value).__name__}")
            if value < 1:
                raise ValueError(f"`{name}` should be positive, got {value}")
        object.__setattr__(self, "patch_size", tuple(int(p) for p in self.patch_size))
        if len(self.patch_size) != 3:
            raise ValueError(f"`patch_size` should have 3 entries (t, h, w), got {self.patch_size}")

    def to_dict(self) -> dict:
        """Plain-JSON form."""
        return {k: list(v) if isinstance(v, tuple) else v for k, v in asdict(self).items()}


class ClassTextEncoder(nn.Module):
    """The toy "text encoder": one fixed random ``text_dim`` token per class, plus a null class.

    Returns CausVid-style condition dicts ``{"prompt_embeds": [B, 1, text_dim], "labels": [B]}``:
    networks read the embedding, the exact teacher reads the label (``num_classes`` = null).

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
        return {"prompt_embeds": self.embedding(labels)[:, None, :], "labels": labels}

    def null(self, batch_size: int) -> dict:
        """The unconditional dict (null class) for ``batch_size`` samples."""
        labels = torch.full((batch_size,), self.num_classes, dtype=torch.long, device=self.embedding.weight.device)
        return self.forward(labels)


def build_score_model(data: ToyDataConfig, config: NetConfig, in_channels: int = None):
    """A freshly initialised tiny ``WanTransformer3DModel`` for ``data``'s videos.

    ``in_channels`` defaults to the videos' channels (more: extra conditioning channels).

    >>> m = build_score_model(ToyDataConfig(), NetConfig())
    >>> 0.05e6 < sum(p.numel() for p in m.parameters()) < 0.5e6
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
        in_channels=in_channels or data.channels,
        out_channels=data.channels,
        text_dim=config.text_dim,
        freq_dim=config.freq_dim,
        ffn_dim=config.ffn_dim,
        num_layers=config.num_layers,
        rope_max_seq_len=64,
    )


def check_video_and_timestep(noisy_image_or_video: torch.Tensor, timestep: torch.Tensor) -> None:
    """What the toy's bidirectional Wan scores accept: ``[B, F, C, H, W]`` and one timestep per sample ``[B, F]``."""
    if noisy_image_or_video.ndim != 5 or timestep.shape != noisy_image_or_video.shape[:2]:
        raise ValueError(
            "expected noisy_image_or_video [B, F, C, H, W] and timestep [B, F], got "
            f"{tuple(noisy_image_or_video.shape)} and {tuple(timestep.shape)}"
        )
    if not bool((timestep == timestep[:, :1]).all()):
        raise ValueError("the bidirectional toy model needs one timestep per sample (equal over frames)")


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
        check_video_and_timestep(noisy_image_or_video, timestep)
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


class ExactTeacher(nn.Module):
    """The optimal (posterior-mean) x0 denoiser of a finite, labelled video set, CausVid-style.

    ``forward(noisy_image_or_video, conditional_dict, timestep) -> x0`` with videos
    ``[B, F, C, H, W]``, ``timestep`` ``[B, F]`` (one value per sample) and
    ``conditional_dict["labels"]`` ``[B]``; label ``num_classes`` is the null condition (all
    videos). Logits are computed in float64 from ``|x_t|^2 - 2 (1 - s) <x_t, x_i> + (1 - s)^2 |x_i|^2``:
    at ``sigma = 0.02`` they are ~1e4 apart, beyond float32's resolution of their differences.

    Args:
        videos: the data set ``[N, F, C, H, W]``.
        labels: its condition indices ``[N]``.
        num_classes: number of conditions (the null label is this value).

    >>> x = torch.stack([torch.zeros(2, 1, 1, 1), torch.ones(2, 1, 1, 1)])  # two 2-frame videos
    >>> teacher = ExactTeacher(x, torch.tensor([0, 1]), num_classes=2)
    >>> t = torch.full((1, 2), 500.0)
    >>> teacher(torch.full((1, 2, 1, 1, 1), 0.5), {"labels": torch.tensor([1])}, t).flatten().tolist()
    [1.0, 1.0]
    >>> teacher(torch.full((1, 2, 1, 1, 1), 0.25), {"labels": torch.tensor([2])}, t).flatten().tolist()  # equidistant
    [0.5, 0.5]
    """

    def __init__(self, videos: torch.Tensor, labels: torch.Tensor, num_classes: int, scheduler: FlowMatchScheduler = None):
        super().__init__()
        if not isinstance(videos, torch.Tensor) or videos.ndim != 5 or labels.shape != videos.shape[:1]:
            got = tuple(videos.shape) if isinstance(videos, torch.Tensor) else type(videos).__name__
            raise ValueError(f"expected videos [N, F, C, H, W] and labels [N], got {got} and {tuple(labels.shape)}")
        if int(labels.min()) < 0 or int(labels.max()) >= num_classes:
            raise ValueError(f"labels should lie in [0, {num_classes}), got range [{int(labels.min())}, {int(labels.max())}]")
        flat = videos.reshape(videos.shape[0], -1).double()
        means = torch.stack([flat[labels == c].mean(0) if bool((labels == c).any()) else flat.mean(0)
                             for c in range(num_classes)] + [flat.mean(0)])
        self.register_buffer("videos", videos.float(), persistent=False)
        self.register_buffer("flat", flat, persistent=False)
        self.register_buffer("flat32", flat.float(), persistent=False)
        # At sigma = 1 the posterior is uniform over the allowed videos: the class means (null: all).
        self.register_buffer("class_means", means.float(), persistent=False)
        self.register_buffer("sq_norms", (flat**2).sum(1), persistent=False)
        self.register_buffer("labels", labels.long(), persistent=False)
        self.num_classes = num_classes
        self.scheduler = scheduler or FlowMatchScheduler()

    def get_scheduler(self) -> FlowMatchScheduler:
        return self.scheduler

    def posterior_weights(self, noisy_image_or_video: torch.Tensor, labels: torch.Tensor, timestep: torch.Tensor) -> torch.Tensor:
        """``w [B, N]``: the posterior probability of each data video given ``x_t`` and the label."""
        if noisy_image_or_video.ndim != 5 or timestep.shape != noisy_image_or_video.shape[:2]:
            raise ValueError(
                "expected noisy_image_or_video [B, F, C, H, W] and timestep [B, F], got "
                f"{tuple(noisy_image_or_video.shape)} and {tuple(timestep.shape)}"
            )
        if labels.shape != noisy_image_or_video.shape[:1]:
            raise ValueError(f"expected conditional_dict['labels'] of shape [B] = [{noisy_image_or_video.shape[0]}], got {tuple(labels.shape)}")
        sigma = (timestep[:, 0].double() / self.scheduler.num_train_timestep).clamp_min(1e-6)[:, None]  # [B, 1]
        xt = noisy_image_or_video.reshape(noisy_image_or_video.shape[0], -1).double()
        sq_dist = (xt**2).sum(1, keepdim=True) - 2 * (1 - sigma) * (xt @ self.flat.T) + (1 - sigma) ** 2 * self.sq_norms
        logits = -sq_dist / (2 * sigma**2)
        allowed = (self.labels[None, :] == labels[:, None]) | (labels[:, None] == self.num_classes)
        return torch.softmax(logits.masked_fill(~allowed, -torch.inf), dim=1)

    def forward(self, noisy_image_or_video: torch.Tensor, conditional_dict: dict, timestep: torch.Tensor) -> torch.Tensor:
        labels = conditional_dict["labels"]
        if timestep.numel() and bool((timestep == self.scheduler.num_train_timestep).all()):
            if labels.shape != noisy_image_or_video.shape[:1]:
                raise ValueError(f"expected conditional_dict['labels'] of shape [B] = [{noisy_image_or_video.shape[0]}], got {tuple(labels.shape)}")
            x0 = self.class_means[labels]  # pure noise carries no information: the posterior is uniform
        else:
            # The logits need float64; the weighted sum of data videos does not (weights are in [0, 1]).
            x0 = self.posterior_weights(noisy_image_or_video, labels, timestep).float() @ self.flat32
        return x0.reshape(noisy_image_or_video.shape).to(noisy_image_or_video.dtype)


@torch.no_grad()
def sample_with_cfg(
    score: nn.Module,
    conditional_dict: dict,
    unconditional_dict: dict,
    noise: torch.Tensor,
    steps: int,
    guidance_scale: float,
) -> torch.Tensor:
    """Euler integration of the guided probability-flow ODE from ``sigma = 1`` (``noise``) to ``0``.

    With ``x0 = x0_c + g (x0_c - x0_u)`` at the current ``sigma`` and the velocity
    ``v = (x - x0) / sigma``, one Euler step to ``sigma'`` on a uniform grid is
    ``x <- x0 + (sigma' / sigma) (x - x0)``; the last step returns ``x0``.

    Returns the samples ``[B, F, C, H, W]``.
    """
    if not isinstance(steps, int) or steps < 1:
        raise ValueError(f"`steps` should be a positive int, got {steps!r}")
    scheduler = score.get_scheduler()
    x = noise
    timesteps = torch.linspace(scheduler.num_train_timestep, 0, steps + 1)
    both = {k: torch.cat([conditional_dict[k], unconditional_dict[k]]) for k in conditional_dict}
    for t, t_next in zip(timesteps[:-1], timesteps[1:]):
        t_batch = torch.full((2 * x.shape[0], x.shape[1]), float(t))
        x0_c, x0_u = score(torch.cat([x, x]), both, t_batch).chunk(2)
        x0 = x0_c + guidance_scale * (x0_c - x0_u)
        x = x0 + (float(t_next) / float(t)) * (x - x0)
    return x
