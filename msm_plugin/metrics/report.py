"""All motion metrics in one flat dict, evaluation of video folders, and JSON/Markdown output.

:func:`motion_metrics` is the entry point for tensors (used by the toy demo);
:func:`evaluate` reads paths (used by ``msm-eval``), keeping unreadable items in ``errors``;
:func:`markdown_table` and :func:`write_results` turn its result into files.
"""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np

from ._checks import as_videos
from .energy import DEFAULT_STATIC_THRESHOLD, appearance_energy, ratio_of_means, static_share
from .features import appearance_features, extractor_features, motion_features
from .flow import dynamic_degree, flow_statistics
from .frechet import frechet_distance
from .io import load_videos
from .kinematics import acceleration_samples, speed_samples, wasserstein_1d
from .smoothness import smoothness_error

__all__ = ["METRICS", "evaluate", "markdown_table", "motion_metrics", "write_results"]

LOWER, CLOSER = "lower", "closer to reference"

#: key -> (meaning, which direction is better). Distances need a reference set.
METRICS: dict[str, tuple[str, str]] = {
    "motion_energy": ("mean_{n,f} mean|x[f+1] - x[f]| (also the mean speed)", CLOSER),
    "appearance_energy": ("mean_{n,f} mean|x[f]|", CLOSER),
    "energy_ratio": ("motion_energy / appearance_energy, the two sides of eq. 7", CLOSER),
    "static_fraction": ("share of videos with mean|x[f+1] - x[f]| below the static threshold", LOWER),
    "speed_std": ("std over frame pairs of v = mean|x[f+1] - x[f]|", CLOSER),
    "speed_p50": ("median of v", CLOSER),
    "speed_p90": ("90th percentile of v", CLOSER),
    "accel_mean": ("mean over frame triples of a = mean|x[f+2] - 2x[f+1] + x[f]|", CLOSER),
    "accel_p90": ("90th percentile of a", CLOSER),
    "smoothness_error": ("mean|x[f] - (x[f-1] + x[f+1])/2| / mean|x[f+1] - x[f]|, per video", LOWER),
    "flow_magnitude": ("mean Farneback flow magnitude, px/frame", CLOSER),
    "flow_peak": ("mean of the top 5% flow magnitudes per pair, px/frame", CLOSER),
    "flow_accel": ("mean ||u[f+1] - u[f]|| of flow fields, px/frame^2", CLOSER),
    "dynamic_degree": ("share of videos whose flow peak passes 6 px * min(H, W)/256 in >= 25% of pairs", CLOSER),
    "speed_w1": ("1-Wasserstein distance between speed distributions (v)", LOWER),
    "accel_w1": ("1-Wasserstein distance between acceleration distributions (a)", LOWER),
    "flow_w1": ("1-Wasserstein distance between per-pair flow magnitude distributions", LOWER),
    "motion_fd": ("Fréchet distance of pooled |D x|, |D^2 x| motion features", LOWER),
    "appearance_fd": ("Fréchet distance of pooled per-frame colour/contrast features", LOWER),
    "feature_fd": ("Fréchet distance of the user's extractor features (FVD style)", LOWER),
}
_NAN = float("nan")


def _quantile(values: np.ndarray, q: float) -> float:
    return float(np.quantile(values, q)) if values.size else _NAN


def _mean(values: np.ndarray) -> float:
    return float(values.mean()) if values.size else _NAN


def _measure(videos: np.ndarray, static_threshold: float) -> tuple[dict[str, float], dict[str, np.ndarray]]:
    """Per-set scalars and the samples/features that distances are computed from."""
    n, f, _, h, w = videos.shape
    speed = speed_samples(videos)
    appearance = appearance_energy(videos)
    flow = flow_statistics(videos)
    has_triples = f >= 3
    accel = acceleration_samples(videos) if has_triples else np.empty((n, 0))
    scalars = {
        "motion_energy": float(speed.mean()),
        "appearance_energy": float(appearance.mean()),
        "energy_ratio": ratio_of_means(speed, appearance),
        "static_fraction": static_share(speed, static_threshold),
        "speed_std": float(speed.std()),
        "speed_p50": _quantile(speed, 0.5),
        "speed_p90": _quantile(speed, 0.9),
        "accel_mean": _mean(accel),
        "accel_p90": _quantile(accel, 0.9),
        "smoothness_error": float(smoothness_error(videos).mean()) if has_triples else _NAN,
        "flow_magnitude": float(flow["magnitude"].mean()),
        "flow_peak": float(flow["peak"].mean()),
        "flow_accel": _mean(flow["acceleration"]),
        "dynamic_degree": dynamic_degree(flow["peak"], height=h, width=w),
    }
    samples = {"speed": speed, "accel": accel, "flow": flow["magnitude"]}
    return scalars, samples


