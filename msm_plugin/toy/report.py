"""Files of an ``msm-demo`` run: results (Markdown + JSON), labelled video grid, tensors, plots.

Layout under the output folder::

    results.json                 config, versions, data / teacher / untrained student, every run
                                 (with checkpoints), per-arm mean/std, student checks, paired verdicts
    results.md                   first line: does the DMD student pass its checks; then the checks,
                                 the paired verdicts of every arm against DMD, ground-truth motion,
                                 temporal roughness, appearance, training curves, per seed, setup
    videos/seed<S>.gif|.mp4      labelled grid: data | teacher | one column per arm; four conditions,
                                 each above its background-removed view (the blob, enlarged)
    tensors/<arm>.pt             every arm's evaluation samples in [0, 1], [S*N, F, C, H, W] float32
                                 (lossless; ``msm-eval tensors/dmd+msm.pt --reference tensors/data.pt``)
    plots/motion_over_training.png   velocity error, speed, frozen share, blob strength per checkpoint
    plots/motion_over_time.png       tracked blob speed / true speed per frame pair
    plots/remainder_spectrum.png     temporal spectrum of what is left once the blob is removed
"""

from __future__ import annotations

import json
import math
import re
from pathlib import Path

import numpy as np
import torch
from einops import rearrange

from msm_plugin.toy.checks import CHECKS
from msm_plugin.toy.data import to_unit_range
from msm_plugin.toy.experiment import ARM_DMD

__all__ = [
    "REPORT_KIND_KEY",
    "SMOKE_LABEL",
    "format_mean_std",
    "headline",
    "jsonable",
    "labelled_grid",
    "markdown_report",
    "tensor_name",
    "write_report",
]

#: The results.json key naming which msm-demo mode wrote a folder (see the CLI's overwrite rule).
REPORT_KIND_KEY = "msm_demo_kind"
SMOKE_LABEL = "Smoke run, not evidence"

# (part, key, title); the ground-truth block leads.
TRUTH_COLUMNS = [
    ("truth", "tracked_share", "blob tracked ↑"),
    ("truth", "relative_velocity_error", "velocity error / true speed ↓"),
    ("truth", "speed_ratio", "speed / true (1)"),
    ("truth", "frozen_share", "frozen ↓"),
    ("truth", "direction_accuracy", "direction right ↑"),
    ("truth", "blob_strength", "blob strength / data's (1)"),
]
ROUGHNESS_COLUMNS = [
    ("truth", "flicker", "blob-free temporal change RMS ↓"),
    ("truth", "flicker_hf_power", "its HF power ↓"),
    ("truth", "flicker_hf_share", "HF share"),
    ("metrics", "smoothness_error", "motion-compensated smoothness error (≈ data's)"),
]
APPEARANCE_COLUMNS = [
    ("metrics", "nearest_frame_rms", "nearest-data frame RMS ↓"),
    ("metrics", "nearest_video_rms", "nearest-data video RMS ↓"),
    ("metrics", "appearance_fd", "appearance FD → data ↓"),
    ("metrics", "motion_fd", "motion FD → data ↓"),
]
_UPSCALE = 6
_HEADER = 18
# Conditions shown in the video grid: two slow, two fast, all four directions (defaults).
_GRID_CONDITIONS = (0, 3, 4, 7)


def format_mean_std(stat: dict) -> str:
    """``"mean ± std"`` with 3 significant digits, ``n/a`` when nothing finite was measured.

    >>> format_mean_std({"mean": 0.012345, "std": 0.00051, "n": 3})
    '0.0123 ± 0.00051'
    >>> format_mean_std({"mean": float("nan"), "std": float("nan"), "n": 0})
    'n/a'
    """
    if not stat.get("n") or not math.isfinite(stat["mean"]):
        return "n/a"
    return f"{stat['mean']:.3g} ± {stat['std']:.2g}"


