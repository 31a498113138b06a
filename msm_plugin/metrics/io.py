"""Reading sets of videos from disk: video files, GIFs, folders of frames and tensor files.

Everything comes back as float32 ``[F, C, H, W]`` in [0, 1] per video. File frames are
RGB (grey is repeated, alpha dropped); tensor files keep their channel count.

- ``.mp4 .avi .mov .mkv .webm .m4v``: decord when importable, else imageio (ffmpeg); decord
  also hands over to imageio when it fails on a file (it cannot decode some frame sizes,
  e.g. 16x16).
- ``.gif``: imageio.
- a folder holding only images (``.png .jpg .jpeg .bmp .tif .tiff .webp``): one video, frames in
  natural order (``frame2`` before ``frame10``).
- ``.pt .pth .npy``: a tensor ``[N, F, C, H, W]`` (or one video ``[F, C, H, W]``); floats must
  already be in [0, 1], ``uint8`` is divided by 255.

:func:`load_videos` reads a file or a folder of such items into a :class:`VideoSet`: an item
that cannot be read, has fewer than 2 frames or a shape other than the set's most common
one is recorded in ``errors`` and the others are still returned.
"""

from __future__ import annotations

import os
import re
import sys
from collections import Counter
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch

__all__ = [
    "IMAGE_SUFFIXES",
    "TENSOR_SUFFIXES",
    "VIDEO_SUFFIXES",
    "VideoSet",
    "load_videos",
    "read_frame_folder",
    "read_tensor_file",
    "read_video",
]

VIDEO_SUFFIXES = frozenset({".mp4", ".avi", ".mov", ".mkv", ".webm", ".m4v", ".gif"})
IMAGE_SUFFIXES = frozenset({".png", ".jpg", ".jpeg", ".bmp", ".tif", ".tiff", ".webp"})
TENSOR_SUFFIXES = frozenset({".pt", ".pth", ".npy"})
_BACKENDS = ("auto", "decord", "imageio")
# Decoders and VAEs overshoot [0, 1] slightly; only a different convention is an error.
_RANGE_SLACK = 0.05


def _to_unit_frames(frames: np.ndarray, source: str) -> np.ndarray:
    """uint8/uint16 ``[F, H, W]`` or ``[F, H, W, C]`` frames -> float32 RGB ``[F, 3, H, W]``."""
    if frames.ndim == 3:
        frames = frames[..., None]
    if frames.ndim != 4 or frames.shape[-1] not in (1, 2, 3, 4):
        raise ValueError(f"expected frames [F, H, W] or [F, H, W, C] from {source}, got shape {frames.shape}")
    if frames.shape[-1] in (2, 4):  # grey+alpha or RGBA: transparency is not a colour
        frames = frames[..., :-1]
    if frames.shape[-1] == 1:
        frames = np.repeat(frames, 3, axis=-1)
    if np.issubdtype(frames.dtype, np.integer):
        scale = float(np.iinfo(frames.dtype).max)
    else:
        scale = 1.0
    return np.ascontiguousarray(frames.transpose(0, 3, 1, 2), dtype=np.float32) / np.float32(scale)


@contextmanager
def _native_stderr_silenced():
    """Point file descriptor 2 at the null device for the duration of the block.

    decord's C++ logger and FFmpeg's libav write straight to descriptor 2 (``moov atom not
    found``, ``video_reader.cc:83: ERROR opening``), around Python's ``sys.stderr``; what they
    say comes back in the raised error, which the caller records.
    """
    sys.stderr.flush()
    try:
        saved = os.dup(2)
    except OSError:  # no descriptor 2 (a detached process): nothing can reach a terminal anyway
        yield
        return
    try:
        with open(os.devnull, "wb") as devnull:
            os.dup2(devnull.fileno(), 2)
        yield
    finally:
        os.dup2(saved, 2)
        os.close(saved)


def _read_decord(path: Path) -> np.ndarray:
    import decord

    with _native_stderr_silenced():
        reader = decord.VideoReader(str(path), ctx=decord.cpu(0))
        return reader.get_batch(list(range(len(reader)))).asnumpy()


def _read_imageio(path: Path) -> np.ndarray:
    import imageio.v3 as iio

    with _native_stderr_silenced():
        return np.asarray(iio.imread(path, index=None))


def _decord_available() -> bool:
    try:
        import decord  # noqa: F401
    except ImportError:
        return False
    return True


def _first_line(error: Exception) -> str:
    text = str(error).strip().splitlines()
    return f"{type(error).__name__}: {text[0] if text else ''}"


