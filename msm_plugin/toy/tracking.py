"""Ground-truth motion metrics for the toy's videos: track the blob, compare with the known velocity.

Every toy video is ``x[f] = B + c * g(p_f)``: a static background ``B`` in the known span of
:func:`~msm_plugin.toy.data.background_basis` (per channel), a colour ``c`` and a periodic
Gaussian ``g`` of known width at position ``p_f``. The tracker removes the background exactly by
projecting each frame onto the complement of that span (``P``), then finds the position that
best explains what is left,

    p_f = argmax_p  sum_c <P x_f,c, P g(p)>^2 / |P g(p)|^2,

on a half-pixel grid, refined by gradient ascent. On data this is exact (by Cauchy-Schwarz the
maximum is at the true position). Positions are unwrapped along frames (the frame is a torus)
and the velocity is the least-squares slope of ``p_f`` over ``f``; ``c`` is the least-squares
colour of the blob over all frames.

A video *has a tracked blob* when the blob is there and moves along a line, as every data
video's does:

    tracked = |c| >= TRACKED_MIN_STRENGTH * a   and   path_rms <= TRACKED_MAX_PATH_RMS,

with ``a`` the data's blob amplitude (every data blob has ``|c| = a``) and ``path_rms`` the RMS
distance (px) of the positions from their fitted line. A video without a tracked blob has no
object whose motion could be measured: it counts as motionless (velocity 0). Per video, against
the true velocity ``v*`` of its condition, with ``v`` the tracked velocity (0 when untracked):

- ``velocity_error``: ``|v - v*|`` in px/frame;
- ``direction_ok``: ``v`` within 45 degrees of ``v*`` (nearest of the four directions);
- ``frozen``: ``|v| < |v*| / 4``;
- ``speed_ratio``: ``|v| / |v*|``;
- ``blob_strength``: ``|c| / a``, 1 on data;
- ``flicker``: RMS over pixels and frames of what changes over time once the tracked blob
  ``c g(p_f)`` is removed, ``r_f - mean_f r``; 0 on data.
"""

from __future__ import annotations

import math

import torch
from einops import rearrange

from msm_plugin.toy.data import ToyDataConfig, wrap_offset, background_basis, periodic_blob, true_velocities

__all__ = [
    "TRACKED_MAX_PATH_RMS",
    "TRACKED_MIN_STRENGTH",
    "BlobTracker",
    "high_frequency_power",
    "motion_truth_metrics",
    "summarise_truth",
    "temporal_spectrum",
]

#: A tracked blob has at least a quarter of the data's strength ...
TRACKED_MIN_STRENGTH = 0.25
#: ... and positions within half a pixel (RMS) of a straight line (data: < 0.01 px).
TRACKED_MAX_PATH_RMS = 0.5

# A half-pixel grid puts the start of the refinement within 0.25 px (0.17 sigma) of the
# optimum, inside its single basin.
_GRID_STEP = 0.5
_REFINE_STEPS = 60


