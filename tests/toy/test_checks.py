"""Student checks and paired verdicts, on hand-made results whose answers are known."""

from __future__ import annotations

import pytest

from msm_plugin.toy.checks import CHECKS, check_values, compare_arms, paired_verdict, student_checks

GOOD = {"tracked_share": 0.95, "direction_accuracy": 0.92, "frozen_share": 0.05, "blob_strength": 0.8}


def _result(runs, initial_rms=0.2):
    return {"initial": {"metrics": {"nearest_frame_rms": initial_rms}}, "teacher": {"metrics": {"nearest_frame_rms": 0.0}},
            "data": {"truth": {}, "metrics": {"smoothness_error": 0.1}}, "runs": runs}


def _run(arm, seed, rms=0.04, **truth):
    return {"arm": arm, "seed": seed, "truth": {**GOOD, **truth}, "metrics": {"nearest_frame_rms": rms}}


def test_a_good_student_passes_every_check():
    checks = student_checks(_result([_run("dmd", s) for s in range(3)]))
    assert checks["passed"] and checks["failed"] == [] and sorted(checks["seeds"]) == [0, 1, 2]
    assert checks["seeds"][1]["frame_distance_ratio"]["value"] == pytest.approx(0.2)  # 0.04 / 0.2


@pytest.mark.parametrize(
    "change, key",
    [
        ({"tracked_share": 0.89}, "tracked_share"),
        ({"direction_accuracy": 0.85}, "direction_accuracy"),
        ({"frozen_share": 0.11}, "frozen_share"),
        ({"blob_strength": 0.49}, "blob_strength"),
        ({"rms": 0.051}, "frame_distance_ratio"),  # 0.051 / 0.2 = 0.255 > 0.25
    ],
)
def test_each_check_fails_alone_just_past_its_threshold(change, key):
    runs = [_run("dmd", 0), _run("dmd", 1, **change), _run("dmd+msm", 1, blob_strength=0.1)]
    checks = student_checks(_result(runs))
    assert not checks["passed"] and checks["failed"] == [(1, key)]  # only DMD's runs are checked


def test_thresholds_are_the_documented_ones():
    assert [(k, c, t) for k, c, t, _ in CHECKS] == [
        ("tracked_share", ">=", 0.9), ("direction_accuracy", ">=", 0.9), ("frozen_share", "<=", 0.1),
        ("blob_strength", ">=", 0.5), ("frame_distance_ratio", "<=", 0.25)]
    assert all(v["ok"] for v in check_values({**GOOD, "frozen_share": 0.1}, {"nearest_frame_rms": 0.05}, 0.2).values())


def test_no_dmd_run_means_no_pass():
    assert not student_checks(_result([_run("dmd+msm", 0)]))["passed"]


def test_paired_verdicts_hand_values():
    lower = paired_verdict([0.30, 0.20, 0.40], [0.10, 0.25, 0.20])  # better on two seeds, worse on one
    assert lower["verdict"] == "unresolved"
    assert lower["differences"] == pytest.approx([-0.2, 0.05, -0.2]) and lower["mean"] == pytest.approx(-0.35 / 3)
    assert (lower["min"], lower["max"]) == (pytest.approx(-0.2), pytest.approx(0.05))
    assert paired_verdict([0.1, 0.2], [0.3, 0.25])["verdict"] == "worse on every seed"
    # With a target, distance to it decides: 0.9 -> 1.05 is closer to 1 (0.1 -> 0.05) although it grew.
    assert paired_verdict([0.9, 0.8], [1.05, 0.9], target=1.0)["verdict"] == "better on every seed"
    assert paired_verdict([0.9, 0.8], [1.2, 0.9], target=1.0)["verdict"] == "unresolved"  # 0.1 -> 0.2 on seed 0
    assert paired_verdict([0.5, 0.4], [0.3, 0.35], target="data", data_value=0.3)["verdict"] == "better on every seed"
    with pytest.raises(ValueError, match="expected one value per seed for both arms, got 2 and 1"):
        paired_verdict([0.1, 0.2], [0.3])


def test_compare_arms_pairs_by_seed_and_skips_missing_metrics():
    runs = [_run("dmd", 0, relative_velocity_error=0.3), _run("dmd", 1, relative_velocity_error=0.2),
            _run("msm", 1, relative_velocity_error=0.1), _run("msm", 0, relative_velocity_error=0.25)]
    for run in runs:
        run["truth"]["speed_ratio"] = 0.9
    out = compare_arms(_result(runs))
    assert list(out) == ["msm"]
    entry = out["msm"]["relative_velocity_error"]
    assert entry["seeds"] == [0, 1] and entry["differences"] == pytest.approx([-0.05, -0.1])
    assert entry["verdict"] == "better on every seed"
    assert out["msm"]["speed_ratio"]["verdict"] == "unresolved"  # equal on every seed: a tie
    assert "smoothness_error" not in out["msm"]  # no run measured it
    assert out["msm"]["over_training"] == []  # these runs have no checkpoints


def test_motion_is_also_compared_at_every_checkpoint():
    def run(arm, seed, errors):
        return {**_run(arm, seed), "checkpoints": [
            {"step": step, "truth": {"relative_velocity_error": e, "speed_ratio": 0.5, "frozen_share": 0.2}}
            for step, e in zip((50, 100), errors)]}

    runs = [run("dmd", 0, (0.6, 0.1)), run("dmd", 1, (0.5, 0.1)), run("msm", 0, (0.4, 0.2)), run("msm", 1, (0.45, 0.05))]
    curve = compare_arms(_result(runs))["msm"]["over_training"]
    assert [p["step"] for p in curve] == [50, 100]
    assert curve[0]["relative_velocity_error"]["verdict"] == "better on every seed"  # 0.6 -> 0.4, 0.5 -> 0.45
    assert curve[1]["relative_velocity_error"]["verdict"] == "unresolved"  # worse on seed 0, better on seed 1
    assert set(curve[0]) == {"step", "relative_velocity_error", "speed_ratio", "frozen_share"}
