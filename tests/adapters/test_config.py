"""extra_losses validation: every error message, dicts and OmegaConf, no code import."""

from dataclasses import dataclass

import pytest
from omegaconf import OmegaConf

from msm_plugin.adapters import check_extra_losses
from msm_plugin.config import ExtraLossConfig, build_extra_losses, config_mapping, parse_extra_losses
from msm_plugin.hosts import get_host
from msm_plugin.options import LossOptions, option, real_at_least
from msm_plugin.registry import UnknownLossError


@pytest.mark.parametrize("wrap", [dict, OmegaConf.create], ids=["dict", "omegaconf"])
def test_valid_config(wrap):
    config = wrap({"lr": 1e-3, "extra_losses": ["msm"],
                   "msm": {"lam": 0.5, "normalization": "motion", "order": 1, "timestep_policy": "strict"}})
    specs = parse_extra_losses(config)
    assert specs == [ExtraLossConfig("msm", {"lam": 0.5, "normalization": "motion", "order": 1, "timestep_policy": "strict"})]
    (loss,) = build_extra_losses(config)
    assert loss.name == "msm" and loss.weight == 0.5


def test_no_extra_losses_gives_none():
    assert parse_extra_losses({"lr": 1.0}) == [] and parse_extra_losses(None) == []
    assert parse_extra_losses({"extra_losses": None}) == []


def test_integer_lam_is_accepted_and_section_may_be_empty():
    assert parse_extra_losses({"extra_losses": ["msm"], "msm": {"lam": 1}})[0].options == {"lam": 1}
    assert parse_extra_losses({"extra_losses": ["msm"], "msm": None})[0].options == {}


def test_overrides_merge_over_the_section_and_add_the_loss():
    specs = parse_extra_losses({"msm": {"lam": 0.1, "order": 2}}, overrides={"msm": {"lam": 0.7}})
    assert specs == [ExtraLossConfig("msm", {"lam": 0.7, "order": 2})]
    feature = lambda frames: frames.mean(1, keepdim=True)  # noqa: E731 - callables may come from code
    assert build_extra_losses({}, overrides={"msm": {"feature": feature}})[0].config.feature is feature


@pytest.mark.parametrize(
    "config, error, match",
    [
        ({"extra_losses": "msm"}, TypeError, r"`extra_losses` should be a list of loss names, e.g. `extra_losses: \[msm\]`, got the string 'msm'"),
        ({"extra_losses": 3}, TypeError, r"`extra_losses` should be a list of loss names, got int 3"),
        ({"extra_losses": [1]}, TypeError, r"entries should be loss names \(strings\), got int 1"),
        ({"extra_losses": ["mms"]}, ValueError, r"unknown extra loss 'mms' in `extra_losses`; known losses: .*msm"),
        ({"extra_losses": ["msm", "msm"]}, ValueError, r"lists \['msm'\] more than once"),
        ({"msm": {"lam": 0.5}}, ValueError, r"options section `msm:` but `extra_losses` does not list 'msm'"),
        ({"extra_losses": ["msm"], "msm": 0.5}, TypeError, r"`msm` should be a mapping of options .* got float 0.5"),
        ({"extra_losses": ["msm"], "msm": {"lamda": 0.5}}, ValueError, r"unknown option `msm.lamda`; did you mean `lam`\?"),
        ({"extra_losses": ["msm"], "msm": {"zzz": 1}}, ValueError, r"unknown option `msm.zzz`\. Options of extra loss 'msm': lam, normalization"),
        ({"extra_losses": ["msm"], "msm": {"lam": "0.5"}}, TypeError, r"option `msm.lam` should be int or float, got str '0.5'"),
        ({"extra_losses": ["msm"], "msm": {"lam": True}}, TypeError, r"option `msm.lam` should be int or float, got bool True"),
        ({"extra_losses": ["msm"], "msm": {"order": 1.5}}, TypeError, r"option `msm.order` should be int, got float 1.5"),
        ({"extra_losses": ["msm"], "msm": {"normalization": 1}}, TypeError, r"option `msm.normalization` should be str, got int 1"),
        ({"extra_losses": ["msm"], "msm": {"lam": -0.5}}, ValueError, r"option `msm.lam` should be finite and >= 0, got -0.5"),
        ({"extra_losses": ["msm"], "msm": {"feature": "torch.nn.Identity"}}, TypeError, r"option `msm.feature` takes a Python object that a config cannot express"),
        ({"extra_losses": ["msm"], "msm": {1: 2}}, TypeError, r"option names under `msm` should be strings, got int 1"),
    ],
)
def test_errors(config, error, match):
    with pytest.raises(error, match=match):
        parse_extra_losses(config)


