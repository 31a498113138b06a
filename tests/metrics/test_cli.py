import json
import os
import subprocess
import sys
from pathlib import Path

import imageio.v3 as iio
import numpy as np
import pytest
import torch

from msm_plugin.metrics.cli import main
from msm_plugin.metrics.report import evaluate

REPO = Path(__file__).resolve().parents[2]


class MeanFeatures(torch.nn.Module):
    """[B, F, C, H, W] -> [B, 2]: mean brightness and mean absolute frame change."""

    def forward(self, videos: torch.Tensor) -> torch.Tensor:
        motion = (videos[:, 1:] - videos[:, :-1]).abs().mean(dim=(1, 2, 3, 4))
        return torch.stack([videos.mean(dim=(1, 2, 3, 4)), motion], dim=1)


@pytest.fixture
def sets(tmp_path, drifting_blobs):
    """A generated folder (3 GIFs + 1 junk file) and a reference .npy of 4 videos."""
    gen = tmp_path / "generated"
    gen.mkdir()
    for i, video in enumerate(drifting_blobs(3, seed=5)):
        iio.imwrite(gen / f"{i}.gif", np.rint(video.transpose(0, 2, 3, 1) * 255).astype(np.uint8), duration=100)
    (gen / "broken.gif").write_bytes(b"GIF89a junk")
    ref = tmp_path / "reference.npy"
    np.save(ref, drifting_blobs(4, seed=6))
    return gen, ref


def test_end_to_end_with_reference_and_exported_extractor(tmp_path, sets, capsys):
    gen, ref = sets
    extractor = tmp_path / "extractor.pt2"
    program = torch.export.export(
        MeanFeatures(), (torch.rand(2, 8, 3, 24, 24),), dynamic_shapes=({0: torch.export.Dim("batch")},)
    )
    torch.export.save(program, str(extractor))
    out = tmp_path / "eval" / "results.json"
    code = main([str(gen), "--reference", str(ref), "--out", str(out), "--feature-extractor", str(extractor)])
    assert code == 0
    result = json.loads(out.read_text())
    assert result["generated"]["num_videos"] == 3 and result["reference"]["num_videos"] == 4
    assert list(result["errors"]) == ["generated/broken.gif"]
    assert result["metrics"]["feature_fd"] > 0 and result["metrics"]["motion_fd"] > 0
    assert result["reference_metrics"]["motion_energy"] > 0
    table = (tmp_path / "eval" / "results.md").read_text()
    printed = capsys.readouterr().out
    assert table in printed and "| feature_fd |" in table
    assert f"wrote {out} and {out.with_suffix('.md')}" in printed


# TorchScript is deprecated in torch 2.13 but still what many users have on disk.
@pytest.mark.filterwarnings("ignore:`torch.jit:DeprecationWarning")
def test_torchscript_extractor_gives_the_same_distance_as_the_module(tmp_path, sets, capsys):
    gen, ref = sets
    torch.jit.script(MeanFeatures()).save(str(tmp_path / "extractor.pt"))
    out = tmp_path / "results.json"
    assert main([str(gen), "--reference", str(ref), "--out", str(out), "--feature-extractor", str(tmp_path / "extractor.pt")]) == 0
    direct = evaluate(gen, ref, feature_extractor=MeanFeatures())
    assert json.loads(out.read_text())["metrics"]["feature_fd"] == pytest.approx(direct["metrics"]["feature_fd"], rel=1e-9)


@pytest.mark.filterwarnings("ignore:`torch.jit:DeprecationWarning")
def test_failing_extractor_costs_only_feature_fd(tmp_path, sets, capsys):
    gen, ref = sets
    torch.jit.script(torch.nn.Linear(3, 3)).save(str(tmp_path / "linear.pt"))  # rejects W = 24 inputs
    out = tmp_path / "results.json"
    assert main([str(gen), "--reference", str(ref), "--out", str(out), "--feature-extractor", str(tmp_path / "linear.pt")]) == 0
    result = json.loads(out.read_text())
    assert "feature_fd" not in result["metrics"] and result["metrics"]["motion_fd"] > 0
    assert result["errors"]["feature_fd"].startswith("the feature extractor failed on a batch of shape (3, 8, 3, 24, 24)")