class BlobTracker:
    """Per-frame blob positions of toy videos (see the module docstring for the estimator).

    Args:
        config: the data configuration (size, blob width, background grid).

    >>> from msm_plugin.toy.data import make_videos
    >>> cfg = ToyDataConfig()
    >>> x = make_videos(torch.tensor([1]), cfg, torch.Generator().manual_seed(0))  # right at 1 px/frame
    >>> v = BlobTracker(cfg).velocities(x)
    >>> [round(float(a), 2) + 0.0 for a in v[0]]  # (+ 0.0: no negative zero)
    [0.0, 1.0]
    """

    def __init__(self, config: ToyDataConfig):
        self.config = config
        basis = background_basis(config).double()  # [G, P]
        q, _ = torch.linalg.qr(basis.T)  # [P, G], orthonormal columns spanning the backgrounds
        self._q = q
        s = config.size
        axis = torch.arange(0.0, s, _GRID_STEP, dtype=torch.float64)
        self._grid = torch.stack(torch.meshgrid(axis, axis, indexing="ij"), dim=-1).reshape(-1, 2)  # [K, 2]
        templates = self._project(self._blob(self._grid))  # [K, P]
        self._templates = templates / templates.norm(dim=-1, keepdim=True)

    def _blob(self, centres: torch.Tensor) -> torch.Tensor:
        """Periodic Gaussians at ``centres [..., 2]`` (row, col), flattened to ``[..., H*W]``."""
        return periodic_blob(centres, self.config.size, self.config.blob_sigma).flatten(-2)

    def _project(self, flat: torch.Tensor) -> torch.Tensor:
        """Remove the background span: ``P y = y - Q Q^T y`` on ``[..., H*W]``."""
        return flat - (flat @ self._q) @ self._q.T

    def _check(self, videos: torch.Tensor) -> None:
        cfg = self.config
        if not isinstance(videos, torch.Tensor) or videos.ndim != 5 or tuple(videos.shape[2:]) != (cfg.channels, cfg.size, cfg.size) or videos.shape[1] < 2:
            got = tuple(videos.shape) if isinstance(videos, torch.Tensor) else type(videos).__name__
            raise ValueError(
                f"expected toy videos [N, F >= 2, {cfg.channels}, {cfg.size}, {cfg.size}] (model space), got {got}"
            )

    def remove_background(self, videos: torch.Tensor) -> torch.Tensor:
        """``P x``: every frame and channel minus its part in the background span, ``[N, F, C, H, W]``.

        What the tracker sees: on data, the blob (less its smooth, background-like part) and nothing else.
        """
        self._check(videos)
        flat = rearrange(videos.double(), "n f c h w -> n f c (h w)")
        return self._project(flat).reshape(videos.shape).to(videos.dtype)

    def positions(self, videos: torch.Tensor) -> torch.Tensor:
        """The blob's position ``(row, col)`` in every frame, ``[N, F, 2]`` (float64).

        ``videos``: model-space toy videos ``[N, F, C, H, W]``.
        """
        self._check(videos)
        x = self._project(rearrange(videos.double(), "n f c h w -> n f c (h w)"))  # [N, F, C, P]
        scores = ((x @ self._templates.T) ** 2).sum(dim=2)  # [N, F, K]
        start = self._grid[scores.argmax(dim=-1)]  # [N, F, 2]
        p = start.clone().requires_grad_(True)
        opt = torch.optim.Adam([p], lr=0.05)
        for i in range(_REFINE_STEPS):
            for group in opt.param_groups:  # cosine decay to 0, so the last steps settle
                group["lr"] = 0.05 * 0.5 * (1 + math.cos(math.pi * i / _REFINE_STEPS))
            t = self._project(self._blob(p))  # [N, F, P]
            proj = (x * t[:, :, None]).sum(-1) ** 2 / (t**2).sum(-1, keepdim=True)  # [N, F, C]
            loss = -proj.sum()
            opt.zero_grad()
            loss.backward()
            opt.step()
        return torch.remainder(p.detach(), self.config.size)

    def path(self, positions: torch.Tensor) -> torch.Tensor:
        """Positions ``[N, F, 2]`` unwrapped along frames: each step taken the short way round the torus.

        Exact while the blob moves less than half the frame per frame.
        """
        steps = wrap_offset(positions[:, 1:] - positions[:, :-1], self.config.size)
        return torch.cat([positions[:, :1], positions[:, :1] + steps.cumsum(dim=1)], dim=1)

    def velocities(self, videos: torch.Tensor, positions: torch.Tensor = None) -> torch.Tensor:
        """Least-squares slope of the (unwrapped) positions over frames, ``[N, 2]`` as ``(dy, dx)`` px/frame."""
        p = self.path(self.positions(videos) if positions is None else positions)
        f = torch.arange(p.shape[1], dtype=p.dtype)
        f = f - f.mean()
        return (f[None, :, None] * p).sum(1) / (f**2).sum()

    def residual(self, videos: torch.Tensor, positions: torch.Tensor):
        """``(videos - c g(p_f), c)``: what is left once the tracked blob is removed, and its colour ``[N, C]``.

        ``c`` is the least-squares colour over all frames, computed on the projected frames
        (the background does not bias it).
        """
        blob = self._blob(positions)  # [N, F, P]
        x = self._project(rearrange(videos.double(), "n f c h w -> n f c (h w)"))
        pb = self._project(blob)
        colour = torch.einsum("nfcp,nfp->nc", x, pb) / (pb**2).sum(dim=(1, 2))[:, None]
        model = colour[:, None, :, None] * blob[:, :, None, :]  # [N, F, C, P]
        left = rearrange(videos.double(), "n f c h w -> n f c (h w)") - model
        return left.reshape(videos.shape), colour


