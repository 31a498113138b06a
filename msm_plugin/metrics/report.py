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
from .flow import as_flow_estimator, pair_statistics, peak_magnitude
from .frechet import frechet_distance
from .fvmd import CLIP_FRAMES, video_clip_features
from .io import load_videos
from .kinematics import acceleration_samples, speed_samples, wasserstein_1d
from .smoothness import interpolate_video, skip_flows, video_smoothness_error
from .vbench import (
    sample_interval,
    video_is_dynamic,
    video_is_static,
    video_motion_smoothness,
    video_temporal_flickering,
)

__all__ = [
    "METRICS",
    "REPORT_MARK",
    "evaluate",
    "foreign_report",
    "markdown_report",
    "markdown_table",
    "motion_metrics",
    "report_paths",
    "write_results",
]

LOWER, HIGHER, CLOSER = "lower", "higher", "closer to reference"

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
    "smoothness_error": (
        "mean|x[f] - x_hat[f]| / mean|x[f+1] - x[f]|, x_hat interpolated from f-1, f+1 along the flow, per video",
        LOWER,
    ),
    "flow_magnitude": ("mean flow magnitude, px/frame", CLOSER),
    "flow_peak": ("mean of the top 5% flow magnitudes per pair, px/frame", CLOSER),
    "flow_accel": ("mean ||u[f+1](p + u[f](p)) - u[f](p)||, flow change along the motion, px/frame^2", CLOSER),
    "dynamic_degree_proxy": ("VBench dynamic_degree rule on the flow: share of videos that move", CLOSER),
    "static_share_proxy": ("share of videos VBench's static filter keeps (on the flow)", CLOSER),
    "temporal_flickering_proxy": (
        "VBench temporal_flickering (255 - mean 8-bit |x[f+1] - x[f]|)/255 over static videos",
        HIGHER,
    ),
    "motion_smoothness_proxy": ("VBench motion_smoothness with flow interpolation in place of AMT", HIGHER),
    "speed_w1": ("1-Wasserstein distance between speed distributions (v)", LOWER),
    "accel_w1": ("1-Wasserstein distance between acceleration distributions (a)", LOWER),
    "flow_w1": ("1-Wasserstein distance between per-pair flow magnitude distributions", LOWER),
    "motion_fd": ("Fréchet distance of pooled |D x|, |D^2 x| motion features", LOWER),
    "appearance_fd": ("Fréchet distance of pooled per-frame colour/contrast features", LOWER),
    "fvmd_proxy": ("FVMD: Fréchet distance of flow-tracked grid points' velocity/acceleration histograms", LOWER),
    "feature_fd": ("Fréchet distance of the user's extractor features (FVD style)", LOWER),
}
_NAN = float("nan")


def _quantile(values: np.ndarray, q: float) -> float:
    return float(np.quantile(values, q)) if values.size else _NAN


def _mean(values: np.ndarray) -> float:
    return float(values.mean()) if values.size else _NAN


def _nanmean(values) -> float:
    values = np.asarray(values, dtype=np.float64)
    values = values[np.isfinite(values)]
    return float(values.mean()) if values.size else _NAN


def _flow_pass(video: np.ndarray, estimator, interval: int, clip: int) -> dict:
    """Every flow-based number of one video ``[F, C, H, W]``, each flow field estimated once."""
    frames, _, height, width = video.shape
    consecutive = estimator(video[:-1], video[1:])
    stats = pair_statistics(consecutive)
    if interval == 1:
        sampled_peaks, sampled = stats["peak"], frames
    else:
        picked = video[::interval]
        sampled_peaks = peak_magnitude(estimator(picked[:-1], picked[1:])) if len(picked) > 1 else np.zeros(0)
        sampled = len(picked)
    ends = peak_magnitude(estimator(video[[0, -1]], video[[-1, 0]]))
    static = video_is_static(stats["peak"], ends, height=height, width=width)
    out = {
        **stats,
        "dynamic": float(video_is_dynamic(sampled_peaks, frames=sampled, height=height, width=width)),
        "static": float(static),
        "flickering": video_temporal_flickering(video) if static else _NAN,
        "smoothness": _NAN,
        "vbench_smoothness": _NAN,
        "fvmd": video_clip_features(consecutive, clip) if clip else None,
    }
    if frames >= 3:
        predictions = interpolate_video(video, skip_flows(video, estimator))
        out["smoothness"] = video_smoothness_error(video, predictions)
        out["vbench_smoothness"] = video_motion_smoothness(video, predictions)
    return out


