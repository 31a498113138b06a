"""Entry points end to end: real distributions installed, found through importlib.metadata, no fakes.

A tiny third-party distribution (its own ``pyproject.toml``, one extra loss, one host) is built
with the setuptools already installed and installed by pip into a temporary target; a fresh
interpreter with that target on ``sys.path`` must find both, compose the loss with MSM through
the host, and ask the plugin host first. A broken distribution must be named in one line.
"""

import json
import os
import subprocess
import sys
from importlib import metadata
from pathlib import Path

import pytest

from msm_plugin import registry
from msm_plugin.hosts import HOST_ENTRY_POINT_GROUP, get_host
from msm_plugin.plugins import entry_points

ROOT = Path(__file__).resolve().parents[1]


def _pyproject(name: str, loss: str, host: str) -> str:
    """The ``pyproject.toml`` of distribution ``name``: one module (the name with ``_``) declaring
    ``loss`` and ``host`` (``entry point name = "module:object"``) in msm-plugin's two groups."""
    return f"""\
[build-system]
requires = ["setuptools>=61"]
build-backend = "setuptools.build_meta"

[project]
name = "{name}"
version = "0.0.1"

[project.entry-points."msm_plugin.losses"]
{loss}

[project.entry-points."msm_plugin.hosts"]
{host}

[tool.setuptools]
py-modules = ["{name.replace('-', '_')}"]
"""


DEMO_PYPROJECT = _pyproject("msm-demo-plugin", 'demo_mean_square = "msm_demo_plugin:MeanSquare"', 'demo_fork = "msm_demo_plugin:DemoForkHost"')

DEMO_MODULE = '''\
"""A third-party plugin: an extra loss and the host of a CausVid fork."""

from msm_plugin.hosts.causvid import CausVidHost


class MeanSquare:
    """``0.5 * mean(generated ** 2)``, added with ``weight``."""

    name = "demo_mean_square"

    def __init__(self, weight=0.1):
        self.weight = weight

    def __call__(self, ctx):
        loss = 0.5 * ctx.generated.double().pow(2).mean()
        return loss, {"demo_mean_square": loss.detach()}


class DemoForkHost(CausVidHost):
    """A fork whose trainer keeps CausVid's DMD object at ``.fork_dmd``."""

    name = "demo_fork"
    description = "a demo-fork Trainer (with .fork_dmd and .config)"

    def trainer_dmd(self, trainer):
        return (trainer.fork_dmd, trainer.config) if hasattr(trainer, "fork_dmd") else None


class ForkTrainer:
    def __init__(self, config, dmd):
        self.config, self.fork_dmd = config, dmd
'''

BROKEN_PYPROJECT = _pyproject("msm-broken-plugin", 'broken_loss = "msm_broken_plugin:Loss"', 'broken_host = "msm_broken_plugin:NoSuchHost"')

BROKEN_MODULE = "import no_such_dependency_of_msm_broken_plugin\n"

# Run in a fresh interpreter with the target first on sys.path: what a user's training script sees.
FIND_DEMO = '''\
import json
from importlib import metadata

import torch
from omegaconf import OmegaConf
from torch import nn

from msm_plugin import active_losses, available_losses, get_loss, wrap_trainer
from msm_plugin import hosts
from msm_plugin.toy.dmd import ToyDMD
from msm_plugin.toy.teacher import FlowMatchScheduler
import msm_demo_plugin


class Shrink(nn.Module):  # a stand-in score network: x0 = (1 - t/scale) x_t
    def __init__(self, scale):
        super().__init__()
        self.scale = scale

    def forward(self, noisy_image_or_video, conditional_dict, timestep):
        return noisy_image_or_video * (1 - timestep[..., None, None, None] / self.scale)

    def get_scheduler(self):
        return FlowMatchScheduler()


groups = {
    group: sorted([ep.name, ep.dist.name] for ep in metadata.entry_points(group=group))
    for group in ("msm_plugin.losses", "msm_plugin.hosts")
}
config = OmegaConf.create({
    "denoising_step_list": [1000], "real_guidance_scale": 1.0,
    "extra_losses": ["msm", "demo_mean_square"], "msm": {"lam": 0.5}, "demo_mean_square": {"weight": 0.25},
})
trainer = msm_demo_plugin.ForkTrainer(config, ToyDMD(config, Shrink(2000), Shrink(2000), Shrink(1000)))
detected = hosts.detect_host(trainer).name
wrap_trainer(trainer)
torch.manual_seed(0)
total, logs = trainer.fork_dmd.generator_loss([1, 3, 1, 4, 4], {}, {}, None)
x = logs["dmdtrain_clean_latent"].double()
print(json.dumps({
    "groups": groups,
    "losses": available_losses(),
    "factory_is_plugin_class": get_loss("demo_mean_square") is msm_demo_plugin.MeanSquare,
    "hosts": hosts.available_hosts(),
    "asked_first": hosts._plugins,
    "detected": detected,
    "active": [[loss.name, loss.weight] for loss in active_losses(trainer)],
    "total": total.item(),
    "dmd_loss": logs["dmd_loss"].item(),
    "msm_loss": logs["msm_loss"].item(),
    "demo_mean_square": logs["demo_mean_square"].item(),
    "demo_reference": (0.5 * (x ** 2).mean()).item(),
}))
'''