@pytest.mark.parametrize(
    "yaml, error, match",
    [
        ("extra_losses: msm", TypeError, "should be a list of loss names"),
        ("extra_losses: [msm]\nmsm: {lamda: 0.5}", ValueError, "did you mean `lam`"),
        ("extra_losses: [msm]\nmsm: {lam: -1}", ValueError, "should be finite and >= 0, got -1"),
        ("extra_losses: [msm]\nmsm: {order: '2'}", TypeError, "`msm.order` should be int, got str '2'"),
    ],
)
def test_errors_from_an_omegaconf_yaml(yaml, error, match):
    with pytest.raises(error, match=match):
        parse_extra_losses(OmegaConf.create(yaml))


@pytest.mark.parametrize(
    "config",
    [
        {"extra_losses": ["msm"], "real_task_type": "causal_video"},
        {"extra_losses": ["msm"], "generator_task": "causal_video"},  # CausVid's fallback for real_task_type
    ],
)
def test_a_causal_teacher_under_the_strict_policy_is_refused_on_the_causvid_route(config):
    with pytest.raises(ValueError, match=r"real_task_type is causal_video .*`msm: \{timestep_policy: pairs\}`"):
        check_extra_losses(config, host="causvid")
    with pytest.raises(ValueError, match=r"real_task_type is causal_video"):
        get_host("causvid").build_losses(config)


def test_causal_teacher_is_fine_under_the_pairs_policy_and_stage3_is_fine_as_is():
    assert check_extra_losses({"extra_losses": ["msm"], "real_task_type": "causal_video", "msm": {"timestep_policy": "pairs"}}, host="causvid")
    stage3 = {"extra_losses": ["msm"], "generator_task": "causal_video", "real_task_type": "bidirectional_video"}
    assert check_extra_losses(stage3, host="causvid")[0].name == "msm"


def test_values_a_rule_refuses_are_reported_with_the_loss_and_option_name():
    with pytest.raises(ValueError, match=r"option `msm.normalization` should be one of \('motion', 'dmd', 'none'\), got 'motoin'"):
        build_extra_losses({"extra_losses": ["msm"], "msm": {"normalization": "motoin"}})


def test_unknown_code_given_loss_lists_known_ones():
    with pytest.raises(UnknownLossError, match="unknown extra loss 'nope'; known losses: .*msm"):
        parse_extra_losses({}, overrides={"nope": {}})


def test_code_given_options_get_the_same_name_and_value_checks():
    with pytest.raises(ValueError, match=r"unknown option `msm.lamda`; did you mean `lam`\?"):
        parse_extra_losses({}, overrides={"msm": {"lamda": 0.5}})
    with pytest.raises(ValueError, match=r"option `msm.lam` should be finite and >= 0, got -1"):
        parse_extra_losses({}, overrides={"msm": {"lam": -1}})
    with pytest.raises(ValueError, match=r"option `msm.order` should be a positive integer \(1: velocity, 2: acceleration\), got 0"):
        build_extra_losses({}, overrides={"msm": {"order": 0}})


def test_a_dotted_path_value_is_never_imported(monkeypatch):
    imported = []
    monkeypatch.setattr("importlib.import_module", lambda name, *a: imported.append(name))
    with pytest.raises(ValueError):
        build_extra_losses({"extra_losses": ["msm"], "msm": {"normalization": "os.system"}})
    assert imported == []


def test_config_mapping_accepts_namespaces_and_rejects_others():
    from types import SimpleNamespace

    assert config_mapping(SimpleNamespace(a=1)) == {"a": 1}
    with pytest.raises(TypeError, match="expected a config mapping .* got int"):
        config_mapping(3)