def _measure(
    videos: np.ndarray, static_threshold: float, estimator, interval: int, clip: int
) -> tuple[dict[str, float], dict[str, np.ndarray]]:
    """Per-set scalars and the samples/features that distances are computed from."""
    n, f = videos.shape[:2]
    speed = speed_samples(videos)
    appearance = appearance_energy(videos)
    has_triples = f >= 3
    accel = acceleration_samples(videos) if has_triples else np.empty((n, 0))
    per_video = [_flow_pass(video, estimator, interval, clip) for video in videos]

    def gather(key):
        return np.array([v[key] for v in per_video])

    magnitude = gather("magnitude")
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
        "smoothness_error": _mean(gather("smoothness")) if has_triples else _NAN,
        "flow_magnitude": float(magnitude.mean()),
        "flow_peak": float(gather("peak").mean()),
        "flow_accel": _mean(gather("acceleration")),
        "dynamic_degree_proxy": float(gather("dynamic").mean()),
        "static_share_proxy": float(gather("static").mean()),
        "temporal_flickering_proxy": _nanmean(gather("flickering")),
        "motion_smoothness_proxy": _mean(gather("vbench_smoothness")) if has_triples else _NAN,
    }
    samples = {"speed": speed, "accel": accel, "flow": magnitude}
    if clip:
        samples["fvmd"] = np.concatenate([v["fvmd"] for v in per_video])
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
    flow=None,
    fps: float | None = None,
) -> dict[str, float]:
    """Every weight-free motion metric of a video set, and distances to a reference set.

    Keys and directions are listed in :data:`METRICS` (formulas in the modules
    :mod:`.energy`, :mod:`.kinematics`, :mod:`.flow`, :mod:`.smoothness`, :mod:`.vbench`,
    :mod:`.fvmd`, :mod:`.frechet`). Without ``reference`` the dict holds the per-set keys
    (``motion_energy`` ... ``motion_smoothness_proxy``). With it, it adds ``speed_w1``,
    ``accel_w1``, ``flow_w1``, ``motion_fd``, ``appearance_fd``, ``fvmd_proxy``
    (``feature_fd`` too when ``feature_extractor`` is given) and the reference's own per-set
    values as ``reference_<key>``. Every flow field is estimated once per video and shared.
    Keys that need frame triples (``accel_*``, ``smoothness_error``, ``flow_accel``,
    ``motion_smoothness_proxy``, ``accel_w1``, ``motion_fd``) are NaN when a set has
    ``F == 2``; ``temporal_flickering_proxy`` is NaN when no video passes VBench's static
    filter; Fréchet distances are NaN when a set has a single video (no covariance);
    ``fvmd_proxy`` uses clips of ``min(16, F, F')`` frames and is NaN below 4 frames or with
    fewer than 2 clips per set.

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
        flow: flow estimator for every flow-based key (default OpenCV Farneback; a user's
            RAFT through :func:`~msm_plugin.metrics.flow.load_flow_network`).
        fps: frame rate of both sets, for VBench's dynamic-degree frame sampling (None:
            every frame, as VBench does for image folders).

    Returns:
        A flat dict of Python floats.

    >>> x = np.random.default_rng(0).random((4, 3, 3, 8, 8))
    >>> m = motion_metrics(x, reference=x)
    >>> m["motion_fd"], m["speed_w1"], m["reference_motion_energy"] == m["motion_energy"]
    (0.0, 0.0, True)
    """
    return _score_sets(
        videos, reference, [], feature_extractor=feature_extractor, static_threshold=static_threshold, grid=grid, flow=flow, fps=fps
    )[0]


