"""``msm-plugin config NAME --into CHECKOUT``: the shipped FastGen / FastVideo configs placed where
the framework's launcher reads them, and the printed command run as written, against stand-ins of
the launchers' path rules (compared with the real ones in tests/adapters/test_upstream_interfaces.py)."""

import re
import shlex
import sys
from pathlib import Path

import pytest

import msm_plugin.hosts.fastgen as fastgen
from msm_plugin import active_losses
from msm_plugin.cli import main
from msm_plugin.launch import FOLDER
from msm_plugin.shipped import find_shipped
from tests.adapters import framework_standins as sf

FASTGEN_CONFIG = "fastgen_wan_t2v_dmd2_msm"
FASTVIDEO_CONFIG = "fastvideo_wan_dmd2_t2v_msm"

# A FastGen checkout whose modules are the test stand-ins: what the shipped config imports.
FASTGEN_FILES = {
    "train.py": "",
    "fastgen/__init__.py": "",
    "fastgen/configs/__init__.py": "",
    "fastgen/configs/config_utils.py": "",
    "fastgen/configs/experiments/WanT2V/config_dmd2.py": (
        "from types import SimpleNamespace\n\n\ndef create_config():\n"
        "    return SimpleNamespace(model_class=None, log_config=SimpleNamespace(group='wan_dmd2'))\n"
    ),
    "fastgen/utils/__init__.py": "from tests.adapters.framework_standins import LazyCall, instantiate\n",
    "fastgen/methods/__init__.py": "",
    "fastgen/methods/distribution_matching/__init__.py": "",
    "fastgen/methods/distribution_matching/dmd2.py": "from tests.adapters.framework_standins import DMD2Model\n",
    "fastgen/methods/distribution_matching/causvid.py": "from tests.adapters.framework_standins import CausVidModel\n",
    "fastgen/methods/distribution_matching/self_forcing.py": "from tests.adapters.framework_standins import SelfForcingModel\n",
}


@pytest.fixture
def fastgen_checkout(tmp_path, monkeypatch):
    checkout = tmp_path / "FastGen"
    for name, text in FASTGEN_FILES.items():
        (checkout / name).parent.mkdir(parents=True, exist_ok=True)
        (checkout / name).write_text(text)
    before = set(sys.modules)
    for name in [m for m in sys.modules if m.split(".")[0] == "fastgen"]:
        monkeypatch.delitem(sys.modules, name)
    yield checkout
    for name in set(sys.modules) - before:
        if name.split(".")[0] in ("fastgen", FOLDER):
            del sys.modules[name]
    vars(fastgen).pop("MSMDMD2Model", None)


def run_as_fastgen(command: str, monkeypatch) -> object:
    """``cd DIR && torchrun ... train.py --config=PATH ...``: from DIR, with DIR on sys.path (train.py's folder)."""
    folder, launch = re.fullmatch(r"cd (\S+) && (.*)", command).groups()
    (config,) = [arg.split("=", 1)[1] for arg in shlex.split(launch) if arg.startswith("--config=")]
    monkeypatch.chdir(shlex.split(folder)[0])
    monkeypatch.syspath_prepend(shlex.split(folder)[0])
    return sf.fastgen_load_config(config)


def test_an_absolute_config_path_fails_under_fastgens_rule(fastgen_checkout, monkeypatch, tmp_path):
    """What the README showed before: --config=/path/to/fastgen_wan_t2v_dmd2_msm.py."""
    outside = tmp_path / "configs" / f"{FASTGEN_CONFIG}.py"
    outside.parent.mkdir()
    outside.write_text(find_shipped("config", FASTGEN_CONFIG).read_text())
    monkeypatch.chdir(fastgen_checkout)
    monkeypatch.syspath_prepend(str(fastgen_checkout))
    with pytest.raises(TypeError, match="relative import"):
        sf.fastgen_load_config(str(outside))