def test_nothing_scored_exits_one_without_an_empty_report(tmp_path, capsys):
    (tmp_path / "bad.mp4").write_bytes(b"junk")
    out = tmp_path / "results.json"
    assert main([str(tmp_path / "bad.mp4"), "--out", str(out)]) == 1
    assert not out.exists() and not out.with_suffix(".md").exists()
    err = capsys.readouterr().err
    assert err.startswith(f"msm-eval: no video in {tmp_path / 'bad.mp4'} could be scored: generated/bad.mp4: cannot decode")
    assert err.count("\n") == 1


@pytest.mark.parametrize("which", ["generated", "reference"])
def test_missing_path_is_a_one_line_usage_error_before_any_work(tmp_path, capsys, which, rng):
    np.save(tmp_path / "gen.npy", rng.random((2, 3, 3, 8, 8)).astype(np.float32))
    gen, ref = (tmp_path / "nope", tmp_path / "gen.npy") if which == "generated" else (tmp_path / "gen.npy", tmp_path / "nope")
    out = tmp_path / "results.json"
    assert main([str(gen), "--reference", str(ref), "--out", str(out)]) == 2
    flag = "GENERATED" if which == "generated" else "--reference"
    assert capsys.readouterr() == ("", f"msm-eval: error: {flag} {tmp_path / 'nope'}: no such file or folder\n")
    assert not out.exists()


def test_reference_that_cannot_be_compared_exits_one_but_keeps_the_generated_scores(tmp_path, capsys, rng):
    np.save(tmp_path / "gen.npy", rng.random((2, 3, 3, 8, 8)).astype(np.float32))
    (tmp_path / "ref.mp4").write_bytes(b"junk")
    out = tmp_path / "results.json"
    assert main([str(tmp_path / "gen.npy"), "--reference", str(tmp_path / "ref.mp4"), "--out", str(out)]) == 1
    result = json.loads(out.read_text())
    assert result["metrics"]["motion_energy"] > 0 and result["reference_metrics"] == {}
    err = capsys.readouterr().err
    assert err.startswith(f"msm-eval: the comparison with {tmp_path / 'ref.mp4'} could not be made: reference/ref.mp4: cannot decode")
    assert err.count("\n") == 1


def test_decoder_noise_does_not_reach_the_terminal(tmp_path):
    """decord and FFmpeg log to descriptor 2 from C; a real process shows whether that leaks."""
    (tmp_path / "bad.mp4").write_bytes(b"\x00\x00\x00\x18ftypmp42 not a movie")
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(filter(None, [str(REPO), os.environ.get("PYTHONPATH")]))}
    done = subprocess.run(
        [sys.executable, "-m", "msm_plugin.metrics.cli", str(tmp_path / "bad.mp4"), "--out", str(tmp_path / "r.json")],
        capture_output=True, text=True, env=env, timeout=120,
    )
    assert done.returncode == 1 and done.stdout == ""
    assert done.stderr.startswith("msm-eval: no video in") and done.stderr.count("\n") == 1, done.stderr


def test_extractor_needs_reference(tmp_path, capsys):
    with pytest.raises(SystemExit) as exit_info:
        main([str(tmp_path), "--feature-extractor", str(tmp_path / "x.pt")])
    assert exit_info.value.code == 2
    assert "--feature-extractor needs --reference" in capsys.readouterr().err


@pytest.mark.filterwarnings("ignore:`torch.jit:DeprecationWarning")
def test_unloadable_extractor(tmp_path, capsys):
    (tmp_path / "x.pt").write_bytes(b"junk")
    with pytest.raises(SystemExit) as exit_info:
        main([str(tmp_path), "--reference", str(tmp_path), "--feature-extractor", str(tmp_path / "x.pt")])
    assert exit_info.value.code == 2
    assert "cannot load feature extractor" in capsys.readouterr().err


def test_bad_static_threshold(tmp_path, capsys):
    with pytest.raises(SystemExit):
        main([str(tmp_path), "--static-threshold", "-1"])
    assert "--static-threshold should be positive, got -1.0" in capsys.readouterr().err


