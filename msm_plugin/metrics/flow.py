"""Dense optical flow, warping along it, and flow statistics measured along the motion.

A flow estimator maps two batches of frames ``[P, C, H, W]`` in [0, 1] to the flow from the
first to the second, ``[P, H, W, 2]`` in pixels (``[..., 0]`` along width x, ``[..., 1]``
along height y). Two are provided:

- :func:`farneback_flow` (default, weight-free): OpenCV Farneback on grey frames quantised to
  8 bits as OpenCV requires. Identical grey frames get an exactly zero flow: nothing can be
  inferred from them, and the border extrapolation would otherwise invent a few hundredths
  of a pixel along the image edges.
- :class:`NetworkFlow`: a user's local flow network (RAFT as VBench uses it, exported to a
  file; see :func:`load_flow_network`). Nothing is downloaded.

Per frame pair of a video, from the flow ``u[f]`` (frame ``f`` to ``f + 1``):

- flow magnitude ``m[f] = mean_p ||u[f](p)||``,
- flow peak ``k[f]`` = mean of the largest 5 % of ``||u[f](p)||`` (the moving object's speed
  when it covers at least 5 % of the frame; VBench's dynamic-degree statistic),
- flow acceleration along the motion ``a[f] = mean_p ||u[f+1](p + u[f](p)) - u[f](p)||`` over
  the pixels whose displaced position stays inside the frame: the change of velocity of the
  point that was at ``p``, 0 for constant velocity. (Differencing ``u[f+1](p) - u[f](p)`` at
  fixed pixels instead sees a moving object's edges as acceleration.)
"""

from __future__ import annotations

from functools import lru_cache

import cv2
import numpy as np
import torch

from ._checks import as_videos
from ._load import load_network

__all__ = [
    "PEAK_SHARE",
    "NetworkFlow",
    "as_flow_estimator",
    "farneback_flow",
    "flow_statistics",
    "load_flow_network",
    "optical_flow",
    "pair_statistics",
    "peak_magnitude",
    "to_uint8",
    "warp",
]

# Farneback settings: 3 pyramid levels halving each time, 15 px averaging window, 5-pixel
# polynomial neighbourhood. Checked on textures translated by 0.5 to 4 px on 16 to 128 px
# frames: the recovered displacement is within 0.05 px away from the borders.
_FARNEBACK = dict(pyr_scale=0.5, levels=3, winsize=15, iterations=3, poly_n=5, poly_sigma=1.2, flags=0)

PEAK_SHARE = 0.05


def to_uint8(frames: np.ndarray) -> np.ndarray:
    """``[..., C, H, W]`` in [0, 1] -> uint8 ``[..., C, H, W]`` (rounded, values outside [0, 1] clipped)."""
    return np.rint(np.clip(frames, 0.0, 1.0) * 255.0).astype(np.uint8)


def _grey_uint8(frames: np.ndarray) -> np.ndarray:
    """``[P, C, H, W]`` in [0, 1] -> ``[P, H, W]`` uint8."""
    return to_uint8(frames.mean(axis=1))


def farneback_flow(first: np.ndarray, second: np.ndarray) -> np.ndarray:
    """Farneback flow from each frame of ``first`` to the same frame of ``second``.

    Args:
        first: float array ``[P, C, H, W]`` in [0, 1].
        second: float array ``[P, C, H, W]``.

    Returns:
        float32 array ``[P, H, W, 2]`` (x, y) in pixels.

    >>> farneback_flow(np.zeros((1, 1, 8, 8)), np.zeros((1, 1, 8, 8))).shape
    (1, 8, 8, 2)
    """
    grey_a, grey_b = _grey_uint8(first), _grey_uint8(second)
    out = np.zeros(grey_a.shape + (2,), np.float32)
    for i, (a, b) in enumerate(zip(grey_a, grey_b)):
        if not np.array_equal(a, b):
            out[i] = cv2.calcOpticalFlowFarneback(a, b, None, **_FARNEBACK)
    return out