def test_placed_in_a_fastgen_checkout_the_printed_command_launches(fastgen_checkout, monkeypatch, capsys):
    assert main(["config", FASTGEN_CONFIG, "--into", str(fastgen_checkout)]) == 0
    out = capsys.readouterr().out.splitlines()
    assert out[-1] == (f"cd {fastgen_checkout.resolve()} && torchrun --nproc_per_node=8 train.py "
                       f"--config=msm_configs/{FASTGEN_CONFIG}.py - trainer.fsdp=True")
    config = run_as_fastgen(out[-1], monkeypatch)
    call = config.model_class
    call.config = sf.fastgen_config()  # what FastGen's train.py does before instantiate
    (msm,) = active_losses(sf.instantiate(call))
    assert (msm.name, msm.weight, config.log_config.group) == ("msm", 0.5, "wan_dmd2_msm")


def test_the_example_docstring_shows_the_command_that_is_printed(fastgen_checkout, capsys):
    main(["config", FASTGEN_CONFIG, "--into", str(fastgen_checkout)])
    printed = capsys.readouterr().out.splitlines()[-1].split(" && ", 1)[1]
    docstring = find_shipped("config", FASTGEN_CONFIG).read_text()
    assert f"msm-plugin config {FASTGEN_CONFIG} --into /path/to/FastGen" in docstring
    assert f"cd /path/to/FastGen && {printed}" in docstring


def test_a_file_already_there_is_used_when_identical_and_never_overwritten(fastgen_checkout, capsys):
    assert main(["config", FASTGEN_CONFIG, "--into", str(fastgen_checkout)]) == 0
    assert main(["config", FASTGEN_CONFIG, "--into", str(fastgen_checkout)]) == 0
    placed = fastgen_checkout / FOLDER / f"{FASTGEN_CONFIG}.py"
    placed.write_text(placed.read_text() + "# my change\n")
    capsys.readouterr()
    assert main(["config", FASTGEN_CONFIG, "--into", str(fastgen_checkout)]) == 2
    assert capsys.readouterr().err == (f"msm-plugin: error: {placed} exists and differs from the shipped {FASTGEN_CONFIG}.py; "
                                       "move it away, or launch it as it is\n")
    assert placed.read_text().endswith("# my change\n")


def test_into_errors(tmp_path, capsys):
    assert main(["config", FASTGEN_CONFIG, "--into", str(tmp_path)]) == 2
    assert capsys.readouterr().err == (f"msm-plugin: error: expected {tmp_path} to be a FastGen checkout (its top folder), "
                                       "but it has no fastgen/configs/config_utils.py\n")
    assert main(["config", "causvid_wan_stage1_msm", "--into", str(tmp_path)]) == 2
    assert capsys.readouterr().err.startswith("msm-plugin: error: --into places configs for fastgen, fastvideo; causvid_wan_stage1_msm is read from any path")
    assert main(["config", "--into", str(tmp_path)]) == 2
    assert capsys.readouterr().err == "msm-plugin: error: --into needs the name of the config to place\n"
    assert not any(tmp_path.iterdir())


def test_fastvideo_relative_and_absolute_config_paths(tmp_path, capsys):
    checkout = tmp_path / "FastVideo"
    (checkout / "examples" / "train").mkdir(parents=True)
    (checkout / "examples" / "train" / "run.sh").write_text("")
    assert main(["config", FASTVIDEO_CONFIG, "--into", str(checkout)]) == 0
    command = capsys.readouterr().out.splitlines()[-1]
    assert command == f"cd {checkout.resolve()} && bash examples/train/run.sh msm_configs/{FASTVIDEO_CONFIG}.yaml"
    folder, launch = re.fullmatch(r"cd (\S+) && (.*)", command).groups()
    config = shlex.split(launch)[2]
    assert Path(sf.fastvideo_run_config_path(config, cwd=folder)).is_file()
    # the README's form, from the checkout with an absolute path anywhere, is read as it is
    anywhere = tmp_path / f"{FASTVIDEO_CONFIG}.yaml"
    anywhere.write_text("")
    assert sf.fastvideo_run_config_path(str(anywhere), cwd=str(checkout)) == str(anywhere)