def _plain(value) -> str:
    return f"{value:.3g}" if isinstance(value, (int, float)) and math.isfinite(value) else "n/a"


def tensor_name(arm: str) -> str:
    """A file-safe name for an arm.

    >>> tensor_name("msm lam=0.5"), tensor_name("dmd+msm")
    ('msm_lam0.5', 'dmd+msm')
    """
    return re.sub(r"[^A-Za-z0-9+._-]", "", arm.replace(" ", "_"))


def headline(result: dict) -> list:
    """The first lines of ``results.md``: a smoke-run label, or whether the DMD student passed its checks.

    >>> headline({"smoke": True, "config": {"steps": 10, "seeds": [0, 1]}})[0]
    '**Smoke run, not evidence**: 10 generator steps, 2 seeds. Nothing here is judged: no check and no verdict is applied.'
    """
    cfg = result["config"]
    if result.get("smoke"):
        return [f"**{SMOKE_LABEL}**: {cfg['steps']} generator steps, {len(cfg['seeds'])} seeds. "
                "Nothing here is judged: no check and no verdict is applied."]
    checks = result.get("checks")
    if checks is None:
        return ["**No DMD arm ran**, so the student checks could not be applied: no conclusion is drawn."]
    seeds = len(checks["seeds"])
    if checks["passed"]:
        return [f"**The DMD student passes every check on {seeds} of {seeds} seeds** (blob tracked, direction, "
                "frozen share, blob strength, frames close to data frames): it has learnt the data, so the "
                "comparisons below are about a working student."]
    failed = ", ".join(f"seed {s}: {k} {checks['seeds'][s][k]['value']:.3g}" for s, k in checks["failed"])
    return [f"**The DMD student FAILS its checks ({failed})**: it has not learnt the data, so this run draws "
            "no conclusion about MSM or any other loss."]


def _table(result: dict, columns: list, references=("data", "teacher", "initial")) -> list:
    names = {"data": "data (its own videos)", "teacher": "teacher (exact, sampled)", "initial": "untrained student"}
    header = ["arm", "seeds"] + [title for _, _, title in columns]
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    for ref in references:
        cells = [names[ref], ""] + [_plain(result[ref].get(part, {}).get(key, float("nan"))) for part, key, _ in columns]
        lines.append("| " + " | ".join(cells) + " |")
    for arm, entry in result["summary"].items():
        cells = [arm, str(len(entry["seeds"]))] + [format_mean_std(entry[part].get(key, {})) for part, key, _ in columns]
        lines.append("| " + " | ".join(cells) + " |")
    return lines


def _checks_table(result: dict) -> list:
    checks = result["checks"]
    seeds = sorted(checks["seeds"])
    lines = ["| check | passes when | " + " | ".join(f"seed {s}" for s in seeds) + " |", "|" + "---|" * (len(seeds) + 2)]
    for key, comparison, threshold, meaning in CHECKS:
        cells = []
        for s in seeds:
            entry = checks["seeds"][s][key]
            cells.append(f"{entry['value']:.3g} {'ok' if entry['ok'] else '**FAIL**'}")
        lines.append(f"| {meaning} | {comparison} {threshold:g} | " + " | ".join(cells) + " |")
    dmd = [r["metrics"]["nearest_frame_rms"] for r in result["runs"] if r["arm"] == ARM_DMD]
    lines += ["", f"Nearest-data frame RMS: data 0, teacher {checks['teacher_frame_rms']:.3g}, untrained student "
                  f"{checks['initial_frame_rms']:.3g}, DMD student {', '.join(f'{v:.3g}' for v in dmd)} (per seed)."]
    return lines


