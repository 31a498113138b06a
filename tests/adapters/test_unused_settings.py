"""One rule on every route: a setting that looks like an extra-loss setting but is not used is
refused in one line, with a did-you-mean, before anything is built.

Each case is a row of what users wrote and saw ignored: a misspelt or re-cased section (`msmm:`,
`MSM:`, `msm_options:`), `lam` one level too high, `extra_loss:`, FastVideo's `msm:` at the YAML
top level, and an msm-plugin method / model class chosen with no `extra_losses` at all.
"""

import pytest
from omegaconf import OmegaConf

import msm_plugin.hosts.fastgen as fastgen
import msm_plugin.hosts.fastvideo as fastvideo
from msm_plugin import active_losses, wrap_trainer
from msm_plugin.adapters import apply_extra_losses, check_extra_losses, is_wrapped
from msm_plugin.config import refuse_unused_settings, unused_setting
from msm_plugin.hosts import available_hosts, get_host
from msm_plugin.registry import available_losses, get_loss
from msm_plugin.train import main as msm_train
from tests.adapters import framework_standins as sf
from tests.adapters.standins import CausVidTrainer, SelfForcingTrainer, make_config

SECTION_VARIANTS = ["msmm", "MSM", "msm_options", "Msm-Options"]



# ---------------------------------------------------------------- CausVid / Self-Forcing YAML


CHAIN = {"causvid": CausVidTrainer, "self_forcing": SelfForcingTrainer}
CHAIN_CASES = [
    *[({"extra_losses": ["msm"], key: {"lam": 0.5}}, rf"setting `{key}` is not used: did you mean `msm`\?") for key in SECTION_VARIANTS],
    ({"extra_losses": ["msm"], "lam": 0.5}, r"setting `lam` is not used: did you mean `msm.lam`\?"),
    ({"extra_losses": ["msm"], "msm": {"order": 2}, "lam": 0.5}, r"setting `lam` is not used: did you mean `msm.lam`\?"),
    ({"msm": {"order": 2}, "warmup_steps": 10, "extra_losses": ["msm"]}, r"setting `warmup_steps` is not used: did you mean `msm.warmup_steps`\?"),
    ({"extra_loss": ["msm"]}, r"setting `extra_loss` is not used: did you mean `extra_losses`\?"),
    ({"Extra-Losses": ["msm"]}, r"setting `Extra-Losses` is not used: did you mean `extra_losses`\?"),
]


@pytest.mark.parametrize("host", sorted(CHAIN))
@pytest.mark.parametrize("keys, message", CHAIN_CASES)
def test_chain_hosts_refuse_on_every_route_before_anything_changes(host, keys, message, tmp_path, capsys):
    config = make_config(output_path=str(tmp_path), **keys)
    with pytest.raises(ValueError, match=message):  # the patched script's first line
        check_extra_losses(OmegaConf.create(config), host=host)
    trainer = CHAIN[host](config)
    dmd = trainer.distillation_model if host == "causvid" else trainer.model
    with pytest.raises(ValueError, match=message):  # the patched trainer
        apply_extra_losses(trainer, host=host)
    with pytest.raises(ValueError, match=message):  # in code
        wrap_trainer(trainer, lam=0.5, host=host)
    assert not is_wrapped(dmd) and "_msm_plugin_patches" not in vars(dmd)
    if host == "causvid":  # msm-train: one line, status 2, no trainer built
        path = tmp_path / "config.yaml"
        path.write_text(OmegaConf.to_yaml(OmegaConf.create(config)))
        built = []
        with pytest.raises(SystemExit) as exit_:
            msm_train(["--config_path", str(path)], trainer_cls=built.append)
        assert exit_.value.code == 2 and not built
        err = capsys.readouterr().err
        assert err.count("\n") == 1 and err.startswith("msm-train: error: setting `")