def test_module_entry_point_in_a_subprocess(tmp_path, rng):
    np.save(tmp_path / "gen.npy", rng.random((2, 3, 3, 8, 8)).astype(np.float32))
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(filter(None, [str(REPO), os.environ.get("PYTHONPATH")]))}
    done = subprocess.run(
        [sys.executable, "-m", "msm_plugin.metrics.cli", str(tmp_path / "gen.npy"), "--out", str(tmp_path / "r.json")],
        capture_output=True, text=True, env=env, timeout=120,
    )
    assert done.returncode == 0, done.stderr
    assert json.loads((tmp_path / "r.json").read_text())["generated"]["num_videos"] == 2
    assert "| motion_energy |" in done.stdout


class UniformFlow(torch.nn.Module):
    """Stand-in flow network: (3, 4) px everywhere, whatever the frames."""

    def forward(self, first: torch.Tensor, second: torch.Tensor) -> torch.Tensor:
        shift = torch.tensor([3.0, 4.0]).view(1, 2, 1, 1)
        return torch.zeros_like(first[:, :2]) + shift + 0 * second[:, :2]


def test_flow_network_file_drives_the_flow_metrics(tmp_path, sets):
    gen, ref = sets
    frames = torch.rand(2, 3, 24, 24)
    batch = torch.export.Dim("batch")
    program = torch.export.export(UniformFlow(), (frames, frames), dynamic_shapes=({0: batch}, {0: batch}))
    torch.export.save(program, str(tmp_path / "flow.pt2"))
    out = tmp_path / "results.json"
    assert main([str(gen), "--reference", str(ref), "--out", str(out), "--flow-network", str(tmp_path / "flow.pt2"),
                 "--fps", "8"]) == 0
    metrics = json.loads(out.read_text())["metrics"]
    # |(3, 4)| = 5 px everywhere, constant: no acceleration along the motion, and 5 px passes
    # VBench's 6 * 24 / 256 = 0.56 px threshold in every pair.
    assert metrics["flow_peak"] == pytest.approx(5.0) and metrics["flow_magnitude"] == pytest.approx(5.0)
    assert metrics["flow_accel"] == pytest.approx(0.0, abs=1e-6) and metrics["dynamic_degree_proxy"] == 1.0


def test_unloadable_flow_network(tmp_path, capsys):
    (tmp_path / "raft.pt2").write_bytes(b"junk")
    with pytest.raises(SystemExit) as exit_info:
        main([str(tmp_path), "--flow-network", str(tmp_path / "raft.pt2")])
    assert exit_info.value.code == 2
    assert "cannot load flow network" in capsys.readouterr().err


def test_bad_fps(tmp_path, capsys):
    with pytest.raises(SystemExit):
        main([str(tmp_path), "--fps", "0"])
    assert "--fps should be positive, got 0.0" in capsys.readouterr().err


def test_default_report_goes_to_its_own_folder_named_in_help(tmp_path, monkeypatch, capsys, rng):
    np.save(tmp_path / "gen.npy", rng.random((2, 3, 3, 8, 8)).astype(np.float32))
    with pytest.raises(SystemExit):
        main(["--help"])
    assert "(default: msm-eval-out/results.json, in the current folder)" in " ".join(capsys.readouterr().out.split())
    monkeypatch.chdir(tmp_path)
    assert main(["gen.npy"]) == 0
    assert sorted(p.name for p in (tmp_path / "msm-eval-out").iterdir()) == ["results.json", "results.md"]
    assert not (tmp_path / "results.json").exists() and not (tmp_path / "results.md").exists()


@pytest.mark.parametrize("foreign", ["results.json", "results.md"])
def test_a_report_msm_eval_did_not_write_is_kept_unless_forced(tmp_path, monkeypatch, capsys, rng, foreign):
    """Run inside msm-demo-out/ with --out results.json: the demo's report must survive."""
    np.save(tmp_path / "gen.npy", rng.random((2, 3, 3, 8, 8)).astype(np.float32))
    demo = {"results.json": '{"runs": []}\n', "results.md": "# msm-demo results\n"}[foreign]
    (tmp_path / foreign).write_text(demo)
    monkeypatch.chdir(tmp_path)
    assert main(["gen.npy", "--out", "results.json"]) == 2
    assert capsys.readouterr() == (
        "", f"msm-eval: error: --out: {foreign} exists and is not a report msm-eval wrote; give another --out, or --force to overwrite it\n"
    )
    assert (tmp_path / foreign).read_text() == demo and len(list(tmp_path.iterdir())) == 2  # nothing written
    assert main(["gen.npy", "--out", "results.json", "--force"]) == 0
    assert json.loads((tmp_path / "results.json").read_text())["report"] == "msm-eval"
    assert (tmp_path / "results.md").read_text().startswith("# msm-eval report\n")
    assert main(["gen.npy", "--out", "results.json"]) == 0  # its own report is replaced without --force


