"""Synthetic videos for the toy distillation: a static textured background and a moving blob, on a torus.

Each video ``x`` has shape ``[F, C, H, W]`` and is ``background + colour * blob_f``, where the
background is a smooth random texture (a ``g x g`` grid of Gaussian values upsampled
bilinearly, periodically, to ``H x W``) that never moves, and ``blob_f`` is a Gaussian bump whose
centre moves by ``speed`` pixels per frame along one of four directions. Frames wrap around
(a torus: what leaves on the right comes back on the left), so the start position is uniform
over the whole frame and the average of a condition's videos is nearly static: a student that
starts at that average has to create both the object and its motion. The condition ("prompt")
is the pair (direction, speed), encoded as one class index
``label = direction_index * len(speeds) + speed_index``.

The point is the regime of the paper's eq. 7: the mean absolute frame difference
``mean |x[f+1] - x[f]|`` is far below the mean absolute value ``mean |x|`` (about 40x at the
defaults), so a distribution-matching loss on whole frames barely sees the motion.

The demo's data set is a fixed finite draw (:func:`make_dataset`, ``videos_per_condition``
videos per condition): finite, so that its optimal denoiser has a closed form (the exact
teacher of :mod:`.teacher`), and drawn from the model above, so that every video's velocity is
known (:func:`true_velocities`) and the background lies in a known linear space
(:func:`background_basis`), which the blob tracker of :mod:`.tracking` removes.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass

import torch
import torch.nn.functional as F

__all__ = [
    "DIRECTIONS",
    "DISPLAY_RANGE",
    "ToyDataConfig",
    "appearance_to_motion_ratio",
    "background_basis",
    "condition_names",
    "make_dataset",
    "make_videos",
    "periodic_blob",
    "wrap_offset",
    "sample_labels",
    "to_unit_range",
    "true_velocities",
]

# Videos live in about [-2, 2] (background std 0.5 plus a blob); metrics and video files want
# [0, 1], so every set (data, teacher, students) goes through the same fixed affine map.
DISPLAY_RANGE = 2.0

# Unit steps (dy, dx) in image coordinates: row index grows downwards.
DIRECTIONS = {"right": (0.0, 1.0), "left": (0.0, -1.0), "down": (1.0, 0.0), "up": (-1.0, 0.0)}


@dataclass(frozen=True)
class ToyDataConfig:
    """Shape and content of the synthetic videos.

    Args:
        num_frames: frames per video ``F`` (>= 2, motion needs two frames).
        size: height and width ``H = W`` in pixels.
        channels: colour channels ``C``.
        directions: names from :data:`DIRECTIONS`, one axis of the condition.
        speeds: blob speeds in pixels per frame, the other axis of the condition.
        blob_sigma: standard deviation of the Gaussian blob in pixels.
        blob_amplitude: norm of the blob's colour (a random direction in colour space), its
            strength.
        background_grid: side ``g`` of the noise grid upsampled into the background (smaller =
            smoother); it divides ``size``.
        background_amplitude: standard deviation of the background grid values (its contrast).
        videos_per_condition: size of the finite data set per condition (:func:`make_dataset`).
        dataset_seed: seed of that data set's draw.

    >>> ToyDataConfig().num_conditions
    8
    """

    num_frames: int = 8
    size: int = 16
    channels: int = 3
    directions: tuple = ("right", "left", "down", "up")
    speeds: tuple = (0.5, 1.0)
    blob_sigma: float = 1.5
    blob_amplitude: float = 1.0
    background_grid: int = 4
    background_amplitude: float = 0.5
    videos_per_condition: int = 64
    dataset_seed: int = 0

    def __post_init__(self):
        for name in ("num_frames", "size", "channels", "background_grid", "videos_per_condition", "dataset_seed"):
            value = getattr(self, name)
            if not isinstance(value, int) or isinstance(value, bool):
                raise TypeError(f"`{name}` should be an int, got {type(value).__name__}")
        if self.num_frames < 2:
            raise ValueError(f"`num_frames` should be >= 2 (motion needs two frames), got {self.num_frames}")
        if self.videos_per_condition < 1 or self.dataset_seed < 0:
            raise ValueError(
                "expected videos_per_condition >= 1 and dataset_seed >= 0, got "
                f"{self.videos_per_condition} and {self.dataset_seed}"
            )
        if self.size < 4 or self.channels < 1 or self.background_grid < 1 or self.size % self.background_grid:
            raise ValueError(
                "expected size >= 4, channels >= 1 and a background_grid >= 1 that divides size, got "
                f"size={self.size}, channels={self.channels}, background_grid={self.background_grid}"
            )
        unknown = [d for d in self.directions if d not in DIRECTIONS]
        if not self.directions or unknown:
            raise ValueError(f"`directions` should be a non-empty subset of {sorted(DIRECTIONS)}, got {list(self.directions)}")
        if not self.speeds or any(float(s) <= 0 for s in self.speeds):
            raise ValueError(f"`speeds` should be a non-empty list of positive numbers, got {list(self.speeds)}")
        for name in ("blob_sigma", "blob_amplitude", "background_amplitude"):
            if not float(getattr(self, name)) > 0:
                raise ValueError(f"`{name}` should be positive, got {getattr(self, name)}")
        # Frozen dataclass: normalise lists from YAML/CLI into tuples so the config hashes stably.
        object.__setattr__(self, "directions", tuple(self.directions))
        object.__setattr__(self, "speeds", tuple(float(s) for s in self.speeds))

    @property
    def num_conditions(self) -> int:
        """Number of (direction, speed) classes."""
        return len(self.directions) * len(self.speeds)

    @property
    def video_shape(self) -> tuple:
        """``(F, C, H, W)`` of one video."""
        return (self.num_frames, self.channels, self.size, self.size)

    def to_dict(self) -> dict:
        """Plain-JSON form (used in the results JSON)."""
        return {k: list(v) if isinstance(v, tuple) else v for k, v in asdict(self).items()}


def condition_names(config: ToyDataConfig) -> list:
    """Readable name of every class index, e.g. ``"right@0.5"``.

    >>> condition_names(ToyDataConfig(directions=("up",), speeds=(0.5, 1.0)))
    ['up@0.5', 'up@1']
    """
    return [f"{d}@{s:g}" for d in config.directions for s in config.speeds]


def sample_labels(n: int, config: ToyDataConfig, generator: torch.Generator = None) -> torch.Tensor:
    """``n`` class indices drawn uniformly from ``[0, num_conditions)``, shape ``[n]`` (long).

    >>> sample_labels(3, ToyDataConfig(), torch.Generator().manual_seed(0)).shape
    torch.Size([3])
    """
    if not isinstance(n, int) or n < 1:
        raise ValueError(f"expected a positive int number of labels, got {n!r}")
    return torch.randint(0, config.num_conditions, (n,), generator=generator)


def make_videos(labels: torch.Tensor, config: ToyDataConfig, generator: torch.Generator = None) -> torch.Tensor:
    """Draw one synthetic video per label.

    ``x[f] = bg + c * blob(p0 + f * speed * d)``, with ``bg`` a smooth static periodic texture,
    ``c`` a random colour of norm ``blob_amplitude``, ``p0`` uniform over the frame, ``d`` the
    label's unit direction and ``blob`` the periodic Gaussian of :func:`periodic_blob`.

    Args:
        labels: class indices, shape ``[B]``, values in ``[0, config.num_conditions)``.
        config: the data configuration.
        generator: optional ``torch.Generator`` for reproducible draws.

    Returns:
        Float32 videos ``[B, F, C, H, W]``.

    >>> cfg = ToyDataConfig()
    >>> x = make_videos(torch.tensor([0, 5]), cfg, torch.Generator().manual_seed(0))
    >>> tuple(x.shape)
    (2, 8, 3, 16, 16)
    >>> bool((x[:, 1:] - x[:, :-1]).abs().mean() * 10 < x.abs().mean())  # motion << appearance
    True
    """
    _check_labels(labels, config)
    b = labels.shape[0]
    f, c, s = config.num_frames, config.channels, config.size
    grid = torch.randn(b, c, config.background_grid, config.background_grid, generator=generator)
    background = _upsample(grid * config.background_amplitude, s)

    colour = torch.randn(b, c, generator=generator)
    colour = colour / colour.norm(dim=1, keepdim=True) * config.blob_amplitude
    start = torch.rand(b, 2, generator=generator) * s
    velocity = true_velocities(labels, config)  # [B, 2] as (dy, dx)
    centres = start[:, None, :] + torch.arange(f, dtype=torch.float32)[None, :, None] * velocity[:, None, :]
    blob = periodic_blob(centres, s, config.blob_sigma)  # [B, F, H, W]
    video = background[:, None] + colour[:, None, :, None, None] * blob[:, :, None]
    return video.contiguous()


def periodic_blob(centres: torch.Tensor, size: int, sigma: float) -> torch.Tensor:
    """Gaussians of width ``sigma`` on a ``size x size`` torus at ``centres [..., 2]`` (row, col): ``[..., H, W]``.

    The distance to the centre is taken the short way round, in ``[-size/2, size/2)`` per axis.

    >>> b = periodic_blob(torch.tensor([[0.0, 0.0]]), 8, 1.0)[0]
    >>> float(b[0, 0]), bool(torch.isclose(b[0, 1], b[0, 7])), bool(torch.isclose(b[1, 0], b[7, 0]))
    (1.0, True, True)
    """
    coords = torch.arange(size, dtype=centres.dtype, device=centres.device)
    dy = wrap_offset(coords[:, None] - centres[..., 0, None, None], size)  # [..., H, 1]
    dx = wrap_offset(coords[None, :] - centres[..., 1, None, None], size)  # [..., 1, W]
    return torch.exp(-(dy**2 + dx**2) / (2 * sigma**2))


def wrap_offset(delta: torch.Tensor, size: int) -> torch.Tensor:
    """``delta`` taken the short way round a circle of circumference ``size``: ``[-size/2, size/2)``."""
    return torch.remainder(delta + size / 2, size) - size / 2


def _check_labels(labels, config: ToyDataConfig) -> None:
    if not isinstance(labels, torch.Tensor) or labels.ndim != 1 or labels.dtype not in (torch.int32, torch.int64):
        got = tuple(labels.shape) if isinstance(labels, torch.Tensor) else type(labels).__name__
        raise TypeError(f"expected integer labels of shape [B], got {got}")
    if labels.numel() and (int(labels.min()) < 0 or int(labels.max()) >= config.num_conditions):
        raise ValueError(
            f"labels should lie in [0, {config.num_conditions}), got range "
            f"[{int(labels.min())}, {int(labels.max())}]"
        )


def _upsample(grid: torch.Tensor, size: int) -> torch.Tensor:
    """The background rule: a ``g x g`` grid of values at every ``size / g``-th pixel, bilinear and periodic.

    Grid value ``(i, j)`` sits at pixel ``(i s / g, j s / g)``; between grid points the
    background is interpolated bilinearly, the last grid row and column blending into the first.
    """
    closed = torch.cat([grid, grid[..., :1, :]], dim=-2)
    closed = torch.cat([closed, closed[..., :, :1]], dim=-1)  # [.., g + 1, g + 1]: the torus closed up
    full = F.interpolate(closed, size=(size + 1, size + 1), mode="bilinear", align_corners=True)
    return full[..., :size, :size].contiguous()


def true_velocities(labels: torch.Tensor, config: ToyDataConfig) -> torch.Tensor:
    """The blob velocity ``(dy, dx)`` in px/frame of each label, ``[B, 2]`` float32.

    >>> true_velocities(torch.tensor([0, 1, 7]), ToyDataConfig()).tolist()  # right@0.5, right@1, up@1
    [[0.0, 0.5], [0.0, 1.0], [-1.0, 0.0]]
    """
    _check_labels(labels, config)
    unit = torch.tensor([DIRECTIONS[d] for d in config.directions])[labels // len(config.speeds)]
    speed = torch.tensor(config.speeds)[labels % len(config.speeds)]
    return unit * speed[:, None]


def make_dataset(config: ToyDataConfig):
    """The finite data set: ``videos_per_condition`` videos of every condition, drawn with ``dataset_seed``.

    Returns ``(videos [N, F, C, H, W], labels [N])`` with ``N = num_conditions *
    videos_per_condition``, labels in blocks (all of condition 0 first).

    >>> x, y = make_dataset(ToyDataConfig(videos_per_condition=2))
    >>> tuple(x.shape), y.tolist()
    ((16, 8, 3, 16, 16), [0, 0, 1, 1, 2, 2, 3, 3, 4, 4, 5, 5, 6, 6, 7, 7])
    """
    labels = torch.arange(config.num_conditions).repeat_interleave(config.videos_per_condition)
    return make_videos(labels, config, torch.Generator().manual_seed(config.dataset_seed)), labels


def background_basis(config: ToyDataConfig) -> torch.Tensor:
    """A basis of every possible background of one channel, ``[g*g, H*W]`` (rows: one grid value each).

    The upsampling is linear, so a background is ``coefficients @ basis``; the blob, far
    narrower than the grid spacing, lies mostly outside this space.

    >>> cfg = ToyDataConfig()
    >>> grid = torch.randn(1, 1, 4, 4)
    >>> bool(torch.allclose(grid.reshape(1, 16) @ background_basis(cfg), _upsample(grid, 16).reshape(1, 256), atol=1e-6))
    True
    """
    g, s = config.background_grid, config.size
    return _upsample(torch.eye(g * g).reshape(g * g, 1, g, g), s).reshape(g * g, s * s)


def appearance_to_motion_ratio(videos: torch.Tensor) -> float:
    """``mean |x| / mean |x[f+1] - x[f]|`` over a batch ``[B, F, C, H, W]`` (eq. 7's ratio).

    >>> x = torch.zeros(1, 3, 1, 1, 1); x[0, :, 0, 0, 0] = torch.tensor([1.0, 1.5, 2.0])
    >>> appearance_to_motion_ratio(x)  # mean|x| = 1.5, mean|Dx| = 0.5
    3.0
    """
    if not isinstance(videos, torch.Tensor) or videos.ndim != 5 or videos.shape[1] < 2:
        got = tuple(videos.shape) if isinstance(videos, torch.Tensor) else type(videos).__name__
        raise ValueError(f"expected a video tensor [B, F, C, H, W] with F >= 2, got {got}")
    motion = (videos[:, 1:] - videos[:, :-1]).abs().mean()
    return float(videos.abs().mean() / motion) if float(motion) > 0 else math.inf


def to_unit_range(videos: torch.Tensor) -> torch.Tensor:
    """Map model-space videos to [0, 1] with one fixed affine map: ``clamp(x / (2 R) + 0.5, 0, 1)``.

    ``R`` = :data:`DISPLAY_RANGE`. The same map for every set keeps their metrics comparable.

    >>> to_unit_range(torch.tensor([-2.0, 0.0, 1.0, 9.0])).tolist()
    [0.0, 0.5, 0.75, 1.0]
    """
    return (videos / (2 * DISPLAY_RANGE) + 0.5).clamp(0.0, 1.0)