@pytest.mark.parametrize("keywords, guess", [
    ({"msm": {"lam": 0.5}}, "msm"), ({"MSM": {"lam": 0.5}}, "msm"), ({"extra_losses": ["msm"]}, "extra_losses"),
    ({"extra_loss": ["msm"]}, "extra_losses"),
])
def test_wrap_trainer_keywords_that_name_a_section_or_the_list(keywords, guess):
    trainer = CausVidTrainer(make_config(output_path="unused"))
    with pytest.raises(ValueError, match=rf"^wrap_trainer keyword `{next(iter(keywords))}` is not used: it takes MSM's options as keywords "
                                         rf"\(wrap_trainer\(trainer, lam=0.5, order=2\)\); other losses and their options come from the config \(`{guess}`\)$"):
        wrap_trainer(trainer, **keywords)
    assert not is_wrapped(trainer.distillation_model)
    with pytest.raises(ValueError, match=r"unknown option `msm.lamda`; did you mean `lam`\?"):  # an MSM option misspelt
        wrap_trainer(trainer, lamda=0.5)


def test_without_anything_that_looks_like_a_setting_nothing_changes():
    """Today's valid configs, and the hosts' own keys, pass."""
    assert [loss.name for loss in check_extra_losses(make_config(extra_losses=["msm"], msm={"lam": 0.5}), host="causvid")] == ["msm"]
    assert check_extra_losses(make_config(), host="self_forcing") == []


# ---------------------------------------------------------------- FastVideo


def fastvideo_method(fv_top=None, **method):
    return fastvideo.MSMDMD2Method(cfg=sf.fastvideo_cfg(fv_top, **method), role_models=sf.fastvideo_roles())


@pytest.mark.parametrize("top, method, message", [
    *[(None, {"extra_losses": ["msm"], key: {"lam": 0.5}}, rf"setting `method.{key}` is not used: did you mean `method.msm`\?") for key in SECTION_VARIANTS],
    (None, {"extra_losses": ["msm"], "lam": 0.5}, r"setting `method.lam` is not used: did you mean `method.msm.lam`\?"),
    (None, {"extra_loss": ["msm"]}, r"setting `method.extra_loss` is not used: did you mean `method.extra_losses`\?"),
    ({"msm": {"lam": 0.5}}, {"extra_losses": ["msm"]},
     r"setting `msm` is not used: extra losses are read under `method.`; did you mean `method.msm`\?"),
    ({"extra_losses": ["msm"], "msm": {"lam": 0.5}}, {},
     r"setting `extra_losses` is not used: extra losses are read under `method.`; did you mean `method.extra_losses`\?"),
    ({"lam": 0.5}, {"extra_losses": ["msm"]}, r"setting `lam` is not used: extra losses are read under `method.`; did you mean `method.msm.lam`\?"),
    (None, {}, r"MSMDMD2Method adds the extra losses `method.extra_losses` lists, but there is none: add `extra_losses: \[msm\]` "
               r"\(and `msm: \{lam: \.\.\.\}`\) under `method:`, or an empty list for a run without extra losses"),
])
def test_fastvideo_refuses_before_its_constructor(frameworks, top, method, message):
    before = sf.DMD2Method.constructed
    with pytest.raises(ValueError, match=message):
        fastvideo_method(top, **method)
    assert sf.DMD2Method.constructed == before


def test_fastvideo_cli_override_one_level_too_high(frameworks):
    """`run.sh config.yaml --method.lam 0.5` lands in `method:`, where it is not read."""
    cfg = sf.fastvideo_cfg(extra_losses=["msm"], msm={"order": 2})
    sf.fastvideo_cli_overrides(cfg, ["--method.lam", "0.5"])
    with pytest.raises(ValueError, match=r"setting `method.lam` is not used: did you mean `method.msm.lam`\?"):
        fastvideo.MSMDMD2Method(cfg=cfg, role_models=sf.fastvideo_roles())
    cfg = sf.fastvideo_cfg(extra_losses=["msm"], msm={"order": 2})
    sf.fastvideo_cli_overrides(cfg, ["--method.msm.lam", "0.5"])
    (msm,) = active_losses(fastvideo.MSMDMD2Method(cfg=cfg, role_models=sf.fastvideo_roles()))
    assert (msm.weight, msm.config.order) == (0.5, 2)


