"""The regime map: where does plain DMD lose motion? (``msm-demo --regimes``)

The paper's mechanism (eq. 7-8) says DMD misses motion when it is small next to appearance,
and noise buries it further. The map varies, one at a time from a base regime, what should
matter: the motion itself (speed, blob strength and size, background contrast: together the
appearance / motion energy ratio), the critic (capacity, updates per generator update), the
student (sampling steps) and, through checkpoints, the training length. Only DMD runs here: the
map is measured before, and independently of, any extra loss.

Every cell runs the same seeds and is measured against the ground truth at every checkpoint:
velocity error relative to the true speed, speed / true speed, frozen share, blob strength, and
the student checks of :mod:`.checks`.

Student steps are not an axis: with an exact teacher a two-step student (t = 1000, 500) that
starts as the teacher already samples data videos (measured: a blob tracked in 98% of the
videos, nearest-data frame RMS 0.013 against 0.25 for the one-step student), so there is
nothing for DMD to distil, and its normaliser ``mean |x - pred_real|`` is exactly 0 on those
samples (the first generator step is non-finite). The map keeps one-step students.

**Which regime is worst for DMD** (:func:`worst_regime`), a rule fixed before any extra loss ran:
among the cells where the DMD student passes every check on every seed at the end of training
(a student that has learnt the data, so that a motion loss can be told apart from a failure to
learn), the one with the highest mean relative velocity error at the end of training.
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass, field, replace

from msm_plugin.toy.checks import CHECKS, check_values
from msm_plugin.toy.data import appearance_to_motion_ratio, make_dataset
from msm_plugin.toy.experiment import ARM_DMD, Arm, ExperimentConfig, library_versions, run_experiment

__all__ = [
    "BASE",
    "MAP_KEYS",
    "REGIMES",
    "WORST_REGIME",
    "Regime",
    "demo_base",
    "regime_config",
    "regime_markdown",
    "run_regime_map",
    "worst_regime",
]

#: (key, title, target): what the map reports per cell and checkpoint.
MAP_KEYS = (
    ("relative_velocity_error", "velocity error / true speed", None),
    ("speed_ratio", "speed / true speed", 1.0),
    ("frozen_share", "frozen share", None),
    ("blob_strength", "blob strength / data's", 1.0),
)


@dataclass(frozen=True)
class Regime:
    """One cell of the map: changes from the base configuration.

    Args:
        name: the cell's label.
        axis: what it varies (cells of one axis are plotted together).
        data: overrides of :class:`~msm_plugin.toy.data.ToyDataConfig`.
        critic: overrides of the critic's :class:`~msm_plugin.toy.networks.ResidualConfig`.
        trainer: overrides of the trainer config.

    >>> Regime("slow", "motion speed", data={"speeds": (0.25, 0.5)}).data
    {'speeds': (0.25, 0.5)}
    """

    name: str
    axis: str
    data: dict = field(default_factory=dict)
    critic: dict = field(default_factory=dict)
    trainer: dict = field(default_factory=dict)

    def to_dict(self) -> dict:
        return {"name": self.name, "axis": self.axis, "data": {k: list(v) if isinstance(v, tuple) else v
                                                                  for k, v in self.data.items()},
                "critic": dict(self.critic), "trainer": dict(self.trainer)}


BASE = Regime("base", "base")
#: The cells of ``msm-demo --regimes``: the base, then one change at a time, then the motion
#: changes combined (the subtlest motion).
REGIMES = (
    BASE,
    Regime("slow: 0.25, 0.5 px/f", "motion speed", data={"speeds": (0.25, 0.5)}),
    Regime("faint blob: strength 0.5", "blob strength", data={"blob_amplitude": 0.5}),
    Regime("small blob: sigma 1 px", "blob size", data={"blob_sigma": 1.0}),
    Regime("high contrast: background 1.0", "background contrast", data={"background_amplitude": 1.0}),
    Regime("slow + faint", "combined", data={"speeds": (0.25, 0.5), "blob_amplitude": 0.5}),
    Regime("slow + faint + high contrast", "combined",
           data={"speeds": (0.25, 0.5), "blob_amplitude": 0.5, "background_amplitude": 1.0}),
    Regime("small critic: width 64", "critic capacity", critic={"width": 64}),
    Regime("1 critic step per generator step", "critic steps", trainer={"dfake_gen_update_ratio": 1}),
    Regime("2 critic steps per generator step", "critic steps", trainer={"dfake_gen_update_ratio": 2}),
)


#: The cell the map found worst for DMD (measured with ``msm-demo --regimes``; docs/demo.md has the
#: map). The default demo and the benchmark run there.
WORST_REGIME = "slow + faint + high contrast"


def demo_base(**changes) -> ExperimentConfig:
    """The default experiment: :data:`WORST_REGIME` with the demo's networks, training and seeds."""
    regime = next(r for r in REGIMES if r.name == WORST_REGIME)
    return regime_config(regime, **changes)