def _install(tmp_path: Path, name: str, pyproject: str, module: str) -> Path:
    """Build the distribution in ``tmp_path/name`` and pip-install it into ``tmp_path/name-target``."""
    src, target = tmp_path / name, tmp_path / f"{name}-target"
    src.mkdir()
    (src / "pyproject.toml").write_text(pyproject)
    (src / f"{name.replace('-', '_')}.py").write_text(module)
    done = subprocess.run(
        [sys.executable, "-m", "pip", "install", "--quiet", "--no-index", "--no-deps", "--no-build-isolation",
         "--target", str(target), str(src)],
        capture_output=True, text=True, timeout=300,
    )
    assert done.returncode == 0, done.stderr
    return target


def _python(target: Path, *args: str, cwd: Path) -> subprocess.CompletedProcess:
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(target), str(ROOT)]), "OMP_NUM_THREADS": "1"}
    return subprocess.run([sys.executable, *args], capture_output=True, text=True, env=env, cwd=cwd, timeout=300)


def test_a_third_party_distribution_is_found_through_importlib_metadata(tmp_path):
    target = _install(tmp_path, "msm_demo_plugin", DEMO_PYPROJECT, DEMO_MODULE)
    assert (target / "msm_demo_plugin-0.0.1.dist-info" / "entry_points.txt").is_file()
    done = _python(target, "-c", FIND_DEMO, cwd=tmp_path)
    assert done.returncode == 0, done.stderr
    found = json.loads(done.stdout)
    assert ["demo_mean_square", "msm-demo-plugin"] in found["groups"]["msm_plugin.losses"]
    assert ["demo_fork", "msm-demo-plugin"] in found["groups"]["msm_plugin.hosts"]
    assert {"demo_mean_square", "msm"} <= set(found["losses"]) and found["factory_is_plugin_class"]
    assert {"causvid", "demo_fork", "fastgen", "fastvideo", "self_forcing"} <= set(found["hosts"])
    # The fork's trainer would not match CausVid (no .distillation_model), and the plugin is asked
    # first; the built-ins, also declared as entry points when msm-plugin is installed, are not plugins.
    assert found["asked_first"] == ["demo_fork"] and found["detected"] == "demo_fork"
    assert found["active"] == [["msm", 0.5], ["demo_mean_square", 0.25]]
    assert found["demo_mean_square"] == pytest.approx(found["demo_reference"], rel=1e-12)
    expected = found["dmd_loss"] + 0.5 * found["msm_loss"] + 0.25 * found["demo_mean_square"]
    assert found["total"] == pytest.approx(expected, rel=1e-12)  # float64 sums of three terms


def test_a_broken_plugin_is_named_in_one_line_by_doctor_and_available_losses(tmp_path):
    target = _install(tmp_path, "msm_broken_plugin", BROKEN_PYPROJECT, BROKEN_MODULE)
    doctor = _python(target, "-m", "msm_plugin.cli", "doctor", cwd=tmp_path)
    assert doctor.returncode == 1, doctor.stderr
    lines = doctor.stdout.splitlines()
    host_line = (
        "  cannot list them: RuntimeError: host plugin 'broken_host' (msm_broken_plugin:NoSuchHost) from "
        "distribution 'msm-broken-plugin' failed to load: ModuleNotFoundError: No module named "
        "'no_such_dependency_of_msm_broken_plugin'"
    )
    loss_line = (
        "  cannot list them: LossPluginError: extra-loss plugin 'broken_loss' (msm_broken_plugin:Loss) from "
        "distribution 'msm-broken-plugin' failed to load: ModuleNotFoundError: No module named "
        "'no_such_dependency_of_msm_broken_plugin'"
    )
    assert lines[lines.index("hosts:") + 1] == host_line
    assert lines[lines.index("extra losses:") + 1] == loss_line
    assert lines[-2].startswith("shipped patches: ")  # the report goes on after a broken plugin

    done = _python(target, "-c", "import msm_plugin; msm_plugin.available_losses()", cwd=tmp_path)
    assert done.returncode == 1
    assert done.stderr.strip().splitlines()[-1] == "msm_plugin.registry." + loss_line.split("them: ", 1)[1]


def test_the_installed_package_declares_its_losses_and_hosts_and_loading_them_is_a_no_op():
    try:
        metadata.distribution("msm-plugin")
    except metadata.PackageNotFoundError:
        pytest.skip("msm-plugin is not installed (a bare source tree): no metadata to read")
    own = {
        group: {ep.name: ep for ep in entry_points(group) if ep.dist is not None and ep.dist.name == "msm-plugin"}
        for group in (registry.ENTRY_POINT_GROUP, HOST_ENTRY_POINT_GROUP)
    }
    assert own[HOST_ENTRY_POINT_GROUP], "msm-plugin's installed metadata declares no hosts: reinstall it (pip install -e .)"
    assert sorted(own[HOST_ENTRY_POINT_GROUP]) == ["causvid", "fastgen", "fastvideo", "self_forcing"]
    for name, ep in own[HOST_ENTRY_POINT_GROUP].items():
        assert ep.load() is type(get_host(name)), name
    assert "msm" in own[registry.ENTRY_POINT_GROUP]
    for name, ep in own[registry.ENTRY_POINT_GROUP].items():
        assert ep.load() is registry.get_loss(name), name
        assert registry._registry.origins[name].startswith("module "), "registered in code first, the entry point is a no-op"