def _verdict_matrix(result: dict) -> list:
    """One row per metric, one column per arm: mean difference to DMD [seed range] and the verdict."""
    comparisons = result["comparisons"]
    arms = list(comparisons)
    keys = list(dict.fromkeys(k for entries in comparisons.values() for k in entries if k != "over_training"))
    short = {"better on every seed": "**better**", "worse on every seed": "**worse**", "unresolved": "unresolved"}
    lines = ["| metric (arm − DMD) | " + " | ".join(arms) + " |", "|" + "---|" * (len(arms) + 1)]
    for key in keys:
        title = next(comparisons[a][key]["title"] for a in arms if key in comparisons[a])
        cells = []
        for arm in arms:
            e = comparisons[arm].get(key)
            cells.append("n/a" if e is None else f"{e['mean']:+.3g} [{e['min']:+.2g}, {e['max']:+.2g}] {short[e['verdict']]}")
        lines.append(f"| {title} | " + " | ".join(cells) + " |")
    return lines


def _comparison_tables(result: dict) -> list:
    lines = []
    base = {r["seed"]: r for r in result["runs"] if r["arm"] == ARM_DMD}
    for arm, entries in result.get("comparisons", {}).items():
        runs = {r["seed"]: r for r in result["runs"] if r["arm"] == arm}
        lines += [f"### {arm} against DMD", "",
                  "| metric | DMD (per seed) | " + arm + " (per seed) | difference, mean [min, max] | verdict |",
                  "|---|---|---|---|---|"]
        for key, entry in entries.items():
            if key == "over_training":
                continue
            part = "truth" if key in base[entry["seeds"][0]]["truth"] else "metrics"
            b = ", ".join(_plain(base[s][part][key]) for s in entry["seeds"])
            o = ", ".join(_plain(runs[s][part][key]) for s in entry["seeds"])
            diff = f"{entry['mean']:+.3g} [{entry['min']:+.3g}, {entry['max']:+.3g}]"
            lines.append(f"| {entry['title']} | {b} | {o} | {diff} | {entry['verdict']} |")
        lines.append("")
        curve = entries.get("over_training", [])
        if curve:
            keys = [k for k in curve[0] if k != "step"]
            titles = [entries[k]["title"] if k in entries else k for k in keys]
            lines += [f"Over training ({arm} − DMD per checkpoint: mean [min, max], verdict):", "",
                      "| step | " + " | ".join(titles) + " |", "|" + "---|" * (len(keys) + 1)]
            for point in curve:
                cells = [f"{point[k]['mean']:+.3g} [{point[k]['min']:+.2g}, {point[k]['max']:+.2g}] {point[k]['verdict']}"
                         for k in keys]
                lines.append(f"| {point['step']} | " + " | ".join(cells) + " |")
            lines.append("")
    return lines


def _curve(result: dict) -> list:
    steps = result["config"]["eval_steps"]
    lines = ["| arm | " + " | ".join(f"step {i}" for i in steps) + " |", "|" + "---|" * (len(steps) + 1)]
    for arm, entry in result["summary"].items():
        cells = []
        for p in entry["curve"]:
            t = p["truth"]
            cells.append(f"{t['relative_velocity_error']['mean']:.2f} / {t['speed_ratio']['mean']:.2f} / "
                         f"{t['frozen_share']['mean']:.2f} / {t['blob_strength']['mean']:.2f}")
        lines.append(f"| {arm} | " + " | ".join(cells) + " |")
    return lines


def _per_seed(result: dict) -> list:
    keys = [("truth", "tracked_share"), ("truth", "relative_velocity_error"), ("truth", "speed_ratio"),
            ("truth", "frozen_share"), ("truth", "direction_accuracy"), ("truth", "blob_strength"),
            ("metrics", "nearest_frame_rms"), ("truth", "flicker")]
    lines = ["| arm | seed | " + " | ".join(k for _, k in keys) + " | train CPU s | prompt digest |",
             "|" + "---|" * (len(keys) + 4)]
    for run in result["runs"]:
        cells = [run["arm"], str(run["seed"])] + [_plain(run[p].get(k, float("nan"))) for p, k in keys]
        cells += [f"{run['train_cpu_seconds']:.0f}", f"`{run['prompt_digest']}`"]
        lines.append("| " + " | ".join(cells) + " |")
    return lines


