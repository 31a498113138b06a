"""Files of an ``msm-demo`` run: results (Markdown + JSON), labelled video grid, tensors, plots.

Layout under the output folder::

    results.json                 config, data, teacher, every run (with checkpoints), per-arm mean/std
    results.md                   ground-truth motion first, then flow/smoothness, then appearance;
                                 per-seed values; motion over training; the issue's goals, met or not
    videos/seed<S>.gif|.mp4      labelled grid: data | teacher | one column per arm, a few conditions
    tensors/<arm>.pt             every arm's evaluation samples in [0, 1], [S*N, F, C, H, W] float32
                                 (lossless; ``msm-eval tensors/dmd+msm.pt --reference tensors/data.pt``)
    plots/motion_over_training.png   velocity error and frozen share per checkpoint, bands = ±1 std
    plots/motion_over_time.png       per-frame-pair motion magnitude of each arm
    plots/pareto.png             velocity error vs appearance FD per arm (when more than two arms ran)
"""

from __future__ import annotations

import json
import math
import re
from pathlib import Path

import numpy as np
import torch
from einops import rearrange

from msm_plugin.toy.data import to_unit_range
from msm_plugin.toy.experiment import ARM_DMD, ARM_MSM

__all__ = ["TRUTH_COLUMNS", "format_mean_std", "goals", "labelled_grid", "markdown_report", "tensor_name", "write_report"]