def read_video(path, *, backend: str = "auto") -> np.ndarray:
    """Read one video file (see the module docstring for formats) as ``[F, 3, H, W]`` in [0, 1].

    Args:
        path: a video file or GIF.
        backend: ``"auto"`` (decord if importable, imageio otherwise or when decord fails),
            ``"decord"`` or ``"imageio"``. GIFs are always read with imageio.

    Returns:
        float32 array ``[F, 3, H, W]``.

    Raises:
        ValueError: for an unknown backend, a missing or undecodable file, or an unknown suffix.
    """
    if backend not in _BACKENDS:
        raise ValueError(f"`backend` should be one of {_BACKENDS}, got {backend!r}")
    path = Path(path)
    if path.suffix.lower() not in VIDEO_SUFFIXES:
        raise ValueError(f"expected a video file ({', '.join(sorted(VIDEO_SUFFIXES))}), got {path}")
    if not path.is_file():
        raise ValueError(f"cannot read {path}: no such file")
    use_decord = path.suffix.lower() != ".gif" and (
        backend == "decord" or (backend == "auto" and _decord_available())
    )
    failures = []
    if use_decord:
        try:
            return _to_unit_frames(_read_decord(path), str(path))
        except Exception as error:  # decord raises bare RuntimeError/DECORDError subclasses
            if backend == "decord":
                raise ValueError(f"cannot decode {path} with decord ({_first_line(error)})") from error
            failures.append(f"decord: {_first_line(error)}")
    try:
        return _to_unit_frames(_read_imageio(path), str(path))
    except Exception as error:  # imageio raises OSError, ValueError or plugin-specific errors
        failures.append(f"imageio: {_first_line(error)}")
        raise ValueError(f"cannot decode {path} ({'; '.join(failures)})") from error


def _natural_key(path: Path) -> list:
    return [int(part) if part.isdigit() else part.lower() for part in re.split(r"(\d+)", path.name)]


def read_frame_folder(path) -> np.ndarray:
    """Read a folder of image files as one video ``[F, 3, H, W]`` in [0, 1], frames in natural order.

    Raises:
        ValueError: for a folder without images, an unreadable image, or frames of different sizes.
    """
    import imageio.v3 as iio

    path = Path(path)
    files = sorted((p for p in path.iterdir() if p.is_file() and p.suffix.lower() in IMAGE_SUFFIXES), key=_natural_key)
    if not files:
        raise ValueError(f"no image frames ({', '.join(sorted(IMAGE_SUFFIXES))}) in folder {path}")
    frames = []
    for file in files:
        try:
            frame = _to_unit_frames(np.asarray(iio.imread(file))[None], str(file))
        except Exception as error:  # imageio's errors vary by plugin
            raise ValueError(f"cannot read frame {file} ({_first_line(error)})") from error
        if frames and frame.shape[1:] != frames[0].shape[1:]:
            raise ValueError(
                f"frames of one video must share a size: {file.name} is {frame.shape[2]}x{frame.shape[3]}, "
                f"{files[0].name} is {frames[0].shape[2]}x{frames[0].shape[3]} (in {path})"
            )
        frames.append(frame)
    return np.concatenate(frames)


def read_tensor_file(path) -> np.ndarray:
    """Read a ``.pt``/``.pth``/``.npy`` tensor as float32 ``[N, F, C, H, W]``.

    ``torch.load`` runs with ``weights_only=True`` and ``np.load`` without pickles, so a file
    cannot execute code. A ``[F, C, H, W]`` tensor is one video; ``uint8`` is divided by 255.

    Raises:
        ValueError: for an unreadable file, a non-tensor content, a wrong rank or channel
            count, non-finite
            values or floats outside [0, 1] (beyond a 0.05 slack).
    """
    path = Path(path)
    try:
        if path.suffix.lower() == ".npy":
            data = np.load(path, allow_pickle=False)
        else:
            data = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as error:  # pickle, zip and NumPy format errors all mean "not a tensor file"
        raise ValueError(f"cannot read tensor file {path} ({_first_line(error)})") from error
    if isinstance(data, torch.Tensor):
        data = data.detach().cpu()
        data = data.float().numpy() if data.dtype in (torch.bfloat16, torch.float16) else data.numpy()
    if not isinstance(data, np.ndarray):
        raise ValueError(f"expected a single tensor [N, F, C, H, W] in {path}, got {type(data).__name__}")
    if data.ndim == 4:
        data = data[None]
    if data.ndim != 5:
        raise ValueError(f"expected a tensor [N, F, C, H, W] or [F, C, H, W] in {path}, got shape {data.shape}")
    if data.shape[2] not in (1, 3) or 0 in data.shape:
        raise ValueError(
            f"expected decoded videos [N, F, C, H, W] with C = 1 or 3 and no empty axis in {path}, "
            f"got shape {data.shape} (latents must be decoded first)"
        )
    if data.dtype == np.uint8:
        return data.astype(np.float32) / np.float32(255)
    if not np.issubdtype(data.dtype, np.floating):
        raise ValueError(f"expected float values in [0, 1] or uint8 in {path}, got dtype {data.dtype}")
    data = data.astype(np.float32)
    if not np.isfinite(data).all():
        raise ValueError(f"expected finite values in {path}, found NaN or inf")
    # A [-1, 1] or 0..255 float file would skew every metric without failing; stop it here.
    low, high = float(data.min()), float(data.max())
    if low < -_RANGE_SLACK or high > 1 + _RANGE_SLACK:
        raise ValueError(
            f"expected values in [0, 1] in {path}, got min {low:.3g} and max {high:.3g} "
            "(map [-1, 1] with (x + 1) / 2, 0..255 with x / 255)"
        )
    return data