def _setup(result: dict) -> list:
    cfg = result["config"]
    data, trainer = cfg["data"], cfg["trainer"]
    arms = "; ".join(f"`{a['name']}`: `{json.dumps(a['losses']) if a['losses'] else '{}'}`" for a in cfg["arms"])
    versions = ", ".join(f"{k} {v}" for k, v in result["versions"].items())
    return [
        f"- Data: {result['teacher']['dataset_size']} videos ({data['videos_per_condition']} per condition), "
        f"{data['num_frames']} x {data['channels']} x {data['size']} x {data['size']} on a torus; speeds "
        f"{data['speeds']} px/frame, blob sigma {data['blob_sigma']:g} px and strength {data['blob_amplitude']:g}, "
        f"background contrast {data['background_amplitude']:g}; appearance / motion energy "
        f"{result['data']['appearance_over_motion']:.0f}.",
        f"- Teacher: exact posterior mean of the data set, sampled with {cfg['teacher_steps']} Euler steps.",
        f"- Student: one step, conditional data mean + residual `{_net(cfg['generator_net'])}`; critic: teacher + "
        f"residual `{_net(cfg['critic_net'])}`; {result['runs'][0]['parameters']['trainable_generator']:,} and "
        f"{result['runs'][0]['parameters']['trainable_critic']:,} trainable parameters.",
        f"- Training: {cfg['steps']} generator steps, {trainer['dfake_gen_update_ratio']} critic steps each, batch "
        f"{trainer['batch_size']}, Adam lr {trainer['lr']:g} / {trainer['lr_critic']:g}, betas ({trainer['beta1']:g}, "
        f"{trainer['beta2']:g}); seeds {cfg['seeds']}, the same prompts and noise per seed in every arm; "
        f"{cfg['num_eval']} evaluation videos per run.",
        f"- Arms (extra-loss config entries): {arms}.",
        f"- Versions: {versions}.",
    ]


def _net(net: dict) -> str:
    text = f"{net['kind']} width {net['width']} depth {net['depth']}"
    if net["kind"] == "wan":
        text += " patch " + "x".join(str(p) for p in net["patch_size"])
    return text + (", reads the teacher's x0" if net["reads_base"] else "")


def markdown_report(result: dict) -> str:
    """The whole ``results.md``."""
    lines = ["# msm-demo results", "", *headline(result), ""]
    if result.get("checks") and not result.get("smoke"):
        lines += ["## Student checks (DMD, every seed, end of training)", "", *_checks_table(result), ""]
    if result.get("comparisons") and not result.get("smoke"):
        lines += ["## Every arm against DMD, paired by seed", "",
                  "Difference = arm − DMD per seed. Verdict: closer to the data on every seed (better), further on "
                  "every seed (worse), or neither (unresolved).", ""]
        if result.get("checks", {}).get("passed"):
            if len(result["comparisons"]) > 1:
                lines += ["### Summary: mean difference [min, max over seeds] and verdict", "", *_verdict_matrix(result), ""]
            lines += _comparison_tables(result)
        else:
            lines += ["Not shown: the DMD student failed its checks, so no difference here would mean anything.", ""]
    lines += [
        "## Ground-truth motion (blob tracked, compared with each condition's true velocity)", "",
        *_table(result, TRUTH_COLUMNS), "",
        "A video whose blob is not tracked (too faint, or not moving along a line) counts as motionless: frozen, "
        "wrong direction, speed 0. Cells: mean ± sample std over seeds.", "",
        "## Temporal roughness (what changes over time besides the blob)", "",
        *_table(result, ROUGHNESS_COLUMNS), "",
        "Remainder: the video minus the tracked blob; HF = the upper half of the temporal band (flicker). "
        "Spectra in `plots/remainder_spectrum.png`.", "",
        "## Appearance", "",
        *_table(result, APPEARANCE_COLUMNS), "",
        "## Over training (means over seeds: velocity error / true speed, speed / true, frozen, blob strength)", "",
        *_curve(result), "",
        "## Per seed (end of training)", "",
        *_per_seed(result), "",
        "## Setup", "",
        *_setup(result), "",
        f"Total time: {result['total_seconds']:.0f} s.",
    ]
    return "\n".join(lines) + "\n"


