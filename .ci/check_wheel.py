"""Check the installed wheel as a user gets it: run with the wheel's venv active, outside the repository.

- ``msm_plugin`` is imported from site-packages (not the source tree, not an editable install),
  and its ``__version__`` is the one pyproject.toml declares;
- the wheel's metadata declares the package's losses and its four hosts in the entry-point groups
  ``msm_plugin.losses`` and ``msm_plugin.hosts`` (distribution msm-plugin), each resolving to the
  object registered in code, and no built-in host becomes a "plugin" asked first by detection;
- the ``msm-plugin`` console script runs; ``doctor`` names the losses and the hosts with
  their distribution;
- the config route: the shipped stage-1 config, printed by ``msm-plugin config``, wraps a toy DMD
  (``apply_extra_losses``, as ``msm-train`` and the patch do) and a generator step logs MSM;
- every motion loss from one config: ``extra_losses: [msm, temporal_variance]`` with MSM's
  per-pair weights on the same toy DMD, each loss logged (``doctor`` lists both);
- ``msm-plugin patch causvid DIR --check`` and the real apply on a stand-in CausVid tree.
"""

import math
import re
import runpy
import shutil
from importlib import metadata
import subprocess
import sys
import sysconfig
import tempfile
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
LOSSES = {
    "msm": "msm_plugin.losses.msm:MSMTerm",
    "temporal_variance": "msm_plugin.losses.temporal_variance:TemporalVarianceTerm",
}
HOSTS = {
    "causvid": "msm_plugin.hosts.causvid:CausVidHost",
    "self_forcing": "msm_plugin.hosts.self_forcing:SelfForcingHost",
    "fastvideo": "msm_plugin.hosts.fastvideo:FastVideoHost",
    "fastgen": "msm_plugin.hosts.fastgen:FastGenHost",
}


def run(*command: str, cwd=None) -> str:
    done = subprocess.run(command, capture_output=True, text=True, cwd=cwd)
    if done.returncode != 0:
        sys.exit(f"check_wheel: {' '.join(command)} exited {done.returncode}: {done.stderr.strip()}")
    return done.stdout


