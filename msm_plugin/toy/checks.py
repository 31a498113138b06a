"""Is the DMD student any good, and what does an extra loss change? Checks and paired verdicts.

**Student checks.** Before any statement about motion losses, the DMD student must have learnt
the data. On every seed, at the end of training:

==========================  ==========================================================
check                       passes when
==========================  ==========================================================
``tracked_share``           a blob is tracked in >= 90% of the videos
``direction_accuracy``      >= 0.9 of the videos move in the right direction
``frozen_share``            <= 0.1 of the videos are frozen
``blob_strength``           the blob is >= 0.5x as strong as the data's
``frame_distance_ratio``    frames are <= 0.25x as far from the nearest data frame as
                            the untrained student's (nearest-data frame RMS)
==========================  ==========================================================

(:mod:`.tracking` defines the first four; an untracked video counts as frozen and wrong.)

**Paired verdicts.** Every other arm is compared with DMD seed by seed (same seed, prompts,
noise and steps). For each metric in :data:`COMPARED` the difference ``arm - DMD`` is taken per
seed; the verdict is *better on every seed* when the arm is closer to the data on every seed,
*worse on every seed* when it is further on every seed, and *unresolved* otherwise (ties
included). "Closer to the data" is lower for errors and shares, nearer the data's value for
quantities with a target (speed ratio 1, blob strength 1, the data's smoothness).
"""

from __future__ import annotations

import math

__all__ = ["CHECKS", "COMPARED", "COMPARED_OVER_TRAINING", "check_values", "compare_arms", "paired_verdict", "student_checks"]

#: (key, comparison, threshold, what it means)
CHECKS = (
    ("tracked_share", ">=", 0.9, "a blob is tracked"),
    ("direction_accuracy", ">=", 0.9, "moves in the right direction"),
    ("frozen_share", "<=", 0.1, "frozen"),
    ("blob_strength", ">=", 0.5, "blob strength / data's"),
    ("frame_distance_ratio", "<=", 0.25, "nearest-data frame RMS / untrained student's"),
)

#: (part, key, target, title): target None = lower is better; "data" = the data's own value; a
#: number = that value (distance to it is compared).
COMPARED = (
    ("truth", "relative_velocity_error", None, "velocity error / true speed"),
    ("truth", "speed_ratio", 1.0, "speed / true speed (target 1)"),
    ("truth", "frozen_share", None, "frozen share"),
    ("truth", "direction_accuracy", 1.0, "direction right (target 1)"),
    ("truth", "blob_strength", 1.0, "blob strength / data's (target 1)"),
    ("metrics", "nearest_frame_rms", None, "nearest-data frame RMS"),
    ("truth", "flicker", None, "blob-free temporal change RMS (data 0)"),
    ("truth", "flicker_hf_power", None, "blob-free remainder HF power (data 0)"),
    ("metrics", "smoothness_error", "data", "motion-compensated smoothness error (target: data's)"),
    ("metrics", "appearance_fd", None, "appearance FD to data"),
)

#: The motion metrics also compared at every checkpoint: how fast the motion is learnt.
COMPARED_OVER_TRAINING = ("relative_velocity_error", "speed_ratio", "frozen_share")

BETTER, WORSE, UNRESOLVED = "better on every seed", "worse on every seed", "unresolved"


def _holds(value: float, comparison: str, threshold: float) -> bool:
    return value >= threshold if comparison == ">=" else value <= threshold


def check_values(truth: dict, metrics: dict, initial_frame_rms: float) -> dict:
    """``{key: {"value", "ok"}}`` for every check of :data:`CHECKS` on one student's measurements.

    >>> checks = check_values({"tracked_share": 1.0, "direction_accuracy": 0.9, "frozen_share": 0.1,
    ...                        "blob_strength": 0.5}, {"nearest_frame_rms": 0.05}, 0.2)
    >>> [k for k, v in checks.items() if v["ok"]]  # the thresholds themselves pass
    ['tracked_share', 'direction_accuracy', 'frozen_share', 'blob_strength', 'frame_distance_ratio']
    """
    values = {key: truth[key] for key, *_ in CHECKS if key in truth}
    rms = metrics["nearest_frame_rms"]
    values["frame_distance_ratio"] = rms / initial_frame_rms if initial_frame_rms > 0 else math.inf
    return {key: {"value": values[key], "ok": _holds(values[key], comparison, threshold)}
            for key, comparison, threshold, _ in CHECKS}


