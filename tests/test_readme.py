"""The README stays true: its commands, config keys, metric names and plugin example."""

import re
from pathlib import Path

import torch

from msm_plugin import LossContext, compose
from msm_plugin.config import parse_extra_losses

ROOT = Path(__file__).resolve().parents[1]
README = (ROOT / "README.md").read_text()


def _blocks(lang):
    return re.findall(rf"```{lang}\n(.*?)```", README, flags=re.S)


def test_ci_runs_the_readme_test_command():
    commands = [line.split("#")[0].strip() for block in _blocks("bash") for line in block.splitlines()]
    assert "python -m pytest" in commands
    ci = [line.strip() for line in (ROOT / ".ci" / "run").read_text().splitlines() if line.strip() and not line.startswith("#")]
    assert ci[-1] == "python -m pytest"
    assert "pip install torch==2.13.0" in ci and 'pip install -e ".[test]"' in ci


def test_config_example_is_valid():
    from omegaconf import OmegaConf

    yaml = next(block for block in _blocks("yaml") if "extra_losses" in block)
    specs = parse_extra_losses(OmegaConf.create(yaml))
    assert [s.name for s in specs] == ["msm"]
    from msm_plugin import MSMConfig

    # the quick-start YAML shows every option a config can set (`feature` is code-only); the
    # per-pair weights are shown with the other motion losses (docs/motion-losses.md, its own test)
    pair_weights = {"pair_weights", "pair_weights_mix", "pair_weights_base"}
    assert set(specs[0].options) == set(MSMConfig.option_names()) - {"feature"} - pair_weights


def test_every_metric_is_documented():
    from msm_plugin.metrics import METRICS

    missing = [key for key in METRICS if f"`{key}`" not in README]
    assert not missing


def test_plugin_example_composes():
    source = next(block for block in _blocks("python") if "class FrameL2" in block)
    namespace = {}
    exec(compile(source, "README.md", "exec"), namespace)
    term = namespace["FrameL2"](weight=0.2)
    x = torch.ones(1, 2, 1, 1, 1, requires_grad=True)
    total, logs = compose(torch.tensor(1.0, dtype=torch.float64), {}, [term], LossContext(x, x.detach(), x.detach()))
    assert total.item() == 1.2 and logs["frame_l2"].item() == 1.0


def test_typed_plugin_options_example_validates_a_section(monkeypatch):
    from msm_plugin import registry
    from msm_plugin.config import build_extra_losses

    namespace = {}
    for block in _blocks("python"):
        if "class FrameL2" in block and "LossOptions" not in block or "class TypedFrameL2" in block:
            exec(compile(block, "README.md", "exec"), namespace)
    monkeypatch.setitem(registry._registry.factories, "frame_l2", namespace["TypedFrameL2"])
    (loss,) = build_extra_losses({"extra_losses": ["frame_l2"], "frame_l2": {"weight": 0.2}})
    assert loss.weight == 0.2
    import pytest

    with pytest.raises(ValueError, match=r"unknown option `frame_l2.wieght`; did you mean `weight`\?"):
        build_extra_losses({"extra_losses": ["frame_l2"], "frame_l2": {"wieght": 0.2}})


def test_host_adapter_section_names_the_real_interface():
    from msm_plugin import hosts
    from msm_plugin.hosts import HOST_ENTRY_POINT_GROUP, ExtraLosses, Host

    section = README[README.index("## Writing a host adapter"):README.index("## The built-in demo")]
    for method in re.findall(r"`(\w+)\(", section):
        assert any(hasattr(owner, method) for owner in (Host, ExtraLosses, hosts)) or method in {"wrap_trainer", "LossContext"}, method
    assert f'[project.entry-points."{HOST_ENTRY_POINT_GROUP}"]' in section
