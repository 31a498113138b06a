"""Files of an ``msm-demo`` run: results table (Markdown + JSON), side-by-side videos, plots.

Layout under the output folder::

    results.json                 config, teacher, every run, per-arm mean/std over seeds
    results.md                   the table (mean ± sample std over seeds)
    videos/seed<S>.gif|.mp4      columns data | teacher | DMD | DMD+MSM, one row per condition
    plots/motion_over_time.png   per-frame-pair motion magnitude of each arm
    plots/tradeoff.png           appearance vs motion distance per lam (when a sweep ran)
"""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
import torch
from einops import rearrange

from msm_plugin.toy.data import to_unit_range
from msm_plugin.toy.experiment import ARM_DMD, ARM_MSM

__all__ = ["TABLE_COLUMNS", "format_mean_std", "markdown_table", "side_by_side", "write_report"]

# (reference, metric key, column title); lower is better for every distance here.
TABLE_COLUMNS = [
    ("to_teacher", "motion_fd", "motion FD → teacher"),
    ("to_teacher", "speed_w1", "speed W1 → teacher"),
    ("to_teacher", "accel_w1", "accel W1 → teacher"),
    ("to_teacher", "appearance_fd", "appearance FD → teacher"),
    ("to_data", "motion_fd", "motion FD → data"),
    ("to_data", "appearance_fd", "appearance FD → data"),
    ("to_teacher", "motion_energy", "motion energy"),
]
_UPSCALE = 4


def format_mean_std(stat: dict) -> str:
    """``"mean ± std"`` with 4 significant digits, ``n/a`` when nothing finite was measured.

    >>> format_mean_std({"mean": 0.012345, "std": 0.00051, "n": 3})
    '0.01235 ± 0.00051'
    >>> format_mean_std({"mean": float("nan"), "std": float("nan"), "n": 0})
    'n/a'
    """
    if not stat.get("n") or not math.isfinite(stat["mean"]):
        return "n/a"
    return f"{stat['mean']:.4g} ± {stat['std']:.2g}"


def markdown_table(result: dict) -> str:
    """The results table: one row per arm, plus the teacher (against data) and the data itself."""
    header = ["arm", "lam", "seeds"] + [title for _, _, title in TABLE_COLUMNS]
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    summary = result["summary"]
    for arm, entry in summary.items():
        cells = [arm, f"{entry['lam']:g}", str(len(entry["seeds"]))]
        cells += [format_mean_std(entry[ref][key]) for ref, key, _ in TABLE_COLUMNS]
        lines.append("| " + " | ".join(cells) + " |")
    teacher = result["teacher"]["to_data"]
    cells = ["teacher (many-step)", "", ""]
    for ref, key, _ in TABLE_COLUMNS:
        cells.append("0" if ref == "to_teacher" and key != "motion_energy" else f"{teacher[key]:.4g}")
    lines.append("| " + " | ".join(cells) + " |")
    cells = ["data", "", ""] + [
        f"{teacher['reference_motion_energy']:.4g}" if key == "motion_energy" else "" for _, key, _ in TABLE_COLUMNS
    ]
    lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n"


def _relative_change(summary: dict, ref: str, key: str) -> str:
    base, msm = summary.get(ARM_DMD), summary.get(ARM_MSM)
    if base is None or msm is None:
        return ""
    a, b = base[ref][key]["mean"], msm[ref][key]["mean"]
    if not (math.isfinite(a) and math.isfinite(b)) or a == 0:
        return ""
    return f"{100 * (b - a) / a:+.1f}%"


def _markdown(result: dict) -> str:
    cfg = result["config"]
    summary = result["summary"]
    lines = [
        "# msm-demo results",
        "",
        f"Teacher: {cfg['teacher']['train_steps']} flow-matching steps "
        f"({'cached' if result['teacher']['cached'] else 'trained now'}, final loss "
        f"{result['teacher']['final_loss']:.4f}); samples: {cfg['teacher']['sample_steps']} Euler steps, "
        f"CFG {cfg['teacher']['guidance_scale']:g}.",
        f"Distillation: {cfg['iters']} iterations per run, seeds {cfg['seeds']}, MSM options "
        f"{cfg['msm_options'] or 'defaults'}; {cfg['num_eval']} evaluation videos per arm. "
        "Cells: mean ± sample std over seeds; distances: lower is better.",
        "",
        markdown_table(result),
    ]
    changes = [
        f"{title}: {_relative_change(summary, ref, key)}"
        for ref, key, title in TABLE_COLUMNS
        if key != "motion_energy" and _relative_change(summary, ref, key)
    ]
    if changes:
        lines += ["DMD+MSM vs DMD (change of the mean): " + "; ".join(changes) + ".", ""]
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


