"""msm-demo end to end (the --quick preset), a fair protocol, determinism, the regime map, the CLI's refusals."""

from __future__ import annotations

import json
import math
import re
from pathlib import Path

import imageio.v3 as iio
import matplotlib.image as mpimg
import pytest
import torch

from msm_plugin.metrics import read_tensor_file
from msm_plugin.toy.benchmark import benchmark_arms, benchmark_config
from msm_plugin.toy.cli import MODES, build_parser, check_output_folder, config_from_args, main
from msm_plugin.toy.experiment import ARM_DMD, ARM_MSM, Arm, ExperimentConfig, msm_arm, run_experiment
from msm_plugin.toy.regimes import REGIMES, WORST_REGIME, Regime, demo_base, regime_markdown, run_regime_map
from msm_plugin.toy.report import SMOKE_LABEL, labelled_grid, write_report

from .conftest import TINY_CRITIC, TINY_DATA, TINY_GENERATOR

DEMO_DOC = (Path(__file__).resolve().parents[2] / "docs" / "demo.md").read_text()


def _finite_numbers(value):
    if isinstance(value, dict):
        return all(_finite_numbers(v) for v in value.values())
    if isinstance(value, list):
        return all(_finite_numbers(v) for v in value)
    return not isinstance(value, float) or math.isfinite(value)


def test_quick_run_writes_valid_files(quick_run):
    out, result = quick_run
    seeds = result["config"]["seeds"]
    for name in ("results.md", "results.json", "plots/motion_over_training.png", "plots/motion_over_time.png",
                 "plots/remainder_spectrum.png"):
        assert (out / name).is_file(), name
    table = (out / "results.md").read_text()
    order = [table.index(h) for h in ("## Ground-truth motion", "## Temporal roughness", "## Appearance", "## Per seed")]
    assert order == sorted(order)
    assert re.search(rf"\| {re.escape(ARM_MSM)} \| {len(seeds)} \| \d", table)
    frames, size = result["config"]["data"]["num_frames"], result["config"]["data"]["size"]
    for suffix in ("gif", "mp4"):
        movie = iio.imread(out / "videos" / f"seed{seeds[0]}.{suffix}")
        # 4 conditions, each over its background-removed view, x 6 upscale plus an 18-px title band;
        # columns data | teacher | DMD | DMD+MSM.
        assert movie.shape == (frames, 8 * size * 6 + 18, 4 * size * 6, 3), suffix
        assert movie[:, :18].min() < 100  # titles are written in the header band
    for name in ("data", "teacher", ARM_DMD, ARM_MSM):
        videos = read_tensor_file(out / "tensors" / f"{name}.pt")  # what msm-eval reads
        assert videos.shape[1:] == (frames, 3, size, size) and 0 <= videos.min() and videos.max() <= 1
    assert read_tensor_file(out / "tensors" / f"{ARM_MSM}.pt").shape[0] == len(seeds) * result["config"]["num_eval"]
    png = mpimg.imread(out / "plots" / "motion_over_training.png")
    assert png.ndim == 3 and png.shape[0] > 100


def test_quick_report_is_labelled_a_smoke_run_and_judges_nothing(quick_run):
    out, result = quick_run
    text = (out / "results.md").read_text()
    assert text.splitlines()[2].startswith(f"**{SMOKE_LABEL}**")
    # No check, verdict or goal is stated as met or passed in a smoke run.
    for word in ("passes", "FAILS", "met", "better on every seed", "worse on every seed", "## Student checks"):
        assert not re.search(rf"\b{re.escape(word)}\b", text), word
    assert result["smoke"] is True and result["msm_demo_kind"] == "quick"


def test_quick_run_numbers_are_finite_and_complete(quick_run):
    _, result = quick_run
    summary = result["summary"]
    assert set(summary) == {ARM_DMD, ARM_MSM}
    for entry in summary.values():
        for key in ("relative_velocity_error", "frozen_share", "direction_accuracy", "tracked_share", "blob_strength"):
            assert entry["truth"][key]["n"] == len(result["config"]["seeds"]), key
        for key in ("appearance_fd", "smoothness_error", "nearest_frame_rms"):
            assert math.isfinite(entry["metrics"][key]["mean"]), key
        assert [p["step"] for p in entry["curve"]] == result["config"]["eval_steps"]
    assert all(_finite_numbers(run["truth"]) for run in result["runs"])
    assert set(result["versions"]) >= {"python", "torch", "numpy", "cpu"}