def test_pooled_scoring_is_said_and_groups_give_per_seed_values(tmp_path, capsys, rng):
    """msm-demo's tensors/<arm>.pt holds its seeds one after the other; --groups 3 scores each seed."""
    from msm_plugin.metrics import motion_metrics

    videos = rng.random((6, 4, 3, 8, 8)).astype(np.float32)
    videos[2:4] *= 0.5  # the groups differ in appearance
    reference = rng.random((4, 4, 3, 8, 8)).astype(np.float32)
    np.save(tmp_path / "arm.npy", videos)
    np.save(tmp_path / "data.npy", reference)
    out = tmp_path / "pooled.json"
    assert main([str(tmp_path / "arm.npy"), "--reference", str(tmp_path / "data.npy"), "--out", str(out)]) == 0
    printed = capsys.readouterr().out
    assert "The 6 generated videos are scored as one pooled set." in printed and "`--groups K`" in printed
    pooled = json.loads(out.read_text())
    assert pooled["groups"] == [] and pooled["group_summary"] == {}

    out = tmp_path / "grouped.json"
    assert main([str(tmp_path / "arm.npy"), "--reference", str(tmp_path / "data.npy"), "--out", str(out), "--groups", "3"]) == 0
    result = json.loads(out.read_text())
    assert [g["name"] for g in result["groups"]] == ["videos 0-1", "videos 2-3", "videos 4-5"]
    per_seed = [motion_metrics(videos[i : i + 2], reference)["appearance_fd"] for i in (0, 2, 4)]
    assert [g["metrics"]["appearance_fd"] for g in result["groups"]] == pytest.approx(per_seed, rel=1e-9)
    assert result["group_summary"]["appearance_fd"]["mean"] == pytest.approx(np.mean(per_seed), rel=1e-9)
    assert result["group_summary"]["appearance_fd"]["std"] == pytest.approx(np.std(per_seed, ddof=1), rel=1e-9)
    assert result["metrics"]["appearance_fd"] == pytest.approx(motion_metrics(videos, reference)["appearance_fd"], rel=1e-9)
    assert result["metrics"] == pooled["metrics"]  # the pooled values do not change with --groups
    report = (tmp_path / "grouped.md").read_text()
    assert "scored as one pooled set and as 3 groups (videos 0-1, videos 2-3, videos 4-5)" in report
    assert "| metric | pooled | 3 groups: mean ± std | reference | better | meaning |" in report


def test_groups_by_file_and_groups_that_do_not_divide(tmp_path, capsys, rng):
    folder = tmp_path / "seeds"
    folder.mkdir()
    for seed in range(2):
        np.save(folder / f"seed{seed}.npy", rng.random((3, 3, 3, 8, 8)).astype(np.float32))
    out = tmp_path / "r.json"
    assert main([str(folder), "--out", str(out), "--groups", "files"]) == 0
    result = json.loads(out.read_text())
    assert [(g["name"], g["num_videos"]) for g in result["groups"]] == [("seed0.npy", 3), ("seed1.npy", 3)]
    capsys.readouterr()
    out = tmp_path / "r4.json"
    assert main([str(folder), "--out", str(out), "--groups", "4"]) == 2
    assert capsys.readouterr().err == f"msm-eval: error: --groups 4 needs a number of generated videos divisible by 4, got 6 videos in {folder}\n"
    assert not out.exists()
    with pytest.raises(SystemExit) as exit_info:
        main([str(folder), "--groups", "0"])
    assert exit_info.value.code == 2
    assert "argument --groups: expected a positive number of groups or 'files', got '0'" in capsys.readouterr().err