class NetworkFlow:
    """A flow network as a flow estimator: ``module(first, second) -> [P, 2, H, W]``.

    The module takes two float32 CPU tensors ``[P, 3, H, W]`` in [0, 1] (grey videos are
    repeated to 3 channels) and returns the flow from ``first`` to ``second`` in pixels,
    channel 0 along x; any input normalisation, padding or refinement iterations are the
    module's own business (the README shows a RAFT wrapper that does them).

    Args:
        module: the network (``torch.nn.Module``, a loaded ``torch.export`` program's module,
            a TorchScript module), called under ``torch.no_grad()``.
        batch_size: frame pairs per call. 1 by default: an exported RAFT is specialised to
            the batch size it was exported with (its correlation pyramid reshapes by it).
    """

    def __init__(self, module, *, batch_size: int = 1):
        if not callable(module):
            raise TypeError(f"expected a callable flow network, got {type(module).__name__}")
        if isinstance(batch_size, bool) or not isinstance(batch_size, int) or batch_size < 1:
            raise ValueError(f"`batch_size` should be a positive int, got {batch_size!r}")
        self.module = module
        self.batch_size = batch_size

    def __call__(self, first: np.ndarray, second: np.ndarray) -> np.ndarray:
        if first.shape[1] == 1:
            first, second = np.repeat(first, 3, axis=1), np.repeat(second, 3, axis=1)
        pairs, _, height, width = first.shape
        chunks = []
        with torch.no_grad():
            for start in range(0, pairs, self.batch_size):
                a = torch.from_numpy(np.ascontiguousarray(first[start : start + self.batch_size], np.float32))
                b = torch.from_numpy(np.ascontiguousarray(second[start : start + self.batch_size], np.float32))
                try:
                    out = self.module(a, b)
                except Exception as error:  # a user network can raise anything; say which input broke it
                    raise ValueError(
                        f"the flow network failed on frames of shape {tuple(a.shape)}: {type(error).__name__}: {error}"
                    ) from error
                if isinstance(out, (list, tuple)) and out:  # RAFT returns every refinement; keep the last
                    out = out[-1]
                expected = (a.shape[0], 2, height, width)
                if not isinstance(out, torch.Tensor) or tuple(out.shape) != expected:
                    got = tuple(out.shape) if isinstance(out, torch.Tensor) else type(out).__name__
                    raise ValueError(f"expected the flow network to return a tensor {expected}, got {got}")
                chunks.append(out.detach().to("cpu", torch.float32).permute(0, 2, 3, 1).numpy())
        flow = np.concatenate(chunks)
        if not np.isfinite(flow).all():
            raise ValueError("expected a finite flow from the flow network, found NaN or inf")
        return flow


def load_flow_network(path, *, batch_size: int = 1) -> NetworkFlow:
    """Load a flow network file: a ``torch.export`` program (``.pt2``) or TorchScript, on the CPU.

    No pickled code runs and nothing is downloaded. The README shows how to produce such a
    file from torchvision's RAFT and its weights.

    Raises:
        ValueError: when the file is missing or is neither format.
    """
    return NetworkFlow(load_network(path, what="flow network"), batch_size=batch_size)


@lru_cache(maxsize=8)
def _pixel_grid(height: int, width: int) -> tuple[np.ndarray, np.ndarray]:
    """Pixel x and y coordinates ``[H, W]`` (float32, read-only; cached: every warp of a video needs them)."""
    xs, ys = np.meshgrid(np.arange(width, dtype=np.float32), np.arange(height, dtype=np.float32))
    xs.setflags(write=False)
    ys.setflags(write=False)
    return xs, ys


def warp(image: np.ndarray, flow: np.ndarray) -> np.ndarray:
    """Sample ``image`` at ``p + flow(p)`` for every pixel ``p`` (bilinear, borders replicated).

    Args:
        image: float array ``[H, W]`` or ``[H, W, K]``.
        flow: float array ``[H, W, 2]``, (x, y) offsets in pixels.

    Returns:
        float32 array, the shape of ``image``.

    >>> ramp = np.tile(np.arange(4.0), (2, 1))
    >>> warp(ramp, np.full((2, 4, 2), [0.5, 0.0]))[0]
    array([0.5, 1.5, 2.5, 3. ], dtype=float32)
    """
    xs, ys = _pixel_grid(*flow.shape[:2])
    map_x = xs + flow[..., 0].astype(np.float32)
    map_y = ys + flow[..., 1].astype(np.float32)
    return cv2.remap(image.astype(np.float32), map_x, map_y, cv2.INTER_LINEAR, borderMode=cv2.BORDER_REPLICATE)


def as_flow_estimator(estimator):
    """``estimator``, or :func:`farneback_flow` for None; TypeError for anything not callable."""
    if estimator is None:
        return farneback_flow
    if not callable(estimator):
        raise TypeError(f"expected `flow` to be a flow estimator (callable), got {type(estimator).__name__}")
    return estimator


