"""msm-demo end to end (the --quick preset), a fair protocol, determinism, and input checks."""

from __future__ import annotations

import math

import imageio.v3 as iio
import matplotlib.image as mpimg
import pytest
import torch

from msm_plugin.toy.cli import config_from_args, build_parser, main
from msm_plugin.toy.experiment import ARM_DMD, ARM_MSM, ExperimentConfig, run_experiment
from msm_plugin.toy.report import side_by_side
from msm_plugin.toy.teacher import TeacherConfig

from .conftest import TINY_DATA, TINY_TEACHER


def _finite_numbers(value):
    if isinstance(value, dict):
        return all(_finite_numbers(v) for v in value.values())
    if isinstance(value, list):
        return all(_finite_numbers(v) for v in value)
    return not isinstance(value, float) or math.isfinite(value)


def test_quick_run_writes_valid_files(quick_run):
    out, result, _ = quick_run
    seeds = result["config"]["seeds"]
    for name in ("results.md", "results.json", "plots/motion_over_time.png"):
        assert (out / name).is_file(), name
    table = (out / "results.md").read_text()
    assert f"| {ARM_DMD} | 0 |" in table and f"| {ARM_MSM} | 1 |" in table
    num_conditions = len(result["conditions"])
    frames = result["config"]["data"]["num_frames"]
    size = result["config"]["data"]["size"]
    for suffix in ("gif", "mp4"):
        movie = iio.imread(out / "videos" / f"seed{seeds[0]}.{suffix}")
        # Rows: one per condition; columns: data | teacher | DMD | DMD+MSM; pixels upscaled 4x.
        assert movie.shape == (frames, num_conditions * size * 4, 4 * size * 4, 3), suffix
        assert movie.std() > 0
    png = mpimg.imread(out / "plots" / "motion_over_time.png")
    assert png.ndim == 3 and png.shape[0] > 100


def test_quick_run_numbers_are_finite_and_complete(quick_run):
    _, result, had_teacher = quick_run
    summary = result["summary"]
    assert set(summary) == {ARM_DMD, ARM_MSM}
    for entry in summary.values():
        for ref in ("to_teacher", "to_data"):
            for key in ("motion_fd", "appearance_fd", "speed_w1", "motion_energy"):
                stat = entry[ref][key]
                assert stat["n"] == len(result["config"]["seeds"]) and math.isfinite(stat["mean"]), (ref, key)
    assert all(_finite_numbers(run[ref]) for run in result["runs"] for ref in ("to_teacher", "to_data"))
    assert result["teacher"]["cached"] is had_teacher  # trained once, then reused from the cache
    assert result["teacher"]["final_loss"] < 0.7 * result["teacher"]["initial_loss"]


def test_both_arms_share_seeds_prompts_and_iterations(quick_run):
    _, result, _ = quick_run
    runs = result["runs"]
    by_arm = {arm: {r["seed"]: r for r in runs if r["arm"] == arm} for arm in (ARM_DMD, ARM_MSM)}
    assert sorted(by_arm[ARM_DMD]) == sorted(by_arm[ARM_MSM]) == result["config"]["seeds"]
    for seed, base in by_arm[ARM_DMD].items():
        other = by_arm[ARM_MSM][seed]
        for key in ("iters", "generator_steps", "prompt_digest"):
            assert base[key] == other[key], (seed, key)
        assert base["iters"] == result["config"]["iters"]
        assert "msm_loss" in other["final_logs"] and "msm_loss" not in base["final_logs"]
    digests = {r["prompt_digest"] for r in by_arm[ARM_DMD].values()}
    assert len(digests) == len(result["config"]["seeds"])  # different seeds, different prompts


def _tiny_config(**changes):
    base = dict(data=TINY_DATA, teacher=TINY_TEACHER, seeds=(0,), iters=4, num_eval=8, trainer={"batch_size": 2})
    base.update(changes)
    return ExperimentConfig(**base)


def test_fixed_seed_gives_identical_numbers(tmp_path):
    first = run_experiment(_tiny_config(), cache_dir=tmp_path / "a", progress=False)
    second = run_experiment(_tiny_config(), cache_dir=tmp_path / "b", progress=False)
    assert first["teacher"]["cached"] is second["teacher"]["cached"] is False
    assert first["runs"] == [{**r, "train_seconds": a["train_seconds"]} for r, a in zip(second["runs"], first["runs"])]
    for key, video in first["videos"].items():
        assert torch.equal(video, second["videos"][key]), key


def test_sweep_adds_arms_and_a_tradeoff_plot(tmp_path):
    from msm_plugin.toy.report import write_report

    result = run_experiment(_tiny_config(sweep=(0.5,), iters=2), cache_dir=tmp_path, progress=False)
    assert [r["lam"] for r in result["runs"]] == [0.0, 0.5, 1.0]
    paths = write_report(result, tmp_path / "out")
    assert (tmp_path / "out" / "plots" / "tradeoff.png") in paths["plots"]


def test_cli_options_reach_the_config():
    args = build_parser().parse_args(["--quick", "--lam", "4", "--sweep", "1", "2", "--order", "2",
                                      "--normalization", "dmd", "--teacher-steps", "7", "--iters", "3"])
    cfg = config_from_args(args)
    assert (cfg.lam, cfg.sweep, cfg.iters, cfg.teacher.train_steps) == (4.0, (1.0, 2.0), 3, 7)
    assert cfg.msm_options == {"order": 2, "normalization": "dmd"}
    assert cfg.lams() == [0.0, 1.0, 2.0, 4.0]


def test_cli_errors_exit_with_a_message():
    with pytest.raises(SystemExit, match="--threads should be >= 1, got 0"):
        main(["--quick", "--threads", "0"])
    with pytest.raises(SystemExit, match="`iters` should be a positive int, got 0"):
        main(["--quick", "--iters", "0"])


@pytest.mark.parametrize(
    "kwargs, match",
    [
        ({"seeds": ()}, r"`seeds` should be a non-empty list of non-negative ints, got \[\]"),
        ({"seeds": (1, 1)}, r"`seeds` should not repeat, got \[1, 1\]"),
        ({"iters": 0}, "`iters` should be a positive int, got 0"),
        ({"lam": 0.0}, r"expected lam > 0 and sweep values >= 0, got lam=0.0, sweep=\[\]"),
        ({"num_eval": 1}, "`num_eval` should be an int >= 2"),
        ({"msm_options": {"lambda": 1}}, r"unknown MSM option\(s\) \['lambda'\]"),
        ({"trainer": {"bs": 1}}, r"unknown trainer option\(s\) \['bs'\]"),
    ],
)
def test_config_errors(kwargs, match):
    with pytest.raises(ValueError, match=match):
        ExperimentConfig(teacher=TeacherConfig(train_steps=1), **kwargs)


def test_side_by_side_checks_shapes():
    with pytest.raises(ValueError, match=r"expected videos \[R, F, C, H, W\] of one shape per column"):
        side_by_side([torch.zeros(1, 2, 3, 4, 4), torch.zeros(1, 3, 3, 4, 4)])