# (part, key, title); the ground-truth block leads.
TRUTH_COLUMNS = [
    ("truth", "velocity_error", "velocity error px/f ↓"),
    ("truth", "velocity_error@0.5", "… at 0.5 px/f ↓"),
    ("truth", "direction_accuracy", "direction ok ↑"),
    ("truth", "frozen_share", "frozen ↓"),
    ("truth", "speed_ratio", "speed / true"),
    ("truth", "blob_amplitude", "blob amplitude"),
    ("truth", "flicker", "flicker RMS ↓"),
]
FLOW_COLUMNS = [
    ("metrics", "smoothness_error", "smoothness err"),
    ("metrics", "motion_energy", "motion energy"),
    ("metrics", "flow_magnitude", "flow px/f"),
    ("metrics", "flow_w1", "flow W1 → data ↓"),
    ("metrics", "motion_fd", "motion FD → data ↓"),
]
# Issue 13's mechanism: flicker lives in the upper half of the temporal band (periods of 2-3 frames).
MECHANISM_COLUMNS = [
    ("truth", "flicker_hf_power", "student: flicker HF power ↓"),
    ("truth", "flicker_hf_share", "student: HF share of flicker"),
    ("training", "critic_error_hf_power", "training: (pred_fake − pred_real) HF power"),
    ("training", "critic_error_hf_share", "training: its HF share"),
]
APPEARANCE_COLUMNS = [
    ("metrics", "appearance_fd", "appearance FD → data ↓"),
    ("metrics", "nn_rms", "RMS to nearest data video ↓"),
    ("metrics", "appearance_energy", "appearance energy"),
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

    >>> tensor_name("msm lam=0.5 dmd"), tensor_name("dmd+msm")
    ('msm_lam0.5_dmd', 'dmd+msm')
    """
    return re.sub(r"[^A-Za-z0-9+._-]", "", arm.replace(" ", "_"))


def _table(result: dict, columns: list) -> list:
    header = ["arm", "seeds"] + [title for _, _, title in columns]
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    for name, ref in (("data (its own videos)", result["data"]), ("teacher (exact, sampled)", result["teacher"])):
        lines.append("| " + " | ".join([name, ""] + [_plain(ref.get(part, {}).get(key, float("nan"))) for part, key, _ in columns]) + " |")
    for arm, entry in result["summary"].items():
        cells = [arm, str(len(entry["seeds"]))] + [format_mean_std(entry[part].get(key, {})) for part, key, _ in columns]
        lines.append("| " + " | ".join(cells) + " |")
    return lines


def _per_seed(result: dict) -> list:
    keys = [("truth", "velocity_error"), ("truth", "frozen_share"), ("truth", "direction_accuracy"),
            ("truth", "flicker"), ("metrics", "smoothness_error"), ("metrics", "appearance_fd")]
    lines = ["| arm | seed | " + " | ".join(k for _, k in keys) + " | prompt digest |",
             "|" + "---|" * (len(keys) + 3)]
    for run in result["runs"]:
        cells = [run["arm"], str(run["seed"])] + [_plain(run[p][k]) for p, k in keys] + [f"`{run['prompt_digest']}`"]
        lines.append("| " + " | ".join(cells) + " |")
    return lines


def _curve(result: dict) -> list:
    iters = result["config"]["eval_iters"]
    lines = ["| arm | " + " | ".join(f"it {i}: vel. err / frozen" for i in iters) + " |", "|" + "---|" * (len(iters) + 1)]
    for arm, entry in result["summary"].items():
        cells = [f"{p['truth']['velocity_error']['mean']:.3g} / {p['truth']['frozen_share']['mean']:.2f}" for p in entry["curve"]]
        lines.append(f"| {arm} | " + " | ".join(cells) + " |")
    return lines


def goals(result: dict) -> list:
    """The issue's goals for DMD+MSM vs DMD (means over seeds): ``[(text, met)]``; empty without both arms."""
    summary = result["summary"]
    if ARM_DMD not in summary or ARM_MSM not in summary:
        return []
    base, msm = summary[ARM_DMD], summary[ARM_MSM]

    def mean(entry, part, key):
        return entry[part][key]["mean"]

    out = []
    for key, factor in (("velocity_error", 0.5), ("frozen_share", 0.5)):
        a, b = mean(base, "truth", key), mean(msm, "truth", key)
        out.append((f"{key}: DMD+MSM {b:.3g} <= {factor} x DMD {a:.3g}", b <= factor * a))
    a, b = mean(base, "metrics", "appearance_fd"), mean(msm, "metrics", "appearance_fd")
    out.append((f"appearance FD → data: DMD+MSM {b:.3g} <= 1.1 x DMD {a:.3g}", b <= 1.1 * a))
    return out


def markdown_report(result: dict) -> str:
    """The whole ``results.md``."""
    cfg = result["config"]
    arms = ", ".join(f"`{a['name']}` (lam {a['lam']:g}{', ' + str(a['options']) if a['options'] else ''})" for a in cfg["arms"])
    lines = [
        "# msm-demo results",
        "",
        f"Teacher: exact posterior mean of {result['teacher']['dataset_size']} data videos, sampled with "
        f"{cfg['teacher_steps']} Euler steps (CFG {cfg['teacher_guidance']:g}). Students: one-step, "
        f"{cfg['iters']} iterations (critic ratio {cfg['trainer']['dfake_gen_update_ratio']}), seeds {cfg['seeds']}, "
        f"the same prompts and noise per seed in every arm. Arms: {arms}. {cfg['num_eval']} evaluation videos per "
        "run. Cells: mean ± sample std over seeds; ↓ lower is better, ↑ higher is better.",
        "",
        "## Ground-truth motion (blob tracked, compared with each condition's true velocity)",
        "",
        *_table(result, TRUTH_COLUMNS),
        "",
        "Frozen: estimated speed below a quarter of the true one. Flicker: RMS of what changes over time once the "
        "tracked blob is removed (0 on data).",
        "",
        "## Flow and smoothness (weight-free metrics, against the data set)",
        "",
        *_table(result, FLOW_COLUMNS),
        "",
        "## Where flicker comes from (temporal spectra; HF = upper half of the band)",
        "",
        *_table(result, MECHANISM_COLUMNS),
        "",
        "Student: spectrum of the blob-free remainder of its samples. Training: spectrum of the critic's minus the "
        "teacher's x0 prediction on the generator steps, the difference MSM high-passes (gradient response "
        "2 - 2cos w; `smoothing: binomial` multiplies it by (1 + cos w)^2 / 4).",
        "",
        "## Appearance",
        "",
        *_table(result, APPEARANCE_COLUMNS),
        "",
        "## Over training (means over seeds: velocity error px/f / frozen share)",
        "",
        *_curve(result),
        "",
        "## Per seed (final)",
        "",
        *_per_seed(result),
        "",
    ]
    checks = goals(result)
    if checks:
        lines += ["## Goals (DMD+MSM vs DMD, means over seeds)", ""]
        lines += [f"- {'met' if ok else 'NOT met'}: {text}" for text, ok in checks]
        lines.append("")
    lines.append(f"Total time: {result['total_seconds']:.0f} s.")
    return "\n".join(lines) + "\n"


def _jsonable(value):
    if isinstance(value, dict):
        return {k: _jsonable(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_jsonable(v) for v in value]
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


def _write_videos(result: dict, out: Path) -> list:
    import imageio.v2 as imageio

    videos = result["videos"]
    conditions = result["conditions"]
    num = len(conditions)
    rows = [c for c in _GRID_CONDITIONS if c < num] or list(range(num))
    arms = [a["name"] for a in result["config"]["arms"]]
    written = []
    seeds = sorted({key.split("/seed")[1] for key in videos if "/seed" in key}, key=int)
    folder = out / "videos"
    for seed in seeds[: result["config"].get("video_seeds", 1) or 1]:
        columns = [videos["data"][rows], videos["teacher"][rows]]
        columns += [videos[f"{arm}/seed{seed}"][rows] for arm in arms]
        titles = ["data", "teacher"] + [{"dmd": "DMD", "dmd+msm": "DMD+MSM"}.get(a, a) for a in arms]
        movie = labelled_grid(columns, titles, [conditions[c] for c in rows])
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
    fig, axes = plt.subplots(1, 3, figsize=(13, 3.8))
    panels = [("velocity_error", "velocity error (px/frame) ↓"), ("frozen_share", "frozen share ↓"),
              ("flicker", "flicker RMS ↓")]
    seeds = len(result["config"]["seeds"])
    for ax, (key, title) in zip(axes, panels):
        for arm, entry in result["summary"].items():
            its = [p["iter"] for p in entry["curve"]]
            mean = np.array([p["truth"][key]["mean"] for p in entry["curve"]])
            std = np.array([p["truth"][key]["std"] for p in entry["curve"]])
            line = ax.plot(its, mean, marker="o", label=arm)[0]
            ax.fill_between(its, mean - std, mean + std, color=line.get_color(), alpha=0.2)
        ax.axhline(result["teacher"]["truth"][key], color="k", ls="--", lw=1, label="teacher (exact)")
        ax.set_xlabel("training iteration")
        ax.set_title(title)
    axes[0].legend(fontsize=7, title=f"lines: mean, bands: ±1 std over {seeds} seeds", title_fontsize=7)
    return _save_figure(fig, out / "plots" / "motion_over_training.png")


def _plot_motion(result: dict, out: Path) -> Path:
    plt = _plt()
    fig, ax = plt.subplots(figsize=(6, 4))
    pairs = np.arange(1, len(result["data"]["per_frame_motion"]) + 1)
    ax.plot(pairs, result["data"]["per_frame_motion"], "k--", label="data")
    ax.plot(pairs, result["teacher"]["per_frame_motion"], "k:", label="teacher (exact)")
    for arm in result["summary"]:
        curves = np.array([run["per_frame_motion"] for run in result["runs"] if run["arm"] == arm])
        mean, std = curves.mean(axis=0), curves.std(axis=0, ddof=1) if len(curves) > 1 else 0 * curves[0]
        line = ax.plot(pairs, mean, marker="o", label=f"{arm}")[0]
        ax.fill_between(pairs, mean - std, mean + std, color=line.get_color(), alpha=0.2)
    ax.set_xlabel("frame pair f → f+1")
    ax.set_ylabel("mean |x[f+1] − x[f]|  (videos in [0, 1])")
    ax.set_title("Per-frame motion magnitude (bands: ±1 std over seeds)")
    ax.legend(fontsize=7)
    return _save_figure(fig, out / "plots" / "motion_over_time.png")


def _plot_pareto(result: dict, out: Path) -> Path:
    plt = _plt()
    fig, ax = plt.subplots(figsize=(6.5, 4.5))
    for arm, entry in result["summary"].items():
        x, y = entry["metrics"]["appearance_fd"], entry["truth"]["velocity_error"]
        norm = entry["options"].get("normalization", "")
        marker = {"motion": "o", "dmd": "s"}.get(norm, "*")
        ax.errorbar(x["mean"], y["mean"], xerr=x["std"], yerr=y["std"], fmt=marker, capsize=3,
                    label=f"{arm}", ms=8 if marker == "*" else 6)
    ax.set_xlabel("appearance FD → data ↓")
    ax.set_ylabel("velocity error px/frame ↓")
    ax.set_title("Motion vs appearance per arm (bars: ±1 std over seeds)")
    ax.legend(fontsize=7)
    return _save_figure(fig, out / "plots" / "pareto.png")


def write_report(result: dict, out) -> dict:
    """Write every file of the run into ``out``; returns ``{kind: [paths]}``."""
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    payload = _jsonable({k: v for k, v in result.items() if k != "videos"})
    json_path = out / "results.json"
    json_path.write_text(json.dumps(payload, indent=2, allow_nan=False) + "\n")
    md_path = out / "results.md"
    md_path.write_text(markdown_report(result))
    plots = [_plot_training(result, out), _plot_motion(result, out)]
    if len(result["summary"]) > 2:
        plots.append(_plot_pareto(result, out))
    return {"tables": [json_path, md_path], "videos": _write_videos(result, out), "tensors": _write_tensors(result, out),
            "plots": plots}