def main() -> None:
    import torch
    from omegaconf import OmegaConf

    import msm_plugin
    from msm_plugin.adapters import apply_extra_losses, pop_extra_logs
    from msm_plugin.toy.dmd import ToyDMD
    from msm_plugin.toy.teacher import FlowMatchScheduler

    site = Path(sysconfig.get_paths()["purelib"]).resolve()
    package = Path(msm_plugin.__file__).resolve().parent
    if package.parent != site:  # an editable install or the source tree would resolve to REPO/msm_plugin
        sys.exit(f"check_wheel: msm_plugin was imported from {package}, not from the wheel in {site}")
    declared = re.search(r'^version = "([^"]+)"', (REPO / "pyproject.toml").read_text(), flags=re.M).group(1)
    if msm_plugin.__version__ != declared:
        sys.exit(f"check_wheel: the wheel says version {msm_plugin.__version__}, pyproject.toml {declared}")
    for script in ("msm-plugin", "msm-train", "msm-demo", "msm-eval"):
        if shutil.which(script) is None:
            sys.exit(f"check_wheel: the wheel installed no `{script}` command")

    from msm_plugin import hosts, registry

    for group, expected in (("msm_plugin.losses", LOSSES), ("msm_plugin.hosts", HOSTS)):
        declared = {ep.name: ep for ep in metadata.entry_points(group=group) if ep.dist.name == "msm-plugin"}
        values = {name: ep.value for name, ep in declared.items()}
        if not expected.items() <= values.items():  # a merged loss may add names; none may go missing
            sys.exit(f"check_wheel: the wheel declares {values} in {group}, expected at least {expected}")
        for name, ep in declared.items():
            built_in = registry.get_loss(name) if group == "msm_plugin.losses" else type(hosts.get_host(name))
            if ep.load() is not built_in:
                sys.exit(f"check_wheel: entry point {name} = {ep.value} does not resolve to the registered {built_in}")
    if sorted(hosts.available_hosts()) != sorted(HOSTS) or hosts._plugins:
        sys.exit(f"check_wheel: hosts {hosts.available_hosts()}, asked first as plugins: {hosts._plugins}")

    doctor = run("msm-plugin", "doctor")
    needed = [
        "distribution msm-plugin (msm_plugin.losses.msm:MSMTerm)",
        "distribution msm-plugin (msm_plugin.losses.temporal_variance:TemporalVarianceTerm)",
        "pair_weights",
        "shipped patches: causvid",
    ]
    needed += [f"adapter: distribution msm-plugin ({value})" for value in HOSTS.values()]
    if not all(text in doctor for text in needed):
        sys.exit(f"check_wheel: unexpected `msm-plugin doctor` output:\n{doctor}")

    class Shrink(torch.nn.Module):  # a stand-in score network: x0 = (1 - t/scale) x_t
        def __init__(self, scale):
            super().__init__()
            self.scale = scale

        def forward(self, noisy_image_or_video, conditional_dict, timestep):
            return noisy_image_or_video * (1 - timestep[..., None, None, None] / self.scale)

        def get_scheduler(self):
            return FlowMatchScheduler()

    config = OmegaConf.create(run("msm-plugin", "config", "causvid_wan_stage1_msm"))
    # The critic shrinks differently from the teacher, so the DMD and MSM terms are non-zero.
    dmd = apply_extra_losses(ToyDMD(config, Shrink(2000), Shrink(2000), Shrink(1000)))
    loss, _ = dmd.generator_loss([1, 3, 1, 4, 4], {}, {}, None)
    logs = pop_extra_logs(dmd)
    if not (
        torch.isfinite(loss) and logs.get("msm_loss", 0) > 0 and logs.get("dmd_loss", 0) > 0 and logs.get("msm_lambda") == 0.5
    ):
        sys.exit(f"check_wheel: the config route gave loss {loss} and logs {sorted(logs)}")

    # Every motion loss at once; no hinge, so the regulariser is added on this one step.
    config.extra_losses = ["msm", "temporal_variance"]
    config.msm.pair_weights = "hybrid"
    config.temporal_variance = {"weight": 0.05, "threshold": None}
    dmd = apply_extra_losses(ToyDMD(config, Shrink(2000), Shrink(2000), Shrink(1000)))
    loss, _ = dmd.generator_loss([1, 3, 1, 4, 4], {}, {}, None)
    logs = pop_extra_logs(dmd)
    built = {term.name: term for term in msm_plugin.active_losses(dmd)}
    if not (
        torch.isfinite(loss)
        and sorted(built) == ["msm", "temporal_variance"]
        and built["msm"].config.pair_weights == "hybrid"
        and logs.get("msm_loss", 0) > 0
        and logs.get("temporal_variance_active") == 1.0
        and math.isfinite(logs.get("temporal_variance_loss", math.nan))
        and logs.get("temporal_variance_variance", 0) > 0
    ):
        sys.exit(f"check_wheel: the motion losses gave loss {loss}, losses {sorted(built)} and logs {sorted(logs)}")

    write_causvid_standin = runpy.run_path(str(REPO / "tests" / "causvid_standin.py"))["write_causvid_standin"]
    with tempfile.TemporaryDirectory() as tmp:
        script = write_causvid_standin(tmp)
        run("msm-plugin", "patch", "causvid", tmp, "--check")
        run("msm-plugin", "patch", "causvid", tmp)
        if 'check_extra_losses(config, host="causvid")' not in script.read_text():
            sys.exit("check_wheel: `msm-plugin patch causvid` left the stand-in unpatched")
    print(f"check_wheel: msm-plugin {msm_plugin.__version__} from {package}: entry points (losses, hosts), config route, motion losses and patch OK")


if __name__ == "__main__":
    main()