@dataclass
class VideoSet:
    """Videos read from one path, with what could not be used.

    Attributes:
        videos: float32 array ``[N, F, C, H, W]`` in [0, 1], or ``None`` when nothing was readable.
        names: one name per video (file or folder name, ``file.pt[i]`` for tensor files).
        errors: item name -> reason it was left out.
    """

    videos: np.ndarray | None
    names: list[str] = field(default_factory=list)
    errors: dict[str, str] = field(default_factory=dict)


def _read_item(path: Path, backend: str) -> list[tuple[str, np.ndarray]]:
    if path.is_dir():
        return [(path.name, read_frame_folder(path))]
    suffix = path.suffix.lower()
    if suffix in TENSOR_SUFFIXES:
        batch = read_tensor_file(path)
        return [(f"{path.name}[{i}]", video) for i, video in enumerate(batch)]
    if suffix in VIDEO_SUFFIXES:
        return [(path.name, read_video(path, backend=backend))]
    raise ValueError(
        f"unsupported file {path.name}: expected a video ({', '.join(sorted(VIDEO_SUFFIXES))}), "
        f"a tensor ({', '.join(sorted(TENSOR_SUFFIXES))}) or a folder of frames"
    )


def _items(path: Path) -> list[Path]:
    """A folder's entries to read as separate videos, or the folder itself when it holds frames."""
    entries = sorted((p for p in path.iterdir() if not p.name.startswith(".")), key=_natural_key)
    if not entries:
        raise ValueError(f"folder {path} is empty: expected videos, tensor files or image frames")
    if all(p.is_file() and p.suffix.lower() in IMAGE_SUFFIXES for p in entries):
        return [path]
    return entries


def load_videos(path, *, backend: str = "auto") -> VideoSet:
    """Read every video under ``path`` (a file, a folder of frames, or a folder of items).

    Items that fail are recorded in ``errors`` (a bad file never stops the others). The set
    keeps the most common shape ``[F, C, H, W]``; items of another shape are recorded as
    errors, since the metrics compare videos of one size.

    Args:
        path: file or folder.
        backend: video decoder, see :func:`read_video`.

    Returns:
        A :class:`VideoSet`.

    Raises:
        ValueError: only for an unknown backend; a missing path or empty folder is an error entry.
    """
    if backend not in _BACKENDS:
        raise ValueError(f"`backend` should be one of {_BACKENDS}, got {backend!r}")
    path = Path(path)
    errors: dict[str, str] = {}
    if not path.exists():
        return VideoSet(None, [], {str(path): f"no such file or folder: {path}"})
    try:
        items = _items(path) if path.is_dir() else [path]
    except ValueError as error:
        return VideoSet(None, [], {str(path): str(error)})
    loaded: list[tuple[str, np.ndarray]] = []
    for item in items:
        try:
            videos = _read_item(item, backend)
        except ValueError as error:
            errors[item.name] = str(error)
            continue
        for name, video in videos:
            if video.shape[0] < 2:
                errors[name] = f"expected at least 2 frames to measure motion, got {video.shape[0]}"
            else:
                loaded.append((name, video))
    if not loaded:
        return VideoSet(None, [], errors)
    counts = Counter(video.shape for _, video in loaded)
    top = max(counts.values())
    # Ties go to the shape met first, so the choice follows the (sorted) reading order.
    common = next(video.shape for _, video in loaded if counts[video.shape] == top)
    kept = []
    for name, video in loaded:
        if video.shape == common:
            kept.append((name, video))
        else:
            errors[name] = (
                f"shape [F, C, H, W] = {list(video.shape)} differs from the set's most common "
                f"{list(common)} (mixed lengths or resolutions)"
            )
    videos = np.stack([video for _, video in kept])
    return VideoSet(videos, [name for name, _ in kept], errors)
