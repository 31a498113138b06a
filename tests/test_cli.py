"""``msm-plugin`` (msm_plugin/cli.py): patch, config and doctor, through main() and one real subprocess."""

import os
import subprocess
import sys
from pathlib import Path

from omegaconf import OmegaConf

from msm_plugin.cli import main, probe_host
from msm_plugin.config import parse_extra_losses
from msm_plugin.shipped import shipped_files
from tests.causvid_standin import SCRIPT, write_causvid_standin

ROOT = Path(__file__).resolve().parents[1]


def test_patch_check_then_apply_then_already_applied(tmp_path, capsys):
    script = write_causvid_standin(tmp_path)
    assert main(["patch", "causvid", str(tmp_path), "--check"]) == 0
    assert "applies cleanly" in capsys.readouterr().out and script.read_text() == SCRIPT

    assert main(["patch", "causvid", str(tmp_path)]) == 0
    patched = script.read_text()
    added = [line for line in patched.splitlines() if "msm_plugin" in line or "msm-plugin" in line]
    assert len(added) == 4 and 'check_extra_losses(config, host="causvid")' in patched
    compile(patched, str(script), "exec")  # the patched stand-in is still Python

    assert main(["patch", "causvid", str(tmp_path)]) == 0
    assert "already applied" in capsys.readouterr().out and script.read_text() == patched


def test_patch_inside_another_repository_anchors_on_dir(tmp_path, capsys):
    """DIR below an enclosing git repository: paths in the patch are still relative to DIR."""
    subprocess.run(["git", "init", "-q", str(tmp_path)], check=True)
    checkout = tmp_path / "vendor" / "CausVid"
    script = write_causvid_standin(checkout)
    assert main(["patch", "causvid", str(checkout)]) == 0
    assert "apply_extra_losses(self)" in script.read_text()


def test_patch_that_does_not_apply_changes_nothing(tmp_path, capsys):
    script = write_causvid_standin(tmp_path)
    script.write_text(SCRIPT.replace("self.max_grad_norm = 10.0", "self.max_grad_norm = 1.0"))
    before = script.read_text()
    assert main(["patch", "causvid", str(tmp_path)]) == 1
    err = capsys.readouterr().err
    assert err.startswith("msm-plugin: causvid-extra-losses.patch does not apply to") and err.count("\n") == 1
    assert script.read_text() == before


def test_patch_usage_errors(tmp_path, capsys):
    assert main(["patch", "causvid", str(tmp_path / "nope")]) == 2
    assert capsys.readouterr().err == f"msm-plugin: error: expected DIR to be a causvid checkout folder, got {tmp_path / 'nope'} (not a folder)\n"
    assert main(["patch", "causvid", str(tmp_path)]) == 2
    assert capsys.readouterr().err == f"msm-plugin: error: {tmp_path} is not a causvid checkout: it has no causvid/train_distillation.py\n"
    assert main(["patch", "causvd", str(tmp_path)]) == 2
    shipped = ", ".join(shipped_files("patch"))
    assert "causvid" in shipped
    assert capsys.readouterr().err == f"msm-plugin: error: no shipped patch named 'causvd'; shipped: {shipped}\n"


def test_config_prints_a_valid_example_and_lists_them(capsys):
    assert main(["config", "causvid_wan_stage1_msm"]) == 0
    text = capsys.readouterr().out
    assert text == (ROOT / "examples" / "configs" / "causvid_wan_stage1_msm.yaml").read_text()
    assert [spec.name for spec in parse_extra_losses(OmegaConf.create(text))] == ["msm"]
    assert main(["config"]) == 0
    listed = [line.split()[0] for line in capsys.readouterr().out.splitlines()]
    examples = [p for p in (ROOT / "examples" / "configs").iterdir() if p.suffix in (".yaml", ".py")]
    assert listed == sorted(path.stem for path in examples) and "fastgen_wan_t2v_dmd2_msm" in listed
    assert main(["config", "stage1"]) == 2
    assert f"no shipped config named 'stage1'; shipped: {', '.join(listed)}\n" in capsys.readouterr().err


def test_probe_host_reports_import_failures_without_raising(tmp_path, monkeypatch):
    (tmp_path / "cuda_at_import.py").write_text("raise RuntimeError('Found no NVIDIA driver on your system.\\nmore')\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    assert probe_host("cuda_at_import") == "installed, import fails: RuntimeError: Found no NVIDIA driver on your system."
    assert probe_host("no_such_host_pkg.dmd") == "not installed"
    assert probe_host("json.decoder") == "importable"


def test_doctor_names_torch_hosts_and_each_loss_with_its_distribution(capsys):
    assert main(["doctor"]) == 0
    out = capsys.readouterr().out
    import torch

    assert f"torch {torch.__version__}: " in out
    # every registered host with the module it probes (none of the four frameworks is installed here)
    for host, module in [("causvid", "causvid.dmd"), ("self_forcing", "model.dmd"), ("fastvideo", "fastvideo"), ("fastgen", "fastgen")]:
        assert f"  {host:<18} not installed (import {module})" in out
    assert "msm" in out and "distribution msm-plugin (msm_plugin.losses.msm:MSMTerm)" in out
    assert "  temporal_variance  distribution msm-plugin (msm_plugin.losses.temporal_variance:TemporalVarianceTerm)" in out
    assert f"  {'':<18} options: weight, threshold, eps\n" in out
    assert ", smoothing, pair_weights, pair_weights_mix, pair_weights_base" in out  # weighted MSM: an msm option
    assert "shipped patches: causvid" in out


def test_module_entry_point_in_a_subprocess(tmp_path):
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(filter(None, [str(ROOT), os.environ.get("PYTHONPATH")]))}
    done = subprocess.run(
        [sys.executable, "-m", "msm_plugin.cli", "config", "causvid_wan_stage3_msm"],
        capture_output=True, text=True, env=env, timeout=120, cwd=tmp_path,
    )
    assert done.returncode == 0, done.stderr
    assert done.stdout == (ROOT / "examples" / "configs" / "causvid_wan_stage3_msm.yaml").read_text()


def test_doctor_finds_a_host_in_the_current_directory_and_restores_sys_path(tmp_path, monkeypatch, capsys):
    """Self-Forcing is not installed: it imports from its checkout, where the user runs the doctor."""
    (tmp_path / "model").mkdir()
    (tmp_path / "model" / "__init__.py").write_text("")
    (tmp_path / "model" / "dmd.py").write_text("class DMD:\n    pass\n")
    monkeypatch.chdir(tmp_path)
    before = list(sys.path)
    try:
        assert main(["doctor"]) == 0
    finally:
        for name in ("model.dmd", "model"):
            sys.modules.pop(name, None)
    assert f"  {'self_forcing':<18} importable (import model.dmd)" in capsys.readouterr().out
    assert sys.path == before
