"""Critic and student of the toy: the exact teacher plus a zero-initialised diffusers Wan residual.

DMD starts the critic (``fake_score``) and the generator as copies of the teacher. The toy's
teacher is exact and has no weights, so each starts as

    x0(x_t, t, c) = teacher(x_t, t, c) + R(x_t, t, c),

where ``R`` is a tiny ``WanTransformer3DModel`` (the network a host would train) whose output
projection is zero-initialised: at step 0 both equal the teacher exactly (the one-step student
at ``t = 1000`` is then the conditional data mean), and training moves only ``R``.

``R`` sees three coordinate channels (row, column, frame in [-1, 1]) next to the video, as Wan's
image-to-video model sees extra input channels: Wan's rotary embeddings are relative, and from
pure noise a network without absolute coordinates cannot place a blob where the data has it.
"""

from __future__ import annotations

import torch
from einops import rearrange
from torch import nn

from msm_plugin.toy.data import ToyDataConfig
from msm_plugin.toy.teacher import NetConfig, build_score_model, check_video_and_timestep

__all__ = ["COORDINATE_CHANNELS", "ResidualScore", "build_residual", "coordinate_channels"]

COORDINATE_CHANNELS = 3


def coordinate_channels(batch: int, frames: int, height: int, width: int) -> torch.Tensor:
    """Row, column and frame coordinates in [-1, 1], ``[B, 3, F, H, W]`` (Wan's layout).

    >>> coordinate_channels(1, 2, 1, 3)[0, :, 1, 0].tolist()  # frame 1, row 0: (row, col, frame)
    [[0.0, 0.0, 0.0], [-1.0, 0.0, 1.0], [1.0, 1.0, 1.0]]
    """
    def axis(n):
        return torch.linspace(-1, 1, n) if n > 1 else torch.zeros(1)

    f, h, w = torch.meshgrid(axis(frames), axis(height), axis(width), indexing="ij")
    return torch.stack([h, w, f])[None].expand(batch, -1, -1, -1, -1)


def build_residual(data: ToyDataConfig, config: NetConfig) -> nn.Module:
    """A tiny ``WanTransformer3DModel`` whose output is exactly zero until trained.

    >>> import torch
    >>> r = build_residual(ToyDataConfig(num_frames=2, size=8), NetConfig(num_layers=1))
    >>> out = r(hidden_states=torch.randn(1, 3 + COORDINATE_CHANNELS, 2, 8, 8), timestep=torch.tensor([500.0]),
    ...         encoder_hidden_states=torch.randn(1, 1, 16), return_dict=False)[0]
    >>> float(out.detach().abs().max())
    0.0
    """
    model = build_score_model(data, config, in_channels=data.channels + COORDINATE_CHANNELS)
    nn.init.zeros_(model.proj_out.weight)
    nn.init.zeros_(model.proj_out.bias)
    return model


class ResidualScore(nn.Module):
    """``forward(noisy_image_or_video, conditional_dict, timestep) = base(...) + R(...)``, CausVid-style.

    Args:
        base: the frozen teacher (e.g. :class:`~msm_plugin.toy.teacher.ExactTeacher`); kept out
            of this module's parameters and state dict, so critic and student share it.
        residual: a ``WanTransformer3DModel`` on ``[B, C, F, H, W]`` (see :func:`build_residual`).
        framewise: run ``residual`` on each frame alone (frames folded into the batch, frame
            coordinate 0), so it has no temporal structure: its errors are independent across
            frames, the case where MSM's temporal high-pass turns them into flicker.

    Shapes: videos ``[B, F, C, H, W]``, ``timestep`` ``[B, F]`` equal over frames,
    ``conditional_dict`` with ``prompt_embeds`` ``[B, 1, D]`` (and what ``base`` reads).
    """

    def __init__(self, base: nn.Module, residual: nn.Module, framewise: bool = False):
        super().__init__()
        self._base = [base]  # a list: not a child module, so not in parameters() or state_dict()
        self.residual = residual
        self.framewise = bool(framewise)

    @property
    def base(self) -> nn.Module:
        return self._base[0]

    def get_scheduler(self):
        return self.base.get_scheduler()

    def forward(self, noisy_image_or_video: torch.Tensor, conditional_dict: dict, timestep: torch.Tensor) -> torch.Tensor:
        check_video_and_timestep(noisy_image_or_video, timestep)
        with torch.no_grad():
            base = self.base(noisy_image_or_video, conditional_dict, timestep)
        frames = noisy_image_or_video.shape[1]
        t, text = timestep[:, 0], conditional_dict["prompt_embeds"]
        if self.framewise:
            hidden = rearrange(noisy_image_or_video, "b f c h w -> (b f) c 1 h w")
            t, text = t.repeat_interleave(frames), text.repeat_interleave(frames, dim=0)
        else:
            hidden = rearrange(noisy_image_or_video, "b f c h w -> b c f h w")
        coords = coordinate_channels(hidden.shape[0], *hidden.shape[2:]).to(hidden)
        hidden = torch.cat([hidden, coords], dim=1)
        out = self.residual(
            hidden_states=hidden, timestep=t.to(hidden.dtype), encoder_hidden_states=text.to(hidden.dtype), return_dict=False,
        )[0]
        if self.framewise:
            return base + rearrange(out, "(b f) c 1 h w -> b f c h w", f=frames)
        return base + rearrange(out, "b c f h w -> b f c h w")