def _feature_distance(videos: np.ndarray, reference: np.ndarray, extractor) -> float:
    if videos.shape[0] < 2 or reference.shape[0] < 2:
        return _NAN
    return frechet_distance(extractor_features(videos, extractor), extractor_features(reference, extractor))


def motion_metrics(
    videos,
    reference=None,
    *,
    feature_extractor=None,
    static_threshold: float = DEFAULT_STATIC_THRESHOLD,
    grid: int = 4,
) -> dict[str, float]:
    """Every weight-free motion metric of a video set, and distances to a reference set.

    Keys and directions are listed in :data:`METRICS` (formulas in the modules
    :mod:`.energy`, :mod:`.kinematics`, :mod:`.flow`, :mod:`.smoothness`, :mod:`.frechet`).
    Without ``reference`` the dict holds the per-set keys (``motion_energy`` ...
    ``dynamic_degree``). With it, it adds ``speed_w1``, ``accel_w1``, ``flow_w1``,
    ``motion_fd``, ``appearance_fd`` (``feature_fd`` too when ``feature_extractor`` is
    given) and the reference's own per-set values as ``reference_<key>``. Keys that need
    frame triples (``accel_*``, ``smoothness_error``, ``flow_accel``, ``accel_w1``,
    ``motion_fd``) are NaN when a set has ``F == 2``; Fréchet distances are NaN when a set has
    a single video (no covariance).

    Args:
        videos: generated videos ``[N, F, C, H, W]`` in [0, 1], ``F >= 2``.
        reference: optional reference videos ``[M, F', C, H', W']``: same channel count;
            length and resolution may differ (features are pooled).
        feature_extractor: optional callable ``[B, F, C, H, W] -> [B, D]`` (see
            :func:`~msm_plugin.metrics.features.extractor_features`); needs ``reference``
            with the same ``F, H, W`` if the network requires it.
        static_threshold: mean absolute frame change below which a video counts as static.
        grid: cells per side of the pooled Fréchet features, lowered to the smallest frame
            side when frames are smaller.

    Returns:
        A flat dict of Python floats.

    >>> x = np.random.default_rng(0).random((4, 3, 3, 8, 8))
    >>> m = motion_metrics(x, reference=x)
    >>> m["motion_fd"], m["speed_w1"], m["reference_motion_energy"] == m["motion_energy"]
    (0.0, 0.0, True)
    """
    if not static_threshold > 0:
        raise ValueError(f"`static_threshold` should be positive, got {static_threshold}")
    if isinstance(grid, bool) or not isinstance(grid, int) or grid < 1:
        raise ValueError(f"`grid` should be a positive int, got {grid!r}")
    if feature_extractor is not None and reference is None:
        raise ValueError("`feature_extractor` needs a `reference` set to compare against, got reference=None")
    videos = as_videos(videos)
    if reference is not None:
        reference = as_videos(reference, name="reference")
        if reference.shape[2] != videos.shape[2]:
            raise ValueError(
                f"expected reference videos with the generated videos' C = {videos.shape[2]} channels, "
                f"got reference shape {tuple(reference.shape)}"
            )
    results, samples = _measure(videos, static_threshold)
    if reference is None:
        return results
    ref_results, ref_samples = _measure(reference, static_threshold)
    grid = min(grid, *videos.shape[-2:], *reference.shape[-2:])
    triples = videos.shape[1] >= 3 and reference.shape[1] >= 3
    sets = videos.shape[0] >= 2 and reference.shape[0] >= 2
    results["speed_w1"] = wasserstein_1d(samples["speed"], ref_samples["speed"])
    results["accel_w1"] = wasserstein_1d(samples["accel"], ref_samples["accel"]) if triples else _NAN
    results["flow_w1"] = wasserstein_1d(samples["flow"], ref_samples["flow"])
    results["motion_fd"] = (
        frechet_distance(motion_features(videos, grid=grid), motion_features(reference, grid=grid))
        if triples and sets
        else _NAN
    )
    results["appearance_fd"] = frechet_distance(
        appearance_features(videos, grid=grid), appearance_features(reference, grid=grid)
    )
    if feature_extractor is not None:
        results["feature_fd"] = _feature_distance(videos, reference, feature_extractor)
    results.update({f"reference_{key}": value for key, value in ref_results.items()})
    return results


def _finite_or_none(value: float) -> float | None:
    return value if math.isfinite(value) else None


def _describe(path, loaded) -> dict:
    return {
        "path": str(path),
        "num_videos": 0 if loaded.videos is None else int(loaded.videos.shape[0]),
        "shape": None if loaded.videos is None else list(loaded.videos.shape[1:]),
        "videos": loaded.names,
    }


