"""The learned residuals of the toy's critic and student: an MLP, a 3-D convolution or a tiny diffusers Wan.

DMD starts the critic (``fake_score``) and the generator as copies of the teacher. The toy's
teacher is exact and has no weights, so each starts as

    x0(x_t, t, c) = teacher(x_t, t, c) + R(x_t, t, c),

where ``R`` is a small network whose output layer is zero-initialised: at step 0 both equal the
teacher exactly (the one-step student at ``t = 1000`` is then the conditional data mean), and
training moves only ``R`` (:class:`ResidualScore`). Three kinds of ``R``
(:class:`ResidualConfig`):

- ``mlp``: the whole video flattened, ``Linear -> SiLU -> Linear -> SiLU -> Linear``, with the
  prompt embedding and sinusoidal timestep features concatenated after the first layer. It
  sees every pixel of every frame at once, with no built-in locality.
- ``conv``: 3-D convolutions (kernel 3 over frames, rows, columns) with the prompt and timestep
  added per channel, plus coordinate channels: local in space and time.
- ``wan``: a diffusers ``WanTransformer3DModel`` (the network a real host trains) on patches
  of ``patch_size`` with coordinate channels (its rotary embeddings are relative, and from pure
  noise a network without absolute coordinates cannot place a blob where the data has it).

With ``reads_base`` the residual also reads the teacher's x0 prediction next to ``x_t`` (a
critic that knows what the data denoiser says only has to learn the difference).
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass

import torch
from einops import rearrange
from torch import nn

from msm_plugin.toy.data import ToyDataConfig
from msm_plugin.toy.teacher import NetConfig, build_score_model, check_video_and_timestep

__all__ = [
    "COORDINATE_CHANNELS",
    "RESIDUAL_KINDS",
    "ResidualConfig",
    "ResidualScore",
    "build_residual",
    "coordinate_channels",
    "timestep_features",
]

RESIDUAL_KINDS = ("mlp", "conv", "wan")
COORDINATE_CHANNELS = 3
_TIME_FREQUENCIES = 8
_CONDITION_DIM = 64


@dataclass(frozen=True)
class ResidualConfig:
    """Architecture of one learned residual ``R``.

    Args:
        kind: ``"mlp"``, ``"conv"`` or ``"wan"`` (see the module docstring).
        width: hidden units (mlp), channels (conv) or model dimension (wan: heads of 16).
        depth: hidden layers (mlp), convolutions (conv) or transformer blocks (wan).
        reads_base: ``R`` also reads the teacher's x0 prediction.
        patch_size: ``(t, h, w)`` patches of the wan kind (ignored by the others).
        text_dim: size of the prompt embedding it reads.

    >>> ResidualConfig(kind="mlp", width=256).kind
    'mlp'
    >>> ResidualConfig(kind="unet")
    Traceback (most recent call last):
    ...
    ValueError: `kind` should be one of ('mlp', 'conv', 'wan'), got 'unet'
    """

    kind: str = "mlp"
    width: int = 512
    depth: int = 2
    reads_base: bool = False
    patch_size: tuple = (1, 2, 2)
    text_dim: int = 16

    def __post_init__(self):
        if self.kind not in RESIDUAL_KINDS:
            raise ValueError(f"`kind` should be one of {RESIDUAL_KINDS}, got {self.kind!r}")
        for name in ("width", "depth", "text_dim"):
            value = getattr(self, name)
            if not isinstance(value, int) or isinstance(value, bool) or value < 1:
                raise ValueError(f"`{name}` should be a positive int, got {value!r}")
        if self.kind == "wan" and self.width % 16:
            raise ValueError(f"a wan residual's `width` should be a multiple of 16 (heads of 16), got {self.width}")
        object.__setattr__(self, "patch_size", tuple(int(p) for p in self.patch_size))
        if len(self.patch_size) != 3 or min(self.patch_size) < 1:
            raise ValueError(f"`patch_size` should be 3 positive ints (t, h, w), got {self.patch_size}")
        object.__setattr__(self, "reads_base", bool(self.reads_base))

    def to_dict(self) -> dict:
        """Plain-JSON form."""
        return {k: list(v) if isinstance(v, tuple) else v for k, v in asdict(self).items()}

    def describe(self) -> str:
        """A short label, e.g. ``"mlp w512 d2"``.

        >>> ResidualConfig(kind="wan", width=64, depth=2, patch_size=(1, 2, 2)).describe()
        'wan w64 d2 patch 1x2x2'
        """
        text = f"{self.kind} w{self.width} d{self.depth}"
        if self.kind == "wan":
            text += " patch " + "x".join(str(p) for p in self.patch_size)
        return text + (" +base" if self.reads_base else "")


def coordinate_channels(batch: int, frames: int, height: int, width: int) -> torch.Tensor:
    """Row, column and frame coordinates in [-1, 1], ``[B, 3, F, H, W]`` (Wan's layout).

    >>> coordinate_channels(1, 2, 1, 3)[0, :, 1, 0].tolist()  # frame 1, row 0: (row, col, frame)
    [[0.0, 0.0, 0.0], [-1.0, 0.0, 1.0], [1.0, 1.0, 1.0]]
    """
    def axis(n):
        return torch.linspace(-1, 1, n) if n > 1 else torch.zeros(1)

    f, h, w = torch.meshgrid(axis(frames), axis(height), axis(width), indexing="ij")
    return torch.stack([h, w, f])[None].expand(batch, -1, -1, -1, -1)


def timestep_features(timestep: torch.Tensor, scale: float = 1000.0, frequencies: int = _TIME_FREQUENCIES) -> torch.Tensor:
    """``[sin(k pi t / scale), cos(k pi t / scale)]`` for ``k = 1 .. frequencies``: ``[B, 2 * frequencies]``.

    >>> timestep_features(torch.tensor([500.0]), frequencies=1).round(decimals=6).tolist()
    [[1.0, -0.0]]
    """
    k = torch.arange(1, frequencies + 1, dtype=torch.float32, device=timestep.device) * math.pi
    angle = timestep.float()[:, None] / scale * k
    return torch.cat([angle.sin(), angle.cos()], dim=1)


class _MLP(nn.Module):
    def __init__(self, video_numel: int, config: ResidualConfig):
        super().__init__()
        inputs = video_numel * (2 if config.reads_base else 1)
        self.reads_base = config.reads_base
        self.input = nn.Linear(inputs, config.width)
        self.condition = nn.Linear(config.text_dim, _CONDITION_DIM)
        dims = [config.width + _CONDITION_DIM + 2 * _TIME_FREQUENCIES] + [config.width] * (config.depth - 1)
        layers = []
        for a, b in zip(dims[:-1], dims[1:]):
            layers += [nn.SiLU(), nn.Linear(a, b)]
        self.hidden = nn.Sequential(*layers)
        self.output = nn.Linear(dims[-1], video_numel)
        nn.init.zeros_(self.output.weight)
        nn.init.zeros_(self.output.bias)

    def forward(self, noisy, timestep, text, base):
        x = noisy.flatten(1)
        if self.reads_base:
            x = torch.cat([x, base.flatten(1)], dim=1)
        h = torch.cat([self.input(x), self.condition(text), timestep_features(timestep)], dim=1)
        return self.output(nn.functional.silu(self.hidden(h))).reshape(noisy.shape)


def _grid_inputs(noisy: torch.Tensor, base=None) -> torch.Tensor:
    """``[B, C', F, H, W]``: the noisy video, the teacher's x0 when given, and the coordinate channels."""
    x = rearrange(noisy, "b f c h w -> b c f h w")
    parts = [x] if base is None else [x, rearrange(base, "b f c h w -> b c f h w")]
    return torch.cat(parts + [coordinate_channels(x.shape[0], *x.shape[2:]).to(x)], dim=1)


class _Conv(nn.Module):
    def __init__(self, channels: int, config: ResidualConfig):
        super().__init__()
        inputs = channels * (2 if config.reads_base else 1) + COORDINATE_CHANNELS
        self.reads_base = config.reads_base
        self.input = nn.Conv3d(inputs, config.width, 3, padding=1)
        self.condition = nn.Linear(config.text_dim + 2 * _TIME_FREQUENCIES, config.width)
        self.hidden = nn.ModuleList(nn.Conv3d(config.width, config.width, 3, padding=1) for _ in range(config.depth - 1))
        self.output = nn.Conv3d(config.width, channels, 3, padding=1)
        nn.init.zeros_(self.output.weight)
        nn.init.zeros_(self.output.bias)

    def forward(self, noisy, timestep, text, base):
        h = self.input(_grid_inputs(noisy, base if self.reads_base else None))
        h = h + self.condition(torch.cat([text, timestep_features(timestep)], dim=1))[:, :, None, None, None]
        for layer in self.hidden:
            h = layer(nn.functional.silu(h))
        return rearrange(self.output(nn.functional.silu(h)), "b c f h w -> b f c h w")


class _Wan(nn.Module):
    def __init__(self, data: ToyDataConfig, config: ResidualConfig):
        super().__init__()
        self.reads_base = config.reads_base
        net = NetConfig(num_layers=config.depth, num_heads=config.width // 16, head_dim=16, ffn_dim=2 * config.width,
                        text_dim=config.text_dim, patch_size=config.patch_size)
        extra = COORDINATE_CHANNELS + (data.channels if config.reads_base else 0)
        self.model = build_score_model(data, net, in_channels=data.channels + extra)
        nn.init.zeros_(self.model.proj_out.weight)
        nn.init.zeros_(self.model.proj_out.bias)

    def forward(self, noisy, timestep, text, base):
        x = _grid_inputs(noisy, base if self.reads_base else None)
        out = self.model(hidden_states=x, timestep=timestep.to(x.dtype),
                         encoder_hidden_states=text[:, None, :].to(x.dtype), return_dict=False)[0]
        return rearrange(out, "b c f h w -> b f c h w")


def build_residual(data: ToyDataConfig, config: ResidualConfig) -> nn.Module:
    """A residual of ``config.kind`` for ``data``'s videos whose output is exactly zero until trained.

    Its ``forward(noisy [B, F, C, H, W], timestep [B], text [B, D], base [B, F, C, H, W])``
    returns ``[B, F, C, H, W]``.

    >>> data = ToyDataConfig(num_frames=2, size=8)
    >>> r = build_residual(data, ResidualConfig(kind="conv", width=4))
    >>> x = torch.randn(1, 2, 3, 8, 8)
    >>> float(r(x, torch.tensor([500.0]), torch.randn(1, 16), x).detach().abs().max())
    0.0
    """
    if not isinstance(config, ResidualConfig):
        raise TypeError(f"expected a ResidualConfig, got {type(config).__name__}")
    if config.kind == "mlp":
        return _MLP(math.prod(data.video_shape), config)
    if config.kind == "conv":
        return _Conv(data.channels, config)
    return _Wan(data, config)


class ResidualScore(nn.Module):
    """``forward(noisy_image_or_video, conditional_dict, timestep) = base(...) + R(...)``, CausVid-style.

    Args:
        base: the frozen teacher (e.g. :class:`~msm_plugin.toy.teacher.ExactTeacher`); kept out
            of this module's parameters and state dict, so critic and student share it.
        residual: from :func:`build_residual`.

    Shapes: videos ``[B, F, C, H, W]``, ``timestep`` ``[B, F]`` equal over frames,
    ``conditional_dict`` with ``prompt_embeds`` ``[B, 1, D]`` (and what ``base`` reads).
    """

    def __init__(self, base: nn.Module, residual: nn.Module):
        super().__init__()
        self._base = [base]  # a list: not a child module, so not in parameters() or state_dict()
        self.residual = residual

    @property
    def base(self) -> nn.Module:
        return self._base[0]

    def get_scheduler(self):
        return self.base.get_scheduler()

    def forward(self, noisy_image_or_video: torch.Tensor, conditional_dict: dict, timestep: torch.Tensor) -> torch.Tensor:
        check_video_and_timestep(noisy_image_or_video, timestep)
        with torch.no_grad():
            base = self.base(noisy_image_or_video, conditional_dict, timestep)
        text = conditional_dict["prompt_embeds"][:, 0]
        return base + self.residual(noisy_image_or_video, timestep[:, 0], text, base)