def jsonable(value):
    """``value`` with non-finite floats as None and keys as strings (strict JSON).

    >>> jsonable({1: [float("nan"), 2.0]})
    {'1': [None, 2.0]}
    """
    if isinstance(value, dict):
        return {str(k): jsonable(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [jsonable(v) for v in value]
    if isinstance(value, float) and not math.isfinite(value):
        return None  # strict JSON has no NaN
    return value


def labelled_grid(columns: list, titles: list, row_titles: list) -> np.ndarray:
    """Tile model-space videos into one labelled uint8 movie ``[F, H', W', 3]``.

    Args:
        columns: videos ``[R, F, C, H, W]`` (one shape), one set per column.
        titles: one title per column, written above it.
        row_titles: one title per row, written in the row's first cell.

    Pixels are upscaled 6x (nearest) and a frame counter is written in the header.

    >>> labelled_grid([torch.zeros(2, 3, 3, 4, 4)] * 2, ["a", "b"], ["r0", "r1"]).shape
    (3, 66, 48, 3)
    """
    import cv2

    shapes = {tuple(c.shape) for c in columns}
    if len(shapes) != 1 or len(next(iter(shapes))) != 5:
        raise ValueError(f"expected videos [R, F, C, H, W] of one shape per column, got {sorted(shapes)}")
    if len(titles) != len(columns) or len(row_titles) != columns[0].shape[0]:
        raise ValueError(
            f"expected one title per column and per row, got {len(titles)} titles for {len(columns)} columns "
            f"and {len(row_titles)} row titles for {columns[0].shape[0]} rows"
        )
    grid = torch.stack([to_unit_range(c) for c in columns])  # [J, R, F, C, H, W]
    grid = grid.repeat_interleave(_UPSCALE, dim=-1).repeat_interleave(_UPSCALE, dim=-2)
    frames = rearrange(grid, "j r f c h w -> f (r h) (j w) c")
    if frames.shape[-1] == 1:
        frames = frames.expand(*frames.shape[:-1], 3)
    frames = (frames * 255).round().to(torch.uint8).numpy()
    f, height, width, _ = frames.shape
    cell_h, cell_w = height // len(row_titles), width // len(titles)
    out = np.full((f, height + _HEADER, width, 3), 255, dtype=np.uint8)
    out[:, _HEADER:] = frames
    font, scale = cv2.FONT_HERSHEY_SIMPLEX, 0.35
    for k in range(f):
        for j, title in enumerate(titles):
            cv2.putText(out[k], title, (j * cell_w + 2, _HEADER - 5), font, scale, (0, 0, 0), 1, cv2.LINE_AA)
        for r, title in enumerate(row_titles):
            y = _HEADER + r * cell_h + 10
            cv2.putText(out[k], title, (2, y), font, scale, (255, 255, 255), 1, cv2.LINE_AA)
        cv2.putText(out[k], f"f{k}", (width - 18, _HEADER - 5), font, scale, (120, 120, 120), 1, cv2.LINE_AA)
        for j in range(1, len(titles)):  # thin separators between columns
            out[k, :, j * cell_w] = 255
    return out


def _with_blob_view(videos: torch.Tensor, tracker, gain: float) -> torch.Tensor:
    """``[2R, F, C, H, W]``: each video followed by its background-removed view, ``gain`` x brighter."""
    view = tracker.remove_background(videos) * gain
    return rearrange(torch.stack([videos, view], dim=1), "r k f c h w -> (r k) f c h w")


def _write_videos(result: dict, out: Path) -> list:
    import imageio.v2 as imageio

    from msm_plugin.toy.data import DISPLAY_RANGE, ToyDataConfig
    from msm_plugin.toy.tracking import BlobTracker

    videos = result["videos"]
    conditions = result["conditions"]
    rows = [c for c in _GRID_CONDITIONS if c < len(conditions)] or list(range(len(conditions)))
    arms = [a["name"] for a in result["config"]["arms"]]
    data = ToyDataConfig(**result["config"]["data"])
    tracker = BlobTracker(data)
    # A faint blob on a contrasted background is hard to see; under each row the same videos with
    # the background removed (what the tracker sees), one gain for every column: the data's
    # brightest blob pixels reach 80% of the display range.
    peak = float(tracker.remove_background(videos["data"][rows]).abs().flatten().quantile(0.999))
    gain = 0.8 * DISPLAY_RANGE / peak if peak > 0 else 1.0
    row_titles = [title for c in rows for title in (conditions[c], "- background")]
    written = []
    seeds = sorted({int(key.split("/seed")[1]) for key in videos if "/seed" in key})
    folder = out / "videos"
    for seed in seeds[: result["config"].get("video_seeds", 1) or 1]:
        columns = [videos["data"][rows], videos["teacher"][rows]] + [videos[f"{arm}/seed{seed}"][rows] for arm in arms]
        columns = [_with_blob_view(c, tracker, gain) for c in columns]
        titles = ["data", "teacher"] + [{"dmd": "DMD", "dmd+msm": "DMD+MSM"}.get(a, a) for a in arms]
        movie = labelled_grid(columns, titles, row_titles)
        folder.mkdir(parents=True, exist_ok=True)
        gif = folder / f"seed{seed}.gif"
        imageio.mimsave(gif, list(movie), duration=0.3, loop=0)
        mp4 = folder / f"seed{seed}.mp4"
        imageio.mimsave(mp4, list(movie), fps=4, macro_block_size=1)
        written += [gif, mp4]
    return written


def _write_tensors(result: dict, out: Path) -> list:
    folder = out / "tensors"
    folder.mkdir(parents=True, exist_ok=True)
    videos = result["videos"]
    sets = {"data": [videos["data"]], "teacher": [videos["teacher"]]}
    for key, value in videos.items():
        if "/seed" in key:
            sets.setdefault(key.split("/seed")[0], []).append(value)
    written = []
    for name, parts in sets.items():
        path = folder / f"{tensor_name(name)}.pt"
        torch.save(to_unit_range(torch.cat(parts)).float().contiguous(), path)
        written.append(path)
    return written


def _plt():
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def _save_figure(fig, path: Path) -> Path:
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=100)
    _plt().close(fig)
    return path


def _plot_training(result: dict, out: Path) -> Path:
    plt = _plt()
    panels = [("relative_velocity_error", "velocity error / true speed ↓", None), ("speed_ratio", "speed / true speed", 1.0),
              ("frozen_share", "frozen share ↓", None), ("blob_strength", "blob strength / data's", 1.0)]
    fig, axes = plt.subplots(1, len(panels), figsize=(4 * len(panels), 3.6))
    seeds = len(result["config"]["seeds"])
    for ax, (key, title, target) in zip(axes, panels):
        start = result["initial"]["truth"][key]
        for arm, entry in result["summary"].items():
            steps = [0] + [p["step"] for p in entry["curve"]]
            mean = np.array([start] + [p["truth"][key]["mean"] for p in entry["curve"]])
            std = np.array([0.0] + [p["truth"][key]["std"] for p in entry["curve"]])
            line = ax.plot(steps, mean, marker="o", label=arm)[0]
            ax.fill_between(steps, mean - std, mean + std, color=line.get_color(), alpha=0.2)
        ax.axhline(result["teacher"]["truth"][key], color="k", ls="--", lw=1, label="teacher (exact)")
        if target is not None:
            ax.axhline(target, color="gray", ls=":", lw=1)
        ax.set_xlabel("generator step")
        ax.set_title(title)
    axes[0].legend(fontsize=7, title=f"mean, band ±1 std over {seeds} seeds", title_fontsize=7)
    return _save_figure(fig, out / "plots" / "motion_over_training.png")


def _plot_motion(result: dict, out: Path) -> Path:
    plt = _plt()
    fig, ax = plt.subplots(figsize=(6.5, 4))
    pairs = np.arange(1, len(result["data"]["truth"]["pair_speed_ratio"]) + 1)
    ax.plot(pairs, result["data"]["truth"]["pair_speed_ratio"], "k--", label="data")
    ax.plot(pairs, result["teacher"]["truth"]["pair_speed_ratio"], "k:", label="teacher (exact)")
    for arm in result["summary"]:
        curves = np.array([run["truth"]["pair_speed_ratio"] for run in result["runs"] if run["arm"] == arm])
        mean = curves.mean(axis=0)
        std = curves.std(axis=0, ddof=1) if len(curves) > 1 else np.zeros_like(mean)
        line = ax.plot(pairs, mean, marker="o", label=arm)[0]
        ax.fill_between(pairs, mean - std, mean + std, color=line.get_color(), alpha=0.2)
    ax.set_ylim(bottom=0)
    ax.set_xlabel("frame pair f → f+1")
    ax.set_ylabel("tracked blob speed / true speed")
    ax.set_title("Blob speed over the clip (untracked videos count 0; bands ±1 std over seeds)", fontsize=9)
    ax.legend(fontsize=7)
    return _save_figure(fig, out / "plots" / "motion_over_time.png")


def _plot_spectrum(result: dict, out: Path) -> Path:
    plt = _plt()
    fig, ax = plt.subplots(figsize=(6.5, 4))
    # Bin 0 (the temporal mean) is removed by construction; the data's remainder is 0 up to the
    # tracker's precision, hence the floor.
    bins = np.arange(1, len(result["data"]["remainder_spectrum"]))
    floor = 1e-12
    for name, style in (("data", "k--"), ("teacher", "k:")):
        ax.semilogy(bins, np.maximum(result[name]["remainder_spectrum"][1:], floor), style, label=name)
    for arm in result["summary"]:
        spectra = np.array([run["remainder_spectrum"][1:] for run in result["runs"] if run["arm"] == arm])
        ax.semilogy(bins, np.maximum(spectra.mean(axis=0), floor), marker="o", label=arm)
    ax.set_xticks(bins)
    frames = result["config"]["data"]["num_frames"]
    ax.set_xlabel(f"temporal frequency bin k (period {frames}/k frames)")
    ax.set_ylabel("power of the blob-free remainder")
    ax.set_title("What changes over time besides the blob (mean over seeds)", fontsize=9)
    ax.legend(fontsize=7)
    return _save_figure(fig, out / "plots" / "remainder_spectrum.png")


def write_report(result: dict, out, kind: str = "default") -> dict:
    """Write every file of the run into ``out`` (created here); returns ``{kind: [paths]}``.

    ``kind`` names the msm-demo mode that wrote it (kept in ``results.json``).
    """
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    payload = jsonable({REPORT_KIND_KEY: kind, **{k: v for k, v in result.items() if k != "videos"}})
    json_path = out / "results.json"
    json_path.write_text(json.dumps(payload, indent=2, allow_nan=False) + "\n")
    md_path = out / "results.md"
    md_path.write_text(markdown_report(result))
    return {"tables": [json_path, md_path], "videos": _write_videos(result, out), "tensors": _write_tensors(result, out),
            "plots": write_plots(result, out)}


def write_plots(result: dict, out) -> list:
    """The three plots of ``out/plots/``, from a run's result alone (a ``results.json`` read back works)."""
    out = Path(out)
    return [_plot_training(result, out), _plot_motion(result, out), _plot_spectrum(result, out)]