def _labelled(side: str, path, errors: dict) -> dict:
    """``"<side>/<item>"`` for an item inside ``path``, plain ``side`` for ``path`` itself (missing, empty)."""
    return {(side if name == str(Path(path)) else f"{side}/{name}"): message for name, message in errors.items()}


def evaluate(
    generated,
    reference=None,
    *,
    backend: str = "auto",
    feature_extractor=None,
    static_threshold: float = DEFAULT_STATIC_THRESHOLD,
) -> dict:
    """Read videos from paths and compute :func:`motion_metrics`, keeping going past bad items.

    Args:
        generated: file or folder of generated videos (see :func:`~msm_plugin.metrics.io.load_videos`).
        reference: optional file or folder of reference videos.
        backend: video decoder (``"auto"``, ``"decord"``, ``"imageio"``).
        feature_extractor: optional callable for ``feature_fd`` (needs ``reference``).
        static_threshold: see :func:`motion_metrics`.

    Returns:
        A JSON-ready dict: ``generated`` / ``reference`` (path, ``num_videos``, ``shape``,
        ``videos``), ``metrics`` (generated values and distances; NaN written as None),
        ``reference_metrics``, ``directions`` (key -> "lower" or
        "closer to reference") and ``errors`` ("generated/<item>" or "reference/<item>" ->
        reason; plain "generated" / "reference" when the path itself cannot be read). ``metrics`` is empty when no generated video could be read.
    """
    gen_set = load_videos(generated, backend=backend)
    errors = _labelled("generated", generated, gen_set.errors)
    result = {"generated": _describe(generated, gen_set), "reference": None}
    ref_videos = None
    if reference is not None:
        ref_set = load_videos(reference, backend=backend)
        errors.update(_labelled("reference", reference, ref_set.errors))
        result["reference"] = _describe(reference, ref_set)
        ref_videos = ref_set.videos
    metrics: dict[str, float] = {}
    if gen_set.videos is not None:
        try:
            metrics = motion_metrics(gen_set.videos, ref_videos, static_threshold=static_threshold)
        except ValueError as error:
            # A reference that cannot be compared (another channel count) must not cost the
            # generated set its own scores.
            if ref_videos is None:
                raise
            errors["reference"] = f"not compared: {error}"
            ref_videos = None
            metrics = motion_metrics(gen_set.videos, static_threshold=static_threshold)
    if feature_extractor is not None and ref_videos is not None:
        try:
            metrics["feature_fd"] = _feature_distance(gen_set.videos, ref_videos, feature_extractor)
        except ValueError as error:  # the user's network rejected the input: keep the other scores
            errors["feature_fd"] = str(error)
    own = {key: _finite_or_none(value) for key, value in metrics.items() if not key.startswith("reference_")}
    ref_own = {
        key.removeprefix("reference_"): _finite_or_none(value)
        for key, value in metrics.items()
        if key.startswith("reference_")
    }
    result.update(
        metrics=own,
        reference_metrics=ref_own,
        directions={key: METRICS[key][1] for key in own},
        errors=errors,
    )
    return result


def _format(value) -> str:
    if value is None:
        return "n/a"
    return f"{value:.4g}"


def markdown_table(result: dict) -> str:
    """A Markdown table of an :func:`evaluate` result: metric, generated, reference, better, meaning.

    >>> print(markdown_table({"metrics": {"motion_energy": 0.01}, "reference_metrics": {}}).splitlines()[2])
    | motion_energy | 0.01 | - | closer to reference | mean_{n,f} mean\\|x[f+1] - x[f]\\| (also the mean speed) |
    """
    rows = [
        "| metric | generated | reference | better | meaning |",
        "|---|---|---|---|---|",
    ]
    reference = result.get("reference_metrics", {})
    for key, value in result["metrics"].items():
        meaning, direction = METRICS[key]
        ref = _format(reference[key]) if key in reference else "-"
        rows.append(f"| {key} | {_format(value)} | {ref} | {direction} | {meaning.replace('|', chr(92) + '|')} |")
    errors = result.get("errors", {})
    if errors:
        rows += ["", f"{len(errors)} item(s) not scored:", ""]
        rows += [f"- `{name}`: {message}" for name, message in errors.items()]
    return "\n".join(rows) + "\n"


def write_results(result: dict, out) -> tuple[Path, Path]:
    """Write ``result`` as JSON to ``out`` and its Markdown table next to it (``.md``).

    Returns:
        The JSON and Markdown paths.
    """
    out = Path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    markdown = out.with_suffix(".md") if out.suffix != ".md" else out.with_name(out.name + ".md")
    out.write_text(json.dumps(result, indent=2, allow_nan=False) + "\n")
    markdown.write_text(markdown_table(result))
    return out, markdown