def test_data_teacher_and_untrained_student_are_what_they_should_be(quick_run):
    _, result = quick_run
    data, teacher, initial = result["data"]["truth"], result["teacher"]["truth"], result["initial"]["truth"]
    # The tracker recovers the data's motion; the exact teacher's samples are data videos.
    assert data["relative_velocity_error"] < 0.01 and data["tracked_share"] == 1.0
    assert teacher["direction_accuracy"] == 1.0 and teacher["tracked_share"] == 1.0
    assert result["teacher"]["metrics"]["nearest_video_rms"] < 1e-4
    # The untrained student is the conditional mean: on a torus, no object and no motion.
    assert initial["tracked_share"] == 0.0 and initial["frozen_share"] == 1.0
    assert result["initial"]["metrics"]["nearest_frame_rms"] > 0.1
    assert result["data"]["appearance_over_motion"] >= 10  # the paper's regime: motion >= 10x below appearance


def test_arms_share_seeds_prompts_and_steps(quick_run):
    _, result = quick_run
    runs = result["runs"]
    by_arm = {arm: {r["seed"]: r for r in runs if r["arm"] == arm} for arm in (ARM_DMD, ARM_MSM)}
    assert sorted(by_arm[ARM_DMD]) == sorted(by_arm[ARM_MSM]) == result["config"]["seeds"]
    for seed, base in by_arm[ARM_DMD].items():
        other = by_arm[ARM_MSM][seed]
        for key in ("steps", "trainer_steps", "prompt_digest"):
            assert base[key] == other[key], (seed, key)
        assert "msm_loss" in other["final_logs"] and "msm_loss" not in base["final_logs"]
        assert other["losses"] == {"extra_losses": ["msm"], "msm": {}} and base["losses"] == {}
    assert len({r["prompt_digest"] for r in by_arm[ARM_DMD].values()}) == len(result["config"]["seeds"])


def _tiny_config(**changes):
    base = dict(data=TINY_DATA, generator_net=TINY_GENERATOR, critic_net=TINY_CRITIC, seeds=(0,), steps=2,
                checkpoints=2, num_eval=8, teacher_steps=2, trainer={"batch_size": 2, "dfake_gen_update_ratio": 2},
                flow_metrics=False)
    base.update(changes)
    return ExperimentConfig(**base)


def test_fixed_seed_gives_identical_numbers():
    first = run_experiment(_tiny_config(), progress=False)
    second = run_experiment(_tiny_config(), progress=False)
    timings = ("train_seconds", "train_cpu_seconds")
    assert first["runs"] == [{**r, **{k: a[k] for k in timings}} for r, a in zip(second["runs"], first["runs"])]
    for key, video in first["videos"].items():
        assert torch.equal(video, second["videos"][key]), key
    # steps count generator updates: CausVid's steps 0 and 2 (ratio 2) update it, 3 trainer steps in all.
    assert first["runs"][0]["trainer_steps"] == 3


def test_more_arms_and_the_report_of_a_failing_student(tmp_path):
    arms = (Arm("dmd"), msm_arm("msm lam=0.5", lam=0.5), msm_arm("msm dmd-norm", lam=1.0, normalization="dmd"))
    result = run_experiment(_tiny_config(arms=arms, seeds=(0, 1)), progress=False)
    assert [r["arm"] for r in result["runs"]][:3] == ["dmd", "msm lam=0.5", "msm dmd-norm"]
    assert set(result["comparisons"]) == {"msm lam=0.5", "msm dmd-norm"}
    paths = write_report(result, tmp_path / "out")
    assert (tmp_path / "out" / "tensors" / "msm_lam0.5.pt") in paths["tensors"]
    text = (tmp_path / "out" / "results.md").read_text()
    # Two steps teach nothing: the first line says so and no verdict is shown.
    assert "**The DMD student FAILS its checks (seed 0: tracked_share 0" in text.splitlines()[2]
    assert "no conclusion about MSM" in text.splitlines()[2]
    assert "better on every seed" not in text and "worse on every seed" not in text
    # Had the student passed, every arm would be set against DMD, one column each in the summary.
    from msm_plugin.toy.report import markdown_report

    result["checks"] = {**result["checks"], "passed": True, "failed": []}
    text = markdown_report(result)
    assert "| metric (arm − DMD) | msm lam=0.5 | msm dmd-norm |" in text
    assert "### msm lam=0.5 against DMD" in text and "### msm dmd-norm against DMD" in text
    assert text.splitlines()[2].startswith("**The DMD student passes every check on 2 of 2 seeds**")