def temporal_spectrum(videos: torch.Tensor) -> torch.Tensor:
    """Mean power per temporal frequency of ``videos [N, F, ...]`` minus their temporal mean, ``[F // 2 + 1]``.

    ``P_k = mean_{n, pixels} |DFT_f(x - mean_f x)[k]|^2 / F``; bin ``F / 2`` (even ``F``) is the
    alternating-frame frequency where flicker lives; a static video has zero power everywhere.

    >>> x = torch.tensor([1.0, -1.0, 1.0, -1.0]).reshape(1, 4, 1)  # pure alternation
    >>> temporal_spectrum(x).tolist()
    [0.0, 0.0, 4.0]
    """
    if not isinstance(videos, torch.Tensor) or videos.ndim < 2 or videos.shape[1] < 2:
        got = tuple(videos.shape) if isinstance(videos, torch.Tensor) else type(videos).__name__
        raise ValueError(f"expected videos [N, F, ...] with F >= 2, got {got}")
    x = videos.double()
    x = x - x.mean(dim=1, keepdim=True)
    power = torch.fft.rfft(x, dim=1).abs() ** 2 / x.shape[1]
    return power.transpose(0, 1).reshape(power.shape[1], -1).mean(dim=1)


def high_frequency_power(spectrum: torch.Tensor) -> tuple:
    """``(power, share)`` of a :func:`temporal_spectrum` in the upper half of the temporal band.

    ``power`` sums the bins ``k >= ceil(K / 2)`` of ``K = F // 2 + 1`` (for 8 frames: the periods
    of 2 to 8/3 frames, flicker); ``share`` divides it by all non-static power (bins ``k >= 1``).

    >>> high_frequency_power(torch.tensor([5.0, 1.0, 1.0, 1.0, 2.0]))  # bins 3, 4 of 1..4
    (3.0, 0.6)
    """
    upper = float(spectrum[(spectrum.shape[0] + 1) // 2:].sum())
    total = float(spectrum[1:].sum())
    return upper, (upper / total if total > 0 else 0.0)


def motion_truth_metrics(videos: torch.Tensor, labels: torch.Tensor, config: ToyDataConfig,
                         tracker: BlobTracker = None) -> dict:
    """Per-video ground-truth motion measurements of model-space toy videos (module docstring).

    Args:
        videos: ``[N, F, C, H, W]`` in model space (as generated, before display mapping).
        labels: their conditions ``[N]`` (the true velocity of each).
        config: the data configuration.
        tracker: a :class:`BlobTracker` to reuse (built from ``config`` when omitted).

    Returns:
        ``positions`` (``[N, F, 2]``, on the torus), ``velocity`` (tracked, 0 when untracked), ``fitted_velocity`` (the slope whatever the
        fit) and ``true_velocity`` (``[N, 2]``); ``tracked``, ``path_rms``, ``velocity_error``,
        ``speed_ratio``, ``direction_ok``, ``frozen``, ``flicker``, ``blob_strength`` (``[N]``);
        ``pair_speed_ratio`` (``[N, F - 1]``: ``|p_{f+1} - p_f| / |v*|``, 0 when untracked) and
        ``flicker_spectrum`` (``[F // 2 + 1]``, the temporal spectrum of the blob-free remainder).
    """
    tracker = tracker or BlobTracker(config)
    if not isinstance(labels, torch.Tensor) or labels.shape != videos.shape[:1]:
        got = tuple(labels.shape) if isinstance(labels, torch.Tensor) else type(labels).__name__
        raise ValueError(f"expected one label per video, [N] = [{videos.shape[0]}], got {got}")
    positions = tracker.positions(videos)
    path = tracker.path(positions)
    fitted = tracker.velocities(videos, positions)
    f = torch.arange(path.shape[1], dtype=path.dtype)
    line = path.mean(dim=1, keepdim=True) + (f - f.mean())[None, :, None] * fitted[:, None, :]
    path_rms = (path - line).pow(2).sum(dim=2).mean(dim=1).sqrt()
    left, colour = tracker.residual(videos, positions)
    strength = colour.norm(dim=1) / config.blob_amplitude
    tracked = (strength >= TRACKED_MIN_STRENGTH) & (path_rms <= TRACKED_MAX_PATH_RMS)
    v = fitted * tracked[:, None]
    v_true = true_velocities(labels, config).double()
    speed, true_speed = v.norm(dim=1), v_true.norm(dim=1)
    pair_speed = (path[:, 1:] - path[:, :-1]).norm(dim=2) * tracked[:, None] / true_speed[:, None]
    changing = left - left.mean(dim=1, keepdim=True)
    return {
        "positions": positions,
        "velocity": v,
        "fitted_velocity": fitted,
        "true_velocity": v_true,
        "tracked": tracked,
        "path_rms": path_rms,
        "velocity_error": (v - v_true).norm(dim=1),
        "speed_ratio": speed / true_speed,
        "direction_ok": (v * v_true).sum(1) > speed * true_speed * math.cos(math.pi / 4),
        "frozen": speed < true_speed / 4,
        "flicker": changing.pow(2).mean(dim=(1, 2, 3, 4)).sqrt(),
        "blob_strength": strength,
        "pair_speed_ratio": pair_speed,
        "flicker_spectrum": temporal_spectrum(left),
    }


def summarise_truth(per_video: dict, labels: torch.Tensor, config: ToyDataConfig) -> dict:
    """Set-level numbers from :func:`motion_truth_metrics`: means, shares, and per-speed breakdowns.

    Keys: ``tracked_share``, ``velocity_error`` (px/frame), ``relative_velocity_error`` (mean
    error / mean true speed), ``direction_accuracy``, ``frozen_share``, ``speed_ratio`` (mean
    ``|v| / |v*|``), ``blob_strength`` (mean ``|c| / a``), ``path_rms`` (median, px),
    ``flicker``, ``flicker_hf_power`` and ``flicker_hf_share`` (the blob-free remainder's power in
    the upper half of the temporal band, and its share of all non-static power:
    :func:`high_frequency_power`), ``pair_speed_ratio`` (``[F - 1]``, mean per frame pair) and,
    per speed ``s``, ``velocity_error@s``, ``speed_ratio@s`` and ``frozen_share@s``.
    """
    true_speed = per_video["true_velocity"].norm(dim=1)
    hf_power, hf_share = high_frequency_power(per_video["flicker_spectrum"])
    out = {
        "tracked_share": float(per_video["tracked"].double().mean()),
        "velocity_error": float(per_video["velocity_error"].mean()),
        "relative_velocity_error": float(per_video["velocity_error"].mean() / true_speed.mean()),
        "direction_accuracy": float(per_video["direction_ok"].double().mean()),
        "frozen_share": float(per_video["frozen"].double().mean()),
        "speed_ratio": float(per_video["speed_ratio"].mean()),
        "blob_strength": float(per_video["blob_strength"].mean()),
        "path_rms": float(per_video["path_rms"].median()),
        "flicker": float(per_video["flicker"].mean()),
        "flicker_hf_power": hf_power,
        "flicker_hf_share": hf_share,
        "pair_speed_ratio": per_video["pair_speed_ratio"].mean(dim=0).tolist(),
    }
    speed_of = torch.tensor(config.speeds, dtype=torch.float64)[labels % len(config.speeds)]
    for s in config.speeds:
        pick = speed_of == s
        if bool(pick.any()):
            out[f"velocity_error@{s:g}"] = float(per_video["velocity_error"][pick].mean())
            out[f"speed_ratio@{s:g}"] = float(per_video["speed_ratio"][pick].mean())
            out[f"frozen_share@{s:g}"] = float(per_video["frozen"][pick].double().mean())
    return out