def optical_flow(videos, *, flow=None) -> np.ndarray:
    """Dense flow of every consecutive frame pair.

    Args:
        videos: ``[N, F, C, H, W]`` in [0, 1], ``F >= 2``.
        flow: flow estimator (default :func:`farneback_flow`).

    Returns:
        float32 array ``[N, F - 1, H, W, 2]``: displacement in pixels from frame ``f`` to ``f + 1``.

    >>> float(np.abs(optical_flow(np.zeros((1, 2, 1, 8, 8)))).max())
    0.0
    """
    videos = as_videos(videos)
    estimator = as_flow_estimator(flow)
    return np.stack([estimator(video[:-1], video[1:]) for video in videos])


def peak_magnitude(flows: np.ndarray, share: float = PEAK_SHARE) -> np.ndarray:
    """Mean of the largest ``share`` of flow magnitudes per field: ``[P, H, W, 2] -> [P]``.

    The count is ``max(1, floor(share * H * W))``, VBench's ``int(h * w * 0.05)`` (which is
    empty below 20 pixels; one pixel is kept here).

    >>> peak_magnitude(np.array([[[[3.0, 4.0]], [[0.0, 0.0]]]]), share=0.5)
    array([5.])
    """
    pairs, height, width = flows.shape[:3]
    norm = np.hypot(flows[..., 0], flows[..., 1]).reshape(pairs, -1).astype(np.float64)
    top = max(1, int(share * height * width))
    # partition is O(HW): the top-k set without a full sort.
    return np.partition(norm, norm.shape[1] - top, axis=1)[:, norm.shape[1] - top :].mean(axis=1)


def _acceleration_along_motion(current: np.ndarray, following: np.ndarray) -> float:
    height, width = current.shape[:2]
    xs, ys = _pixel_grid(height, width)
    x_next, y_next = xs + current[..., 0], ys + current[..., 1]
    inside = (x_next >= 0) & (x_next <= width - 1) & (y_next >= 0) & (y_next <= height - 1)
    if not inside.any():
        return 0.0
    change = warp(following, current).astype(np.float64) - current
    return float(np.hypot(change[..., 0], change[..., 1])[inside].mean())


def pair_statistics(flows: np.ndarray, *, peak_share: float = PEAK_SHARE) -> dict[str, np.ndarray]:
    """Magnitude, peak and acceleration along the motion of one video's consecutive flows.

    Args:
        flows: ``[F - 1, H, W, 2]`` flows of consecutive pairs.
        peak_share: share of the largest magnitudes averaged into the peak.

    Returns:
        float64 arrays ``magnitude [F - 1]``, ``peak [F - 1]``, ``acceleration [F - 2]``.
    """
    magnitude = np.hypot(flows[..., 0], flows[..., 1]).mean(axis=(1, 2), dtype=np.float64)
    acceleration = np.array(
        [_acceleration_along_motion(flows[f], flows[f + 1]) for f in range(len(flows) - 1)], np.float64
    )
    return {"magnitude": magnitude, "peak": peak_magnitude(flows, peak_share), "acceleration": acceleration}


def flow_statistics(videos, *, peak_share: float = PEAK_SHARE, flow=None) -> dict[str, np.ndarray]:
    """Per frame pair flow magnitude, peak and acceleration along the motion (module docstring).

    Args:
        videos: ``[N, F, C, H, W]`` in [0, 1], ``F >= 2``.
        peak_share: share of the largest magnitudes averaged into the peak, in (0, 1].
        flow: flow estimator (default :func:`farneback_flow`).

    Returns:
        dict of float64 arrays: ``magnitude`` ``[N, F - 1]``, ``peak`` ``[N, F - 1]`` and
        ``acceleration`` ``[N, F - 2]`` (empty when ``F == 2``), in pixels per frame (per
        frame squared for acceleration).

    >>> stats = flow_statistics(np.zeros((2, 3, 1, 8, 8)))
    >>> stats["magnitude"].shape, stats["acceleration"].shape
    ((2, 2), (2, 1))
    """
    if not 0 < peak_share <= 1:
        raise ValueError(f"`peak_share` should be in (0, 1], got {peak_share}")
    videos = as_videos(videos)
    estimator = as_flow_estimator(flow)
    per_video = [pair_statistics(estimator(video[:-1], video[1:]), peak_share=peak_share) for video in videos]
    return {key: np.stack([stats[key] for stats in per_video]) for key in ("magnitude", "peak", "acceleration")}