def test_benchmark_arms_are_user_configs():
    config = benchmark_config()
    assert config.seeds == (0, 1, 2, 3, 4) and config.data == demo_base().data
    assert [a.losses for a in benchmark_arms()] == [
        {}, *({"extra_losses": ["msm"], "msm": {"lam": lam}} for lam in (0.25, 0.5, 1.0)),
        {"extra_losses": ["msm"], "msm": {"lam": 1.0, "pair_weights": "hybrid"}},
        {"extra_losses": ["temporal_variance"], "temporal_variance": {"weight": 0.05, "threshold": 0.8}}]


def test_the_default_regime_is_a_cell_of_the_map_named_in_the_docs():
    assert WORST_REGIME in [r.name for r in REGIMES]
    assert f"**{WORST_REGIME}**" in DEMO_DOC


def test_a_tiny_regime_map(tmp_path):
    regimes = (Regime("base", "base"), Regime("slow", "motion speed", data={"speeds": (0.5,)}),
               Regime("lazy critic", "critic steps", trainer={"dfake_gen_update_ratio": 1}))
    regime_map = run_regime_map(regimes, base=_tiny_config(), progress=False)
    assert [c["regime"]["name"] for c in regime_map["cells"]] == ["base", "slow", "lazy critic"]
    assert [c["critic_ratio"] for c in regime_map["cells"]] == [2, 2, 1]
    slow, base = regime_map["cells"][1], regime_map["cells"][0]
    assert slow["appearance_over_motion"] > base["appearance_over_motion"]  # half the speed, less motion energy
    end = base["checkpoints"][-1]
    assert set(end["seeds"]) == {0} and end["passed"] is False  # two steps teach nothing
    assert regime_map["worst"] is None
    text = regime_markdown(regime_map)
    assert "No cell's DMD student passes its checks on every seed" in text and "| lazy critic | critic steps |" in text


def test_cli_options_reach_the_config():
    cfg = config_from_args(build_parser().parse_args(["--quick", "--lam", "4", "--normalization", "dmd", "--steps", "3"]))
    assert (cfg.steps, cfg.checkpoints) == (3, 2)
    assert cfg.arms == (Arm("dmd"), msm_arm(lam=4.0, normalization="dmd"))
    default = config_from_args(build_parser().parse_args([]))
    assert default.arms[1].losses == {"extra_losses": ["msm"], "msm": {}} and default.seeds == (0, 1, 2)
    bench = config_from_args(build_parser().parse_args(["--benchmark", "--seeds", "7"]))
    assert bench.seeds == (7,) and len(bench.arms) == 6
    # The map's cells change one thing each from the base regime; the other modes run in the worst.
    assert config_from_args(build_parser().parse_args(["--regimes"])).data == ExperimentConfig().data
    worst = next(r for r in REGIMES if r.name == WORST_REGIME)
    for cfg in (default, bench):
        assert {k: getattr(cfg.data, k) for k in worst.data} == worst.data


def _refused(capsys, argv, match, tmp_path):
    """``msm-demo argv`` exits 2 with one line matching ``match`` and creates nothing under tmp_path."""
    before = sorted(tmp_path.rglob("*"))
    try:
        code = main(argv)
    except SystemExit as exit_info:  # argparse's own refusals
        code = exit_info.code
    assert code == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and re.search(match, err), err
    assert sorted(tmp_path.rglob("*")) == before


@pytest.mark.parametrize(
    "argv, match",
    [
        (["--steps", "0"], "msm-demo: error: `steps` should be a positive int, got 0"),
        (["--num-eval", "0"], r"msm-demo: error: `num_eval` should be an int >= 2"),
        (["--quick", "--benchmark"], "msm-demo: error: argument --benchmark: not allowed with argument --quick"),
        (["--regimes", "--lam", "0.5"], "msm-demo: error: --lam and --normalization set the DMD\\+MSM arm"),
        (["--lam", "-1"], r"msm-demo: error: arm 'dmd\+msm': option `msm.lam` should be finite and >= 0, got -1.0"),
        (["--threads", "0"], "msm-demo: error: --threads should be >= 1, got 0"),
        (["--seeds", "1", "1"], r"msm-demo: error: `seeds` should not repeat, got \[1, 1\]"),
    ],
)
def test_refused_arguments_exit_2_in_one_line_and_create_nothing(capsys, tmp_path, argv, match):
    _refused(capsys, [*argv, "--out", str(tmp_path / "out")], match, tmp_path)


