"""docs/motion-losses.md stays true: its config lines build the losses they name on each host's route."""

import re
from pathlib import Path
from types import SimpleNamespace

import yaml

from msm_plugin import MSMConfig, TemporalVarianceConfig
from msm_plugin.config import build_extra_losses

PAGE = (Path(__file__).resolve().parents[1] / "docs" / "motion-losses.md").read_text()


def _blocks(lang):
    return re.findall(rf"```{lang}\n(.*?)```", PAGE, flags=re.S)


def _described(losses):
    return {loss.name: loss.config for loss in losses}


def test_the_yaml_for_causvid_and_self_forcing_shows_every_new_option_and_builds():
    block = next(b for b in _blocks("yaml") if b.startswith("extra_losses:"))
    configs = _described(build_extra_losses(yaml.safe_load(block)))
    assert configs["msm"].pair_weights == "hybrid" and configs["temporal_variance"] == TemporalVarianceConfig()
    for option in ("pair_weights", "pair_weights_mix", "pair_weights_base", *TemporalVarianceConfig.option_names()):
        assert re.search(rf"^\s+{option}:", block, flags=re.M), option


def test_the_fastvideo_yaml_builds_on_its_route():
    import msm_plugin.hosts.fastvideo as fastvideo

    block = next(b for b in _blocks("yaml") if b.startswith("method:"))
    method = yaml.safe_load(block)["method"]
    assert method["_target_"] == "msm_plugin.hosts.fastvideo.MSMDMD2Method"
    configs = _described(fastvideo.FastVideoHost().build_losses(method))
    assert configs["msm"] == MSMConfig(lam=0.5, pair_weights="hybrid") and configs["temporal_variance"] == TemporalVarianceConfig()


def test_the_fastgen_model_class_builds_on_its_route(frameworks):
    import msm_plugin.hosts.fastgen as fastgen

    (block,) = _blocks("python")
    namespace = {"config": SimpleNamespace(), "L": lambda cls: lambda **kwargs: (cls, kwargs)}
    exec(compile(block, "docs/motion-losses.md", "exec"), namespace)
    cls, kwargs = namespace["config"].model_class
    assert cls is fastgen.MSMDMD2Model and kwargs.pop("config") is None
    configs = _described(fastgen.FastGenHost().build_losses(kwargs))
    assert configs["msm"] == MSMConfig(lam=0.5, pair_weights="hybrid") and configs["temporal_variance"] == TemporalVarianceConfig()


def test_links_are_relative_and_the_results_spot_is_marked():
    assert not re.search(r"\]\((?:https?:|/)", PAGE)
    assert PAGE.count("<!-- toy-results: start -->") == 1 and PAGE.count("<!-- toy-results: end -->") == 1


def test_each_source_claim_names_its_commit():
    assert "`yuyangyou/Adaptive-Video-Distillation` at\n`b3442d6`, `causvid/dmd.py`" in PAGE
    assert "`Sphere-AI-Lab/diagdistill` at `4ea418d`, `model/dmd.py`" in PAGE