def _score_sets(
    videos,
    reference,
    index_groups: list,
    *,
    feature_extractor=None,
    static_threshold: float = DEFAULT_STATIC_THRESHOLD,
    grid: int = 4,
    flow=None,
    fps: float | None = None,
) -> tuple[dict[str, float], list[dict[str, float]]]:
    """:func:`motion_metrics` of the whole set and of each group ``videos[index]`` (index arrays in
    ``index_groups``), the reference measured once for all of them."""
    if not static_threshold > 0:
        raise ValueError(f"`static_threshold` should be positive, got {static_threshold}")
    if isinstance(grid, bool) or not isinstance(grid, int) or grid < 1:
        raise ValueError(f"`grid` should be a positive int, got {grid!r}")
    if feature_extractor is not None and reference is None:
        raise ValueError("`feature_extractor` needs a `reference` set to compare against, got reference=None")
    interval = sample_interval(fps)
    estimator = as_flow_estimator(flow)
    videos = as_videos(videos)
    if reference is not None:
        reference = as_videos(reference, name="reference")
        if reference.shape[2] != videos.shape[2]:
            raise ValueError(
                f"expected reference videos with the generated videos' C = {videos.shape[2]} channels, "
                f"got reference shape {tuple(reference.shape)}"
            )
    frames = videos.shape[1] if reference is None else min(videos.shape[1], reference.shape[1])
    clip = min(CLIP_FRAMES, frames) if reference is not None and frames >= 4 else 0
    subsets = [videos] + [videos[index] for index in index_groups]
    measured = [_measure(subset, static_threshold, estimator, interval, clip) for subset in subsets]
    if reference is None:
        scores = [results for results, _ in measured]
        return scores[0], scores[1:]
    ref_results, ref_samples = _measure(reference, static_threshold, estimator, interval, clip)
    grid = min(grid, *videos.shape[-2:], *reference.shape[-2:])
    triples = videos.shape[1] >= 3 and reference.shape[1] >= 3
    scores = []
    for subset, (results, samples) in zip(subsets, measured):
        sets = subset.shape[0] >= 2 and reference.shape[0] >= 2
        results["speed_w1"] = wasserstein_1d(samples["speed"], ref_samples["speed"])
        results["accel_w1"] = wasserstein_1d(samples["accel"], ref_samples["accel"]) if triples else _NAN
        results["flow_w1"] = wasserstein_1d(samples["flow"], ref_samples["flow"])
        results["motion_fd"] = (
            frechet_distance(motion_features(subset, grid=grid), motion_features(reference, grid=grid))
            if triples and sets
            else _NAN
        )
        results["appearance_fd"] = frechet_distance(
            appearance_features(subset, grid=grid), appearance_features(reference, grid=grid)
        )
        enough_clips = clip and len(samples["fvmd"]) >= 2 and len(ref_samples["fvmd"]) >= 2
        results["fvmd_proxy"] = frechet_distance(samples["fvmd"], ref_samples["fvmd"]) if enough_clips else _NAN
        if feature_extractor is not None:
            results["feature_fd"] = _feature_distance(subset, reference, feature_extractor)
        results.update({f"reference_{key}": value for key, value in ref_results.items()})
        scores.append(results)
    return scores[0], scores[1:]


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


def _own(metrics: dict) -> dict:
    """The generated set's values (NaN as None), without the reference's ``reference_*`` copies."""
    return {key: _finite_or_none(value) for key, value in metrics.items() if not key.startswith("reference_")}


def _index_groups(names: list[str], groups, path) -> tuple[list[np.ndarray], list[str]]:
    """Index arrays and names of the groups: ``groups`` equal consecutive groups (an int), or one
    group per file (``"files"``; a tensor file's videos are named ``file.pt[i]``)."""
    total = len(names)
    if groups == "files":
        keys = [name.rsplit("[", 1)[0] if name.endswith("]") else name for name in names]
        order = list(dict.fromkeys(keys))
        return [np.array([i for i, key in enumerate(keys) if key == file]) for file in order], order
    if isinstance(groups, bool) or not isinstance(groups, int) or groups < 1:
        raise ValueError(f"`groups` should be a positive int or 'files', got {groups!r}")
    if total % groups:
        raise ValueError(
            f"--groups {groups} needs a number of generated videos divisible by {groups}, got {total} videos in {path}"
        )
    size = total // groups
    return [np.arange(g * size, (g + 1) * size) for g in range(groups)], [
        f"videos {g * size}-{(g + 1) * size - 1}" for g in range(groups)
    ]


def _summary(per_group: list[dict]) -> dict:
    """Mean and sample standard deviation over the groups of each metric (finite values only)."""
    summary = {}
    for key in per_group[0] if per_group else []:
        values = np.array([group[key] for group in per_group if group.get(key) is not None], dtype=np.float64)
        summary[key] = {
            "mean": float(values.mean()) if values.size else None,
            "std": float(values.std(ddof=1)) if values.size >= 2 else None,
            "groups": int(values.size),
        }
    return summary