def side_by_side(columns: list) -> np.ndarray:
    """Tile model-space videos into one uint8 movie ``[F, H', W', 3]``.

    Args:
        columns: list of videos ``[R, F, C, H, W]`` (same shape); column ``j`` shows video set
            ``j``, row ``r`` its ``r``-th video; pixels are upscaled 4x (nearest).

    >>> side_by_side([torch.zeros(2, 3, 3, 4, 4), torch.ones(2, 3, 3, 4, 4)]).shape
    (3, 32, 32, 3)
    """
    shapes = {tuple(c.shape) for c in columns}
    if len(shapes) != 1 or len(next(iter(shapes))) != 5:
        raise ValueError(f"expected videos [R, F, C, H, W] of one shape per column, got {sorted(shapes)}")
    grid = torch.stack([to_unit_range(c) for c in columns])  # [J, R, F, C, H, W]
    grid = grid.repeat_interleave(_UPSCALE, dim=-1).repeat_interleave(_UPSCALE, dim=-2)
    frames = rearrange(grid, "j r f c h w -> f (r h) (j w) c")
    if frames.shape[-1] == 1:
        frames = frames.expand(*frames.shape[:-1], 3)
    return (frames * 255).round().to(torch.uint8).numpy()


def _write_videos(result: dict, out: Path) -> list:
    import imageio.v2 as imageio

    videos = result["videos"]
    num_conditions = len(result["conditions"])
    rows = slice(0, num_conditions)  # evaluation labels cycle, so the first rows cover every condition once
    written = []
    seeds = sorted({key.split("/seed")[1] for key in videos if "/seed" in key}, key=int)
    for seed in seeds:
        columns = [videos["data"][rows], videos["teacher"][rows]]
        columns += [videos[f"{arm}/seed{seed}"][rows] for arm in (ARM_DMD, ARM_MSM)]
        movie = side_by_side(columns)
        folder = out / "videos"
        folder.mkdir(parents=True, exist_ok=True)
        gif = folder / f"seed{seed}.gif"
        imageio.mimsave(gif, list(movie), duration=0.25, loop=0)
        mp4 = folder / f"seed{seed}.mp4"
        imageio.mimsave(mp4, list(movie), fps=4, macro_block_size=1)
        written += [gif, mp4]
    return written


def _plot_motion(result: dict, out: Path) -> Path:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(6, 4))
    pairs = np.arange(1, len(result["data"]["per_frame_motion"]) + 1)
    ax.plot(pairs, result["data"]["per_frame_motion"], "k--", label="data")
    ax.plot(pairs, result["teacher"]["per_frame_motion"], "k-", label="teacher (many-step)")
    for arm in result["summary"]:
        curves = np.array([run["per_frame_motion"] for run in result["runs"] if run["arm"] == arm])
        mean, std = curves.mean(axis=0), curves.std(axis=0)
        line = ax.plot(pairs, mean, marker="o", label=f"{arm} (mean over {len(curves)} seeds)")[0]
        ax.fill_between(pairs, mean - std, mean + std, color=line.get_color(), alpha=0.2)
    ax.set_xlabel("frame pair f → f+1")
    ax.set_ylabel("mean |x[f+1] − x[f]|  (videos in [0, 1])")
    ax.set_title("Per-frame motion magnitude")
    ax.legend(fontsize=8, loc="center right")
    return _save_figure(fig, out / "plots" / "motion_over_time.png")


def _save_figure(fig, path: Path) -> Path:
    import matplotlib.pyplot as plt

    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=100)
    plt.close(fig)
    return path


def _plot_tradeoff(result: dict, out: Path) -> Path:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(6, 4))
    entries = sorted(result["summary"].values(), key=lambda e: e["lam"])
    xs = [e["to_teacher"]["appearance_fd"] for e in entries]
    ys = [e["to_teacher"]["motion_fd"] for e in entries]
    ax.errorbar([x["mean"] for x in xs], [y["mean"] for y in ys], xerr=[x["std"] for x in xs],
                yerr=[y["std"] for y in ys], fmt="o-", capsize=3)
    for e, x, y in zip(entries, xs, ys):
        ax.annotate(f"λ={e['lam']:g}", (x["mean"], y["mean"]), textcoords="offset points", xytext=(5, 5))
    ax.set_xlabel("appearance FD → teacher (lower is better)")
    ax.set_ylabel("motion FD → teacher (lower is better)")
    ax.set_title("Appearance vs motion trade-off over λ")
    return _save_figure(fig, out / "plots" / "tradeoff.png")


def write_report(result: dict, out) -> dict:
    """Write every file of the run into ``out``; returns ``{kind: [paths]}``."""
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    payload = _jsonable({k: v for k, v in result.items() if k != "videos"})
    json_path = out / "results.json"
    json_path.write_text(json.dumps(payload, indent=2, allow_nan=False) + "\n")
    md_path = out / "results.md"
    md_path.write_text(_markdown(result))
    plots = [_plot_motion(result, out)]
    if len(result["summary"]) > 2:
        plots.append(_plot_tradeoff(result, out))
    return {"tables": [json_path, md_path], "videos": _write_videos(result, out), "plots": plots}
