"""msm-demo end to end (the --quick preset), the teacher's motion, a fair protocol, determinism, the CLI."""

from __future__ import annotations

import math
import re
import time
from pathlib import Path

import imageio.v3 as iio
import matplotlib.image as mpimg
import pytest
import torch

from msm_plugin.metrics import read_tensor_file
from msm_plugin.toy.cli import build_parser, config_from_args, main
from msm_plugin.toy.experiment import ARM_DMD, ARM_MSM, Arm, ExperimentConfig, pareto_arms, run_experiment
from msm_plugin.toy.report import labelled_grid

from .conftest import TINY_DATA, TINY_NET

README = (Path(__file__).resolve().parents[2] / "README.md").read_text()


def _finite_numbers(value):
    if isinstance(value, dict):
        return all(_finite_numbers(v) for v in value.values())
    if isinstance(value, list):
        return all(_finite_numbers(v) for v in value)
    return not isinstance(value, float) or math.isfinite(value)


def test_quick_run_writes_valid_files(quick_run):
    out, result = quick_run
    seeds = result["config"]["seeds"]
    for name in ("results.md", "results.json", "plots/motion_over_training.png", "plots/motion_over_time.png"):
        assert (out / name).is_file(), name
    table = (out / "results.md").read_text()
    # Ground-truth motion leads, then flow and smoothness, then appearance.
    order = [table.index(h) for h in ("## Ground-truth motion", "## Flow and smoothness", "## Appearance", "## Per seed")]
    assert order == sorted(order)
    assert re.search(rf"\| {re.escape(ARM_MSM)} \| {len(seeds)} \| \d", table)
    frames, size = result["config"]["data"]["num_frames"], result["config"]["data"]["size"]
    for suffix in ("gif", "mp4"):
        movie = iio.imread(out / "videos" / f"seed{seeds[0]}.{suffix}")
        # 4 conditions x 6x upscale plus an 18-px title band; columns data | teacher | DMD | DMD+MSM.
        assert movie.shape == (frames, 4 * size * 6 + 18, 4 * size * 6, 3), suffix
        assert movie[:, :18].min() < 100  # titles are written in the header band
    for name in ("data", "teacher", ARM_DMD, ARM_MSM):
        videos = read_tensor_file(out / "tensors" / f"{name}.pt")  # what msm-eval reads
        assert videos.shape[1:] == (frames, 3, size, size) and 0 <= videos.min() and videos.max() <= 1
    assert read_tensor_file(out / "tensors" / f"{ARM_MSM}.pt").shape[0] == len(seeds) * result["config"]["num_eval"]
    png = mpimg.imread(out / "plots" / "motion_over_training.png")
    assert png.ndim == 3 and png.shape[0] > 100


def test_quick_run_numbers_are_finite_and_complete(quick_run):
    _, result = quick_run
    summary = result["summary"]
    assert set(summary) == {ARM_DMD, ARM_MSM}
    for entry in summary.values():
        for key in ("velocity_error", "frozen_share", "direction_accuracy", "flicker"):
            assert entry["truth"][key]["n"] == len(result["config"]["seeds"]), key
        for key in ("appearance_fd", "smoothness_error", "nn_rms"):
            assert math.isfinite(entry["metrics"][key]["mean"]), key
        assert [p["iter"] for p in entry["curve"]] == result["config"]["eval_iters"]
    assert all(_finite_numbers(run["truth"]) for run in result["runs"])


def test_teacher_models_the_datas_motion(quick_run):
    # The thresholds, measured on the teacher's samples against the data.
    _, result = quick_run
    data, teacher = result["data"], result["teacher"]
    true_speed = sum(result["config"]["data"]["speeds"]) / len(result["config"]["data"]["speeds"])
    assert data["truth"]["velocity_error"] < 0.01  # the tracker recovers the data's velocities
    assert teacher["metrics"]["smoothness_error"] <= 1.5 * data["metrics"]["smoothness_error"]
    assert 0.67 <= teacher["metrics"]["motion_energy"] / data["metrics"]["motion_energy"] <= 1.5
    assert teacher["truth"]["velocity_error"] <= 0.25 * true_speed
    assert teacher["truth"]["direction_accuracy"] >= 0.9
    assert data["appearance_over_motion"] >= 10  # the paper's regime: motion >= 10x below appearance