@dataclass(frozen=True)
class _PluginOptions(LossOptions):
    """A third-party loss's typed options: an annotation-only field, a PEP 604 union, a dict."""

    weight: float = option(1.0, real_at_least(0))
    mode: "str | None" = None
    steps: int = 3
    table: dict = None


class _PluginLoss:
    name = "plugin_loss"
    options_class = _PluginOptions

    def __init__(self, options: _PluginOptions) -> None:
        self.options = options
        self.weight, self.steps = options.weight, options.steps

    def __call__(self, ctx):
        return ctx.generated.sum() * 0, {}


class _OpenLoss:
    """A loss without typed options: it gets the section as keywords and checks them itself."""

    name = "open_loss"

    def __init__(self, weight: float = 1.0, **extra):
        if "bad" in extra:
            raise ValueError("`bad` is refused")
        self.weight, self.extra = weight, extra

    def __call__(self, ctx):
        return ctx.generated.sum() * 0, {}


@pytest.fixture
def plugins(monkeypatch):
    from msm_plugin import registry

    monkeypatch.setitem(registry._registry.factories, "plugin_loss", _PluginLoss)
    monkeypatch.setitem(registry._registry.factories, "open_loss", _OpenLoss)


def test_plugin_option_types_come_from_its_options_class_annotations(plugins):
    config = {"extra_losses": ["plugin_loss"], "plugin_loss": {"weight": 2, "mode": None, "steps": 4, "table": {"a": 1}}}
    (loss,) = build_extra_losses(config)
    assert (loss.weight, loss.steps) == (2.0, 4) and isinstance(loss.options, _PluginOptions)
    assert parse_extra_losses({"extra_losses": ["plugin_loss"], "plugin_loss": {"mode": "x"}})
    with pytest.raises(TypeError, match=r"`plugin_loss.mode` should be str or null, got int 3"):
        parse_extra_losses({"extra_losses": ["plugin_loss"], "plugin_loss": {"mode": 3}})
    with pytest.raises(TypeError, match=r"`plugin_loss.steps` should be int, got str 'many'"):
        parse_extra_losses({"extra_losses": ["plugin_loss"], "plugin_loss": {"steps": "many"}})
    with pytest.raises(TypeError, match=r"`plugin_loss.table` should be dict, got list \[1\]"):
        parse_extra_losses({"extra_losses": ["plugin_loss"], "plugin_loss": {"table": [1]}})
    with pytest.raises(ValueError, match=r"option `plugin_loss.weight` should be finite and >= 0, got -1"):
        parse_extra_losses({"extra_losses": ["plugin_loss"], "plugin_loss": {"weight": -1}})
    with pytest.raises(ValueError, match=r"unknown option `plugin_loss.step`; did you mean `steps`\?"):
        parse_extra_losses({"extra_losses": ["plugin_loss"], "plugin_loss": {"step": 1}})


def test_a_loss_without_options_class_gets_keywords_and_its_errors_name_it(plugins):
    (spec,) = parse_extra_losses({"extra_losses": ["open_loss"], "open_loss": {"anything": 1}})
    assert spec.options == {"anything": 1} and spec.build().extra == {"anything": 1}
    with pytest.raises(ValueError, match=r"invalid options for extra loss 'open_loss': `bad` is refused"):
        build_extra_losses({"extra_losses": ["open_loss"], "open_loss": {"bad": 1}})
    with pytest.raises(TypeError, match=r"option names under `open_loss` should be strings, got int 1"):
        parse_extra_losses({"extra_losses": ["open_loss"], "open_loss": {1: 2}})


def test_timestep_rule_follows_the_named_host():
    causal = {"extra_losses": ["msm"], "real_task_type": "causal_video"}
    with pytest.raises(ValueError, match="real_task_type is causal_video"):
        check_extra_losses(causal, host="causvid")
    # Self-Forcing draws the score timestep with uniform_timestep=True whatever its config says
    assert check_extra_losses(causal, host="self_forcing")[0].name == "msm"