def test_fastvideo_an_empty_list_is_a_run_without_extra_losses_and_wrap_trainer_reads_method(frameworks):
    assert active_losses(fastvideo_method(extra_losses=[])) == ()
    method = sf.DMD2Method(cfg=sf.fastvideo_cfg(lam=0.5), role_models=sf.fastvideo_roles())
    with pytest.raises(ValueError, match=r"setting `method.lam` is not used: did you mean `method.msm.lam`\?"):
        wrap_trainer(method, lam=0.5)
    assert "_dmd_loss" not in vars(method)


# ---------------------------------------------------------------- FastGen


def fastgen_model(**keywords):
    """What FastGen's train.py does: set the model config on the LazyCall, then instantiate it."""
    call = sf.LazyCall(fastgen.MSMDMD2Model)(config=None, **keywords)
    call.config = sf.fastgen_config()
    return sf.instantiate(call)


@pytest.mark.parametrize("keywords, message", [
    *[({"extra_losses": ["msm"], key.replace("-", "_"): {"lam": 0.5}}, rf"setting `model_class.{key.replace('-', '_')}` is not used: did you mean `model_class.msm`\?")
      for key in SECTION_VARIANTS],
    ({"extra_losses": ["msm"], "lam": 0.5}, r"setting `model_class.lam` is not used: did you mean `model_class.msm.lam`\?"),
    ({"extra_loss": ["msm"]}, r"setting `model_class.extra_loss` is not used: did you mean `model_class.extra_losses`\?"),
    ({"extra_losses": ["msm"], "seed": 1},
     r"setting `model_class.seed` is not used: MSMDMD2Model takes `config`, `extra_losses` and one options section per listed loss"),
    ({}, r"MSMDMD2Model adds the extra losses its `extra_losses` keyword lists, but there is none: add "
         r"`L\(MSMDMD2Model\)\(config=None, extra_losses=\['msm'\], msm=dict\(lam=\.\.\.\)\)`, or an empty list"),
])
def test_fastgen_refuses_keywords_before_any_network(frameworks, keywords, message):
    before = sf.DMD2Model.built
    with pytest.raises(ValueError, match=message):
        fastgen_model(**keywords)
    assert sf.DMD2Model.built == before


def test_fastgen_an_appended_override_is_refused(frameworks):
    """`+model_class.lam=0.25` appends a key to the LazyCall: it reaches the class as a keyword."""
    call = sf.LazyCall(fastgen.MSMDMD2Model)(config=sf.fastgen_config(), extra_losses=["msm"], msm={"lam": 0.5})
    call.lam = 0.25
    with pytest.raises(ValueError, match=r"setting `model_class.lam` is not used: did you mean `model_class.msm.lam`\?"):
        sf.instantiate(call)
    call = sf.LazyCall(fastgen.MSMDMD2Model)(config=sf.fastgen_config(), extra_losses=["msm"], msm={"lam": 0.5})
    call.msm.lam = 0.25  # `model_class.msm.lam=0.25`: read
    (msm,) = active_losses(sf.instantiate(call))
    assert msm.weight == 0.25
    assert active_losses(fastgen_model(extra_losses=[])) == ()


# ---------------------------------------------------------------- the rule itself


def test_no_loss_or_option_name_is_a_key_of_a_hosts_own_config():
    """The rule refuses option names found one level too high: none may be a host's own key there,
    nor may any host key look like an extra-loss setting (checked without the exemption)."""
    ours = {"extra_losses"} | set(available_losses())
    for loss in available_losses():
        options_class = getattr(get_loss(loss), "options_class", None)
        ours |= set(options_class.option_names()) if options_class is not None else set()
    for name in available_hosts():
        host = get_host(name)
        assert host.config_keys, name
        assert not ours & host.config_keys, (name, ours & host.config_keys)
        assert [key for key in host.config_keys if unused_setting(key) is not None] == [], name
        refuse_unused_settings({key: None for key in host.config_keys}, at=host.settings_at)


@pytest.mark.parametrize("key", ["msm", "extra_losses", "mse", "lr", "ms", "msn", "extra", "losses", "ema_weight", "lambda", "t_maximum"])
def test_what_does_not_look_like_a_setting(key):
    assert unused_setting(key) is None