def regime_config(regime: Regime, base: ExperimentConfig = None, **changes) -> ExperimentConfig:
    """The experiment of one regime: ``base`` (default :class:`ExperimentConfig`) with the cell's changes.

    >>> regime_config(REGIMES[1]).data.speeds
    (0.25, 0.5)
    """
    base = base or ExperimentConfig()
    return replace(base, data=replace(base.data, **regime.data), critic_net=replace(base.critic_net, **regime.critic),
                   trainer={**base.trainer, **regime.trainer}, **changes)


def run_regime_map(regimes=REGIMES, base: ExperimentConfig = None, progress: bool = True) -> dict:
    """Run plain DMD in every regime; returns the JSON-ready map (``cells``, ``worst``, ``versions``...).

    ``base`` fixes seeds, steps, checkpoints and evaluation size (its arms are ignored: only DMD
    runs). Each cell records, per checkpoint, every seed's values of :data:`MAP_KEYS`, the
    student checks, and their mean and spread.
    """
    base = replace(base or ExperimentConfig(), arms=(Arm(ARM_DMD),), flow_metrics=False)
    started = time.perf_counter()
    cells = []
    for regime in regimes:
        config = regime_config(regime, base)
        result = run_experiment(config, progress=progress)
        videos, _ = make_dataset(config.data)
        initial = result["initial"]["metrics"]["nearest_frame_rms"]
        points = []
        for i, step in enumerate(config.eval_steps()):
            per_seed = {}
            for run in result["runs"]:
                point = run["checkpoints"][i]
                checks = check_values(point["truth"], point["metrics"], initial)
                per_seed[run["seed"]] = {**{k: point["truth"][k] for k, *_ in MAP_KEYS},
                                         "passed": all(c["ok"] for c in checks.values()),
                                         "failed": [k for k, c in checks.items() if not c["ok"]]}
            points.append({"step": step, "seeds": per_seed, **_stats(per_seed)})
        cells.append({
            "regime": regime.to_dict(),
            "appearance_over_motion": appearance_to_motion_ratio(videos),
            "critic_ratio": config.critic_ratio,
            "seconds": result["total_seconds"],
            "train_seconds": sum(r["train_seconds"] for r in result["runs"]),
            "checkpoints": points,
        })
    out = {"config": {**base.to_dict(), "regimes": [r.to_dict() for r in regimes]}, "versions": library_versions(),
           "cells": cells, "total_seconds": time.perf_counter() - started}
    out["worst"] = worst_regime(out)
    return out


def _stats(per_seed: dict) -> dict:
    out = {}
    for key, *_ in MAP_KEYS:
        values = [v[key] for v in per_seed.values()]
        mean = sum(values) / len(values)
        std = math.sqrt(sum((v - mean) ** 2 for v in values) / (len(values) - 1)) if len(values) > 1 else 0.0
        out[key] = {"mean": mean, "std": std, "min": min(values), "max": max(values)}
    out["passed_seeds"] = sum(v["passed"] for v in per_seed.values())
    out["passed"] = out["passed_seeds"] == len(per_seed)
    return out


def worst_regime(regime_map: dict):
    """The name of the worst cell for DMD (module docstring), or None when no cell passes its checks.

    >>> cell = lambda name, err, ok: {"regime": {"name": name}, "checkpoints": [
    ...     {"passed": ok, "relative_velocity_error": {"mean": err}}]}
    >>> worst_regime({"cells": [cell("a", 0.1, True), cell("b", 0.5, False), cell("c", 0.2, True)]})
    'c'
    """
    passing = [c for c in regime_map["cells"] if c["checkpoints"][-1]["passed"]]
    if not passing:
        return None
    return max(passing, key=lambda c: c["checkpoints"][-1]["relative_velocity_error"]["mean"])["regime"]["name"]