def evaluate(
    generated,
    reference=None,
    *,
    backend: str = "auto",
    feature_extractor=None,
    static_threshold: float = DEFAULT_STATIC_THRESHOLD,
    flow=None,
    fps: float | None = None,
    groups=None,
) -> dict:
    """Read videos from paths and compute :func:`motion_metrics`, keeping going past bad items.

    Args:
        generated: file or folder of generated videos (see :func:`~msm_plugin.metrics.io.load_videos`).
        reference: optional file or folder of reference videos.
        backend: video decoder (``"auto"``, ``"decord"``, ``"imageio"``).
        feature_extractor: optional callable for ``feature_fd`` (needs ``reference``).
        static_threshold: see :func:`motion_metrics`.
        flow: flow estimator, see :func:`motion_metrics`.
        fps: frame rate for VBench's frame sampling, see :func:`motion_metrics`.
        groups: None (the generated videos are scored as one pooled set), an int K (also score
            K equal consecutive groups, e.g. the seeds of ``msm-demo``'s ``tensors/<arm>.pt``)
            or ``"files"`` (also score each file of a folder as a group). Set-level values
            (shares, Wasserstein and Fréchet distances) of a pooled set are not the mean of its
            groups' values.

    Returns:
        A JSON-ready dict: ``generated`` / ``reference`` (path, ``num_videos``, ``shape``,
        ``videos``), ``metrics`` (generated values and distances of the pooled set; NaN written
        as None), ``reference_metrics``, ``directions`` (key -> "lower" or "closer to
        reference"), ``groups`` (per group: ``name``, ``num_videos``, ``metrics``; ``[]``
        without ``groups``), ``group_summary`` (key -> ``mean``, ``std`` over groups) and
        ``errors`` ("generated/<item>" or "reference/<item>" -> reason; plain "generated" /
        "reference" when the path itself cannot be read). ``metrics`` is empty when no
        generated video could be read.

    Raises:
        ValueError: bad options, or ``groups`` that do not divide the generated videos.
    """
    sample_interval(fps)  # bad options fail before any video is decoded
    as_flow_estimator(flow)
    if groups is not None and groups != "files":
        _index_groups([], groups, generated)  # a bad K fails before any video is decoded
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
    per_group: list[dict[str, float]] = []
    index_groups, group_names = [], []
    if gen_set.videos is not None and groups is not None:
        index_groups, group_names = _index_groups(gen_set.names, groups, generated)
    options = dict(static_threshold=static_threshold, flow=flow, fps=fps)
    if gen_set.videos is not None:
        try:
            metrics, per_group = _score_sets(gen_set.videos, ref_videos, index_groups, **options)
        except ValueError as error:
            # A reference that cannot be compared (another channel count) must not cost the
            # generated set its own scores.
            if ref_videos is None:
                raise
            errors["reference"] = f"not compared: {error}"
            ref_videos = None
            metrics, per_group = _score_sets(gen_set.videos, None, index_groups, **options)
    if feature_extractor is not None and ref_videos is not None:
        try:
            metrics["feature_fd"] = _feature_distance(gen_set.videos, ref_videos, feature_extractor)
            for index, group in zip(index_groups, per_group):
                group["feature_fd"] = _feature_distance(gen_set.videos[index], ref_videos, feature_extractor)
        except ValueError as error:  # the user's network rejected the input: keep the other scores
            errors["feature_fd"] = str(error)
            for group in per_group:
                group.pop("feature_fd", None)
    own = _own(metrics)
    ref_own = {
        key.removeprefix("reference_"): _finite_or_none(value)
        for key, value in metrics.items()
        if key.startswith("reference_")
    }
    group_results = [
        {"name": name, "num_videos": len(index), "metrics": _own(group)}
        for name, index, group in zip(group_names, index_groups, per_group)
    ]
    result.update(
        metrics=own,
        reference_metrics=ref_own,
        directions={key: METRICS[key][1] for key in own},
        groups=group_results,
        group_summary=_summary([group["metrics"] for group in group_results]),
        errors=errors,
    )
    return result


def _format(value) -> str:
    if value is None:
        return "n/a"
    return f"{value:.4g}"


def _mean_std(summary: dict) -> str:
    if summary["mean"] is None:
        return "n/a"
    return _format(summary["mean"]) + ("" if summary["std"] is None else f" ± {summary['std']:.2g}")