def student_checks(result: dict, arm: str = "dmd") -> dict:
    """The student checks (module docstring) of ``arm``'s runs in an experiment result.

    Returns ``{"passed": bool (every check on every seed), "seeds": {seed: {key: {"value",
    "ok"}}}, "failed": [(seed, key)], "initial_frame_rms", "teacher_frame_rms"}``.

    >>> result = {"initial": {"metrics": {"nearest_frame_rms": 0.2}}, "teacher": {"metrics": {"nearest_frame_rms": 0.0}},
    ...           "runs": [{"arm": "dmd", "seed": 0, "metrics": {"nearest_frame_rms": 0.04},
    ...                     "truth": {"tracked_share": 1.0, "direction_accuracy": 0.95, "frozen_share": 0.0,
    ...                               "blob_strength": 0.45}}]}
    >>> checks = student_checks(result)
    >>> checks["passed"], checks["failed"]
    (False, [(0, 'blob_strength')])
    """
    initial = result["initial"]["metrics"]["nearest_frame_rms"]
    seeds, failed = {}, []
    for run in result["runs"]:
        if run["arm"] != arm:
            continue
        seeds[run["seed"]] = check_values(run["truth"], run["metrics"], initial)
        failed += [(run["seed"], key) for key, entry in seeds[run["seed"]].items() if not entry["ok"]]
    return {"passed": bool(seeds) and not failed, "seeds": seeds, "failed": failed, "initial_frame_rms": initial,
            "teacher_frame_rms": result["teacher"]["metrics"]["nearest_frame_rms"]}


def _distance(value: float, target, data_value: float) -> float:
    if target is None:
        return value
    goal = data_value if target == "data" else target
    return abs(value - goal)


def paired_verdict(base: list, other: list, target=None, data_value: float = float("nan")) -> dict:
    """The paired comparison of one metric: per-seed values of DMD (``base``) and an arm (``other``).

    Returns ``{"differences": [other - base per seed], "mean", "min", "max", "verdict"}``.

    >>> paired_verdict([0.3, 0.2, 0.4], [0.1, 0.15, 0.2])["verdict"]  # an error, lower on every seed
    'better on every seed'
    >>> paired_verdict([0.8, 0.9], [1.1, 0.95], target=1.0)["verdict"]  # |0.1| < |0.2|, |0.05| < |0.1|
    'better on every seed'
    >>> paired_verdict([0.0, 0.1], [0.0, 0.0])["verdict"]  # a tie on one seed
    'unresolved'
    """
    if len(base) != len(other) or not base:
        raise ValueError(f"expected one value per seed for both arms, got {len(base)} and {len(other)}")
    differences = [o - b for b, o in zip(base, other)]
    gains = [_distance(b, target, data_value) - _distance(o, target, data_value) for b, o in zip(base, other)]
    finite = all(math.isfinite(g) for g in gains)
    if finite and all(g > 0 for g in gains):
        verdict = BETTER
    elif finite and all(g < 0 for g in gains):
        verdict = WORSE
    else:
        verdict = UNRESOLVED
    return {"differences": differences, "mean": sum(differences) / len(differences), "min": min(differences),
            "max": max(differences), "verdict": verdict}


def compare_arms(result: dict, base_arm: str = "dmd") -> dict:
    """Every arm of ``result`` against ``base_arm``, paired by seed, on every metric of :data:`COMPARED`.

    Returns ``{arm: {key: paired_verdict(...) plus "title", "seeds"}}``; metrics an arm lacks
    (e.g. flow metrics that were not computed) are left out. Under the key ``"over_training"``
    each arm also has ``[{"step", key: paired_verdict(...)}]``, one entry per checkpoint, for the
    motion metrics of :data:`COMPARED_OVER_TRAINING`.
    """
    by_arm = {}
    for run in result["runs"]:
        by_arm.setdefault(run["arm"], {})[run["seed"]] = run
    base = by_arm.get(base_arm, {})
    out = {}
    for arm, runs in by_arm.items():
        if arm == base_arm:
            continue
        seeds = sorted(set(runs) & set(base))
        if not seeds:
            continue
        entry = {}
        for part, key, target, title in COMPARED:
            if not all(key in runs[s][part] and key in base[s][part] for s in seeds):
                continue
            data_value = result["data"][part].get(key, float("nan")) if target == "data" else float("nan")
            verdict = paired_verdict([base[s][part][key] for s in seeds], [runs[s][part][key] for s in seeds],
                                     target, data_value)
            entry[key] = {**verdict, "title": title, "seeds": seeds}
        curve = []
        for i, point in enumerate(base[seeds[0]].get("checkpoints", [])):
            at = {key: paired_verdict([base[s]["checkpoints"][i]["truth"][key] for s in seeds],
                                      [runs[s]["checkpoints"][i]["truth"][key] for s in seeds], target)
                  for part, key, target, _ in COMPARED if key in COMPARED_OVER_TRAINING}
            curve.append({"step": point["step"], **at})
        out[arm] = {**entry, "over_training": curve}
    return out