def regime_markdown(regime_map: dict) -> str:
    """The map as Markdown: one row per cell at the end of training, then the training-length table."""
    cfg = regime_map["config"]
    seeds = len(cfg["seeds"])
    lines = [
        "# msm-demo regime map: where does plain DMD lose motion?", "",
        f"DMD only, {seeds} seeds per cell, {cfg['steps']} generator steps; cells change one thing from the base. "
        "Cells: mean [min, max] over seeds at the end of training. Checks: the student checks (blob tracked, "
        "direction, frozen, blob strength, frames close to data) passed on how many seeds.", "",
    ]
    worst = regime_map["worst"]
    if worst is None:
        lines += ["**No cell's DMD student passes its checks on every seed**: no regime can be benchmarked.", ""]
    else:
        lines += [f"**Worst regime for DMD** (highest velocity error / true speed among the cells whose student passes "
                  f"every check on every seed): **{worst}**.", ""]
    header = ["cell", "axis", "appearance / motion"] + [t for _, t, _ in MAP_KEYS] + ["checks passed", "failed checks"]
    lines += ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    for cell in regime_map["cells"]:
        end = cell["checkpoints"][-1]
        failed = sorted({k for s in end["seeds"].values() for k in s["failed"]})
        cells = [cell["regime"]["name"], cell["regime"]["axis"], f"{cell['appearance_over_motion']:.0f}"]
        cells += [f"{end[k]['mean']:.3g} [{end[k]['min']:.2g}, {end[k]['max']:.2g}]" for k, *_ in MAP_KEYS]
        cells += [f"{end['passed_seeds']}/{seeds}", ", ".join(failed) or "-"]
        lines.append("| " + " | ".join(cells) + " |")
    steps = [p["step"] for p in regime_map["cells"][0]["checkpoints"]]
    lines += ["", "## Over training (velocity error / true speed, speed / true, frozen; checks passed)", "",
              "| cell | " + " | ".join(f"step {s}" for s in steps) + " |", "|" + "---|" * (len(steps) + 1)]
    for cell in regime_map["cells"]:
        cells = [f"{p['relative_velocity_error']['mean']:.2f} / {p['speed_ratio']['mean']:.2f} / "
                 f"{p['frozen_share']['mean']:.2f}; {p['passed_seeds']}/{seeds}" for p in cell["checkpoints"]]
        lines.append(f"| {cell['regime']['name']} | " + " | ".join(cells) + " |")
    versions = ", ".join(f"{k} {v}" for k, v in regime_map["versions"].items())
    lines += ["", f"Versions: {versions}. Total time: {regime_map['total_seconds']:.0f} s.",
              "", "Checks: " + "; ".join(f"{meaning} {comparison} {threshold:g}" for _, comparison, threshold, meaning in CHECKS) + "."]
    return "\n".join(lines) + "\n"


def plot_regime_map(regime_map: dict, path) -> None:
    """One row per cell, one panel per :data:`MAP_KEYS` entry: the end of training (mean, seed range)
    and earlier checkpoints (faded); cells whose student fails its checks in grey."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    cells = regime_map["cells"]
    fig, axes = plt.subplots(1, len(MAP_KEYS), figsize=(4 * len(MAP_KEYS), 0.45 * len(cells) + 1.6), sharey=True)
    rows = list(range(len(cells)))[::-1]
    for ax, (key, title, target) in zip(axes, MAP_KEYS):
        for y, cell in zip(rows, cells):
            points = cell["checkpoints"]
            for k, p in enumerate(points[:-1]):
                ax.plot(p[key]["mean"], y, "o", color="tab:blue", alpha=0.15 + 0.5 * k / max(1, len(points) - 1), ms=4)
            end = points[-1]
            colour = "tab:red" if cell["regime"]["name"] == regime_map.get("worst") else (
                "tab:blue" if end["passed"] else "gray")
            ax.errorbar(end[key]["mean"], y, xerr=[[end[key]["mean"] - end[key]["min"]], [end[key]["max"] - end[key]["mean"]]],
                        fmt="s", color=colour, capsize=3)
        if target is not None:
            ax.axvline(target, color="k", ls=":", lw=1)
        ax.set_xlim(left=0)
        ax.set_title(title, fontsize=9)
    axes[0].set_yticks(rows)
    axes[0].set_yticklabels([c["regime"]["name"] for c in cells], fontsize=8)
    fig.suptitle("DMD per regime: squares = end of training (bar: seed range; grey: checks fail; red: worst), "
                 "faded dots = earlier checkpoints", fontsize=9)
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)