def test_a_run_never_overwrites_another_kind_of_report(capsys, tmp_path, quick_run):
    out, _ = quick_run
    full = tmp_path / "full"
    full.mkdir()
    (full / "results.json").write_text(json.dumps({"msm_demo_kind": "default"}))
    _refused(capsys, ["--quick", "--out", str(full)], r"--out .*full holds an msm-demo default report; this quick run "
             "would overwrite it: choose another --out or pass --force", tmp_path)
    foreign = tmp_path / "foreign"
    foreign.mkdir()
    (foreign / "results.md").write_text("someone else's")
    _refused(capsys, ["--quick", "--out", str(foreign)], r"holds files msm-demo did not write \(results.md\)", tmp_path)
    _refused(capsys, ["--out", str(foreign / "results.md")], "results.md is a file, not a folder", tmp_path)
    check_output_folder(full, "quick", force=True)  # --force lets it through
    check_output_folder(out, "quick")  # the same mode may replace its own report
    check_output_folder(tmp_path / "new" / "deeper", "default")  # created only when the run ends
    assert not (tmp_path / "new").exists()
    assert len(set(MODES.values())) == len(MODES)  # every mode has its own default folder


def test_unwritable_out_fails_before_any_work(capsys, tmp_path, monkeypatch):
    import msm_plugin.toy.experiment as experiment

    monkeypatch.setattr(experiment, "run_experiment", lambda *a, **k: pytest.fail("training started"))
    _refused(capsys, ["--out", "/etc/passwd/x"], r"msm-demo: error: cannot write to --out /etc/passwd/x: /etc/passwd is not a writable folder", tmp_path)


def test_help_shows_defaults_and_no_markup(capsys):
    with pytest.raises(SystemExit) as exit_info:
        main(["--help"])
    assert exit_info.value.code == 0
    text = capsys.readouterr().out
    assert "::" not in text and "``" not in text and ":func:" not in text
    assert "(default: 1)" in text  # threads
    assert "msm-demo-quick-out" in text


def test_cli_and_docs_agree_on_times():
    from msm_plugin.toy import cli

    for mode in ("default", "regimes", "benchmark"):
        flag = "" if mode == "default" else f" --{mode}"
        claim = re.search(rf"msm-demo{flag} +\S.*\(about (\d+) min CPU\)", cli.__doc__)
        assert claim, mode
        assert re.search(rf"`msm-demo{flag}`.*about {claim.group(1)} min", DEMO_DOC), mode


@pytest.mark.parametrize(
    "kwargs, error, match",
    [
        ({"seeds": ()}, ValueError, r"`seeds` should be a non-empty list of non-negative ints, got \[\]"),
        ({"steps": 0}, ValueError, "`steps` should be a positive int, got 0"),
        ({"checkpoints": 5, "steps": 4}, ValueError, r"`checkpoints` should be an int in \[1, steps=4\], got 5"),
        ({"arms": ()}, TypeError, r"`arms` should be a non-empty list of Arm, got \(\)"),
        ({"arms": (Arm("a"), Arm("a"))}, ValueError, r"arm names should not repeat, got \['a', 'a'\]"),
        ({"trainer": {"bs": 1}}, ValueError, r"unknown trainer option\(s\) \['bs'\]"),
        ({"trainer": {"seed": 1}}, ValueError, r"`trainer` should not set \['seed'\]"),
    ],
)
def test_config_errors(kwargs, error, match):
    with pytest.raises(error, match=match):
        ExperimentConfig(**kwargs)


@pytest.mark.parametrize(
    "args, error, match",
    [
        (("",), ValueError, "an arm needs a non-empty name, got ''"),
        (("x", {"extra_losses": ["msn"]}), ValueError, r"arm 'x': unknown extra loss 'msn' in `extra_losses`; known losses"),
        (("x", {"extra_losses": "msm"}), TypeError, r"arm 'x': `extra_losses` should be a list of loss names"),
        (("x", ["msm"]), TypeError, r"arm 'x': `losses` should be a dict of extra-loss config entries"),
    ],
)
def test_arm_errors(args, error, match):
    with pytest.raises(error, match=match):
        Arm(*args)


def test_labelled_grid_checks_shapes_and_titles():
    with pytest.raises(ValueError, match=r"expected videos \[R, F, C, H, W\] of one shape per column"):
        labelled_grid([torch.zeros(1, 2, 3, 4, 4), torch.zeros(1, 3, 3, 4, 4)], ["a", "b"], ["r"])
    with pytest.raises(ValueError, match="expected one title per column and per row, got 1 titles for 2 columns"):
        labelled_grid([torch.zeros(1, 2, 3, 4, 4)] * 2, ["a"], ["r"])