def test_arms_share_seeds_prompts_and_iterations(quick_run):
    _, result = quick_run
    runs = result["runs"]
    by_arm = {arm: {r["seed"]: r for r in runs if r["arm"] == arm} for arm in (ARM_DMD, ARM_MSM)}
    assert sorted(by_arm[ARM_DMD]) == sorted(by_arm[ARM_MSM]) == result["config"]["seeds"]
    for seed, base in by_arm[ARM_DMD].items():
        other = by_arm[ARM_MSM][seed]
        for key in ("iters", "generator_steps", "prompt_digest"):
            assert base[key] == other[key], (seed, key)
        assert "msm_loss" in other["final_logs"] and "msm_loss" not in base["final_logs"]
    assert len({r["prompt_digest"] for r in by_arm[ARM_DMD].values()}) == len(result["config"]["seeds"])


def _tiny_config(**changes):
    base = dict(data=TINY_DATA, net=TINY_NET, seeds=(0,), iters=4, checkpoints=2, num_eval=8, teacher_steps=2,
                trainer={"batch_size": 2})
    base.update(changes)
    return ExperimentConfig(**base)


def test_fixed_seed_gives_identical_numbers():
    first = run_experiment(_tiny_config(), progress=False)
    second = run_experiment(_tiny_config(), progress=False)
    assert first["runs"] == [{**r, "train_seconds": a["train_seconds"]} for r, a in zip(second["runs"], first["runs"])]
    for key, video in first["videos"].items():
        assert torch.equal(video, second["videos"][key]), key


def test_more_arms_add_a_pareto_plot(tmp_path):
    from msm_plugin.toy.report import write_report

    arms = pareto_arms(lams=(0.5,))
    result = run_experiment(_tiny_config(arms=arms, iters=2, checkpoints=1), progress=False)
    assert [r["arm"] for r in result["runs"]] == ["dmd", "msm lam=0.5 motion", "msm lam=0.5 dmd"]
    assert [r["options"] for r in result["runs"]][1:] == [{"normalization": "motion"}, {"normalization": "dmd"}]
    paths = write_report(result, tmp_path / "out")
    assert (tmp_path / "out" / "plots" / "pareto.png") in paths["plots"]
    assert (tmp_path / "out" / "tensors" / "msm_lam0.5_dmd.pt").is_file()


def test_cli_options_reach_the_config():
    cfg = config_from_args(build_parser().parse_args(["--quick", "--lam", "4", "--normalization", "dmd", "--iters", "3"]))
    assert (cfg.iters, cfg.checkpoints) == (3, 2)
    assert cfg.arms == (Arm("dmd"), Arm("dmd+msm", lam=4.0, options=(("normalization", "dmd"),)))
    pareto = config_from_args(build_parser().parse_args(["--pareto"]))
    assert len(pareto.arms) == 9 and pareto.iters == ExperimentConfig().iters
    options = config_from_args(build_parser().parse_args(["--options", "--lam", "0.5", "--framewise-critic"]))
    assert options.framewise_critic and not pareto.framewise_critic
    assert [a.lam for a in options.arms] == [0.0] + [0.5] * 4
    assert dict(options.arms[2].options)["smoothing"] == "binomial" and dict(options.arms[4].options)["t_min"] == 0.5


def _one_line_exit_2(capsys, argv, match):
    started = time.perf_counter()
    assert main(argv) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and re.search(match, err), err
    return time.perf_counter() - started


def test_cli_errors_exit_2_with_one_line(capsys):
    _one_line_exit_2(capsys, ["--quick", "--threads", "0"], "msm-demo: error: --threads should be >= 1, got 0")
    _one_line_exit_2(capsys, ["--quick", "--iters", "0"], "msm-demo: error: `iters` should be a positive int, got 0")
    _one_line_exit_2(capsys, ["--lam", "0"], r"msm-demo: error: --lam should be > 0 \(lam 0 is the DMD arm\), got 0")
    _one_line_exit_2(capsys, ["--pareto", "--options"], "msm-demo: error: --pareto and --options are two different sweeps: choose one")