def markdown_table(result: dict) -> str:
    """A Markdown table of an :func:`evaluate` result: metric, generated, reference, better, meaning;
    with groups, a column of the mean ± sample std over the groups after the pooled value.

    >>> print(markdown_table({"metrics": {"motion_energy": 0.01}, "reference_metrics": {}}).splitlines()[2])
    | motion_energy | 0.01 | - | closer to reference | mean_{n,f} mean\\|x[f+1] - x[f]\\| (also the mean speed) |
    """
    summary = result.get("group_summary") or {}
    if summary:
        rows = [
            f"| metric | pooled | {len(result['groups'])} groups: mean ± std | reference | better | meaning |",
            "|---|---|---|---|---|---|",
        ]
    else:
        rows = ["| metric | generated | reference | better | meaning |", "|---|---|---|---|---|"]
    reference = result.get("reference_metrics", {})
    for key, value in result["metrics"].items():
        meaning, direction = METRICS[key]
        ref = _format(reference[key]) if key in reference else "-"
        grouped = f" {_mean_std(summary[key])} |" if summary else ""
        rows.append(f"| {key} | {_format(value)} |{grouped} {ref} | {direction} | {meaning.replace('|', chr(92) + '|')} |")
    if summary:
        groups = result["groups"]
        rows += ["", "Per group:", "", "| metric | " + " | ".join(g["name"] for g in groups) + " |"]
        rows.append("|---|" + "---|" * len(groups))
        for key in result["metrics"]:
            rows.append(f"| {key} | " + " | ".join(_format(g["metrics"].get(key)) for g in groups) + " |")
    errors = result.get("errors", {})
    if errors:
        rows += ["", f"{len(errors)} item(s) not scored:", ""]
        rows += [f"- `{name}`: {message}" for name, message in errors.items()]
    return "\n".join(rows) + "\n"


#: The first line of every Markdown report msm-eval writes (and the JSON's ``"report"`` value):
#: how msm-eval knows a file at ``--out`` is its own and may be replaced.
REPORT_MARK = "msm-eval"
_MARKDOWN_TITLE = f"# {REPORT_MARK} report"


def _scoring(result: dict) -> str:
    """One sentence saying how the generated videos were scored: pooled, and per group if asked."""
    total = result["generated"]["num_videos"]
    groups = result.get("groups") or []
    if not groups:
        return (
            f"The {total} generated videos are scored as one pooled set. Set-level values (shares, "
            "Wasserstein and Fréchet distances) of a pooled set differ from the mean of per-group "
            "values: `--groups K` also scores K equal groups (e.g. seeds) one by one."
        )
    return (
        f"The {total} generated videos are scored as one pooled set and as {len(groups)} groups "
        f"({', '.join(g['name'] for g in groups)}); the groups column is their mean ± sample std, which "
        "for set-level values (shares, Wasserstein and Fréchet distances) differs from the pooled value."
    )


def markdown_report(result: dict) -> str:
    """The Markdown report ``msm-eval`` prints and writes: title, inputs, how the videos were
    scored (pooled or per group), then :func:`markdown_table`."""
    inputs = [f"Generated: `{result['generated']['path']}` ({result['generated']['num_videos']} videos)."]
    if result.get("reference"):
        inputs.append(f"Reference: `{result['reference']['path']}` ({result['reference']['num_videos']} videos).")
    return "\n".join([_MARKDOWN_TITLE, "", " ".join(inputs), "", _scoring(result), "", markdown_table(result)])


def report_paths(out) -> tuple[Path, Path]:
    """The JSON path ``out`` and the Markdown path beside it (``.md``)."""
    out = Path(out)
    return out, out.with_suffix(".md") if out.suffix != ".md" else out.with_name(out.name + ".md")


def foreign_report(path) -> bool:
    """Whether ``path`` exists and is not a report msm-eval wrote (so must not be overwritten silently).

    >>> foreign_report("no/such/results.json")
    False
    """
    path = Path(path)
    if not path.exists():
        return False
    if not path.is_file():
        return True
    try:
        text = path.read_text()
    except (OSError, UnicodeDecodeError):
        return True
    if path.suffix == ".json":
        try:
            return json.loads(text).get("report") != REPORT_MARK
        except (ValueError, AttributeError):
            return True
    return text.split("\n", 1)[0] != _MARKDOWN_TITLE


def write_results(result: dict, out) -> tuple[Path, Path]:
    """Write ``result`` as JSON to ``out`` (marked ``"report": "msm-eval"``) and its Markdown
    report (:func:`markdown_report`) next to it (``.md``).

    Returns:
        The JSON and Markdown paths.
    """
    out, markdown = report_paths(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps({"report": REPORT_MARK, **result}, indent=2, allow_nan=False) + "\n")
    markdown.write_text(markdown_report(result))
    return out, markdown