def test_unwritable_out_fails_before_any_work(capsys, tmp_path):
    seconds = _one_line_exit_2(capsys, ["--out", "/etc/passwd/x"], r"msm-demo: error: cannot write to --out /etc/passwd/x: ")
    assert seconds < 5  # no training started
    assert not (tmp_path / "x").exists()


def test_help_shows_defaults_and_no_markup(capsys):
    with pytest.raises(SystemExit) as exit_info:
        main(["--help"])
    assert exit_info.value.code == 0
    text = capsys.readouterr().out
    assert "::" not in text and "``" not in text and ":func:" not in text
    assert "(default: msm-demo-out)" in text and "(default: 1.0)" in text and "(default: motion)" in text
    assert "(default: 1)" in text  # threads


def test_cli_and_readme_agree_on_time():
    from msm_plugin.toy import cli

    claim = re.search(r"default: 3 seeds, DMD and DMD\+MSM \(about (\d+) min on 2 idle cores\)", cli.__doc__)
    assert claim, "the CLI's time claim moved"
    assert f"msm-demo                          # about {claim.group(1)} min on 2 idle cores" in README
    pareto = re.search(r"\(9 arms, about (\d+) min\)", " ".join(cli.build_parser().format_help().split()))
    assert pareto and f"about {pareto.group(1)} min" in README


@pytest.mark.parametrize(
    "kwargs, error, match",
    [
        ({"seeds": ()}, ValueError, r"`seeds` should be a non-empty list of non-negative ints, got \[\]"),
        ({"seeds": (1, 1)}, ValueError, r"`seeds` should not repeat, got \[1, 1\]"),
        ({"iters": 0}, ValueError, "`iters` should be a positive int, got 0"),
        ({"checkpoints": 5, "iters": 4}, ValueError, r"`checkpoints` should be an int in \[1, iters=4\], got 5"),
        ({"num_eval": 1}, ValueError, "`num_eval` should be an int >= 2"),
        ({"arms": ()}, TypeError, r"`arms` should be a non-empty list of Arm, got \(\)"),
        ({"arms": (Arm("a"), Arm("a"))}, ValueError, r"arm names should not repeat, got \['a', 'a'\]"),
        ({"trainer": {"bs": 1}}, ValueError, r"unknown trainer option\(s\) \['bs'\]"),
    ],
)
def test_config_errors(kwargs, error, match):
    with pytest.raises(error, match=match):
        ExperimentConfig(**kwargs)


@pytest.mark.parametrize(
    "kwargs, match",
    [
        ({"name": ""}, "an arm needs a non-empty name, got ''"),
        ({"name": "x", "lam": -1.0}, r"arm 'x': `lam` should be a number >= 0, got -1.0"),
        ({"name": "x", "options": (("lambda", 1),)}, r"unknown MSM option\(s\) \['lambda'\]"),
    ],
)
def test_arm_errors(kwargs, match):
    with pytest.raises(ValueError, match=match):
        Arm(**kwargs)


def test_labelled_grid_checks_shapes_and_titles():
    with pytest.raises(ValueError, match=r"expected videos \[R, F, C, H, W\] of one shape per column"):
        labelled_grid([torch.zeros(1, 2, 3, 4, 4), torch.zeros(1, 3, 3, 4, 4)], ["a", "b"], ["r"])
    with pytest.raises(ValueError, match="expected one title per column and per row, got 1 titles for 2 columns"):
        labelled_grid([torch.zeros(1, 2, 3, 4, 4)] * 2, ["a"], ["r"])


def test_goals_are_checked_against_hand_values():
    from msm_plugin.toy.report import goals

    def entry(vel, frozen, fd):
        stat = lambda v: {"mean": v, "std": 0.0, "n": 3}  # noqa: E731
        return {"truth": {"velocity_error": stat(vel), "frozen_share": stat(frozen)}, "metrics": {"appearance_fd": stat(fd)}}

    result = {"summary": {ARM_DMD: entry(0.8, 0.4, 0.30), ARM_MSM: entry(0.4, 0.3, 0.331)}}
    # 0.4 <= 0.5 * 0.8 (met, at the boundary); 0.3 > 0.5 * 0.4 (not met); 0.331 > 1.1 * 0.30 = 0.33 (not met).
    assert [ok for _, ok in goals(result)] == [True, False, False]
    assert goals({"summary": {ARM_DMD: entry(1, 1, 1)}}) == []
