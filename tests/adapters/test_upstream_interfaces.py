"""The test stand-ins held to the frameworks' real interfaces, where a framework's source is at hand.

Give a checkout with ``MSM_PLUGIN_CAUSVID_SRC``, ``MSM_PLUGIN_SELF_FORCING_SRC``,
``MSM_PLUGIN_FASTVIDEO_SRC`` or ``MSM_PLUGIN_FASTGEN_SRC`` (or install the package); otherwise these
tests are skipped, saying so. Each compares what the adapters rely on: the signatures of the
methods the stand-ins imitate (names, keyword-only, required), the behaviours the adapters read
(which steps train the generator, the log keys, when a gradient mask exists, what a ``LazyCall``
hands over, how a launcher resolves a config path), each run on the framework's own code where
it runs on a CPU without its dependencies.
"""

import ast
import importlib
import math
import os
import subprocess
import sys
import types
from pathlib import Path
from types import SimpleNamespace

import pytest
import torch
from einops import rearrange
from omegaconf import DictConfig, ListConfig

import msm_plugin.hosts.fastvideo as fastvideo
from msm_plugin.config import refuse_unused_settings
from msm_plugin.hosts import get_host
from msm_plugin.hosts.base import generator_steps_before
from tests.adapters import framework_standins as sf
from tests.adapters import standins
from tests.adapters.upstream import attribute_chains, calls_of, returned_dict_keys, signature_of, source, unparse

# ---------------------------------------------------------------- CausVid and Self-Forcing

CHAIN_METHODS = {
    "causvid": ("causvid/dmd.py", "DMD", standins.CausVidDMD,
                ["_compute_kl_grad", "compute_distribution_matching_loss", "generator_loss", "_run_generator", "critic_loss"]),
    "self_forcing": ("model/dmd.py", "DMD", standins.SelfForcingDMD,
                     ["_compute_kl_grad", "compute_distribution_matching_loss", "generator_loss", "critic_loss"]),
}


@pytest.mark.parametrize("host", sorted(CHAIN_METHODS))
def test_dmd_signatures(host):
    path, cls, standin, methods = CHAIN_METHODS[host]
    src = source(host, path)
    for method in methods:
        assert signature_of(getattr(standin, method)) == src.signature(path, f"{cls}.{method}"), method


def test_self_forcing_run_generator_signature():
    src = source("self_forcing", "model/base.py")
    assert signature_of(standins.SelfForcingDMD._run_generator) == src.signature("model/base.py", "SelfForcingModel._run_generator")


@pytest.mark.parametrize("host", sorted(CHAIN_METHODS))
def test_kl_grad_log_keys(host):
    path, cls, standin, _ = CHAIN_METHODS[host]
    src = source(host, path)
    dmd = standin(standins.make_config())
    x = torch.zeros(standins.SHAPE)
    _, log = dmd._compute_kl_grad(x, x, torch.full(standins.SHAPE[:2], 500.0), *standins.text_dicts())
    assert sorted(log) == sorted(returned_dict_keys(src.definition(path, f"{cls}._compute_kl_grad")))


@pytest.mark.parametrize("host, path, method", [
    ("causvid", "causvid/train_distillation.py", "train_one_step"),
    ("self_forcing", "trainer/distillation.py", "train"),
])
def test_trainer_step_rule_the_schedule_follows(host, path, method):
    """The step starts at 0 and the generator trains when step % dfake_gen_update_ratio == 0: what
    the host's step_source converts (generator_steps_before(step, ratio, first=0))."""
    src = source(host, path)
    init = unparse(src.definition(path, "Trainer.__init__"))
    assert "self.step = 0" in init
    body = unparse(src.definition(path, f"Trainer.{method}"))
    assert "self.step % self.config.dfake_gen_update_ratio == 0" in body
    assert get_host(host).step_source(standins.CausVidTrainer(standins.make_config(output_path="x")) if host == "causvid"
                                      else standins.SelfForcingTrainer(standins.make_config())) is not None


class _Randint:
    """torch with randint fixed to one value (the number of generated blocks)."""

    def __init__(self, value):
        self.value = value

    def __getattr__(self, name):
        return getattr(torch, name)

    def randint(self, low, high, size, device=None):
        return torch.full(size, self.value, dtype=torch.long)


def test_self_forcing_gradient_mask_is_none_exactly_when_the_teacher_sees_every_generated_frame():
    src = source("self_forcing", "model/base.py")
    window, block, b, c, hw = 21, 3, 1, 2, 4

    def upstream(blocks):
        namespace = {"torch": _Randint(blocks), "dist": SimpleNamespace(broadcast=lambda tensor, src: None),
                     "rearrange": rearrange, "Tuple": tuple}
        run = src.compile("model/base.py", "SelfForcingModel._run_generator", namespace)
        model = SimpleNamespace(
            args=SimpleNamespace(backward_simulation=True, i2v=False, independent_first_frame=False),
            num_training_frames=30, num_frame_per_block=block, device="cpu", dtype=torch.float32,
            _consistency_backward_simulation=lambda noise, **kwargs: (noise, 1000, 250),
            vae=SimpleNamespace(decode_to_pixel=lambda latent: latent, encode_to_latent=lambda frame: frame.transpose(1, 2)),
        )
        return run(model, [b, window, c, hw, hw], {})[1]

    def standin(generated):
        dmd = standins.SelfForcingDMD(standins.make_config())
        dmd.generated_frames = generated
        shape = [b, standins.SHAPE[1], *standins.SHAPE[2:]]
        return dmd._run_generator(shape, standins.text_dicts(batch=b)[0])[1]

    assert upstream(window // block) is None and standin(None) is None
    masked, ours = upstream(window // block + 2), standin(standins.SHAPE[1] + 2 * block)
    frames = masked.flatten(2).all(2)[0].tolist()
    assert frames == [False] * block + [True] * (window - block)
    assert ours.flatten(2).all(2)[0].tolist() == [False] * block + [True] * (standins.SHAPE[1] - block)


def test_chain_hosts_config_keys_pass_the_rule():
    """Every top-level key of the hosts' own configs passes the unused-settings rule."""
    for host, folder in (("causvid", "configs"), ("self_forcing", "configs")):
        src = source(host, CHAIN_METHODS[host][0])
        import yaml

        for path in sorted((src.root / folder).glob("*.yaml")):
            keys = {key: None for key in (yaml.safe_load(path.read_text()) or {})}
            assert set(keys) <= get_host(host).config_keys, (path.name, set(keys) - get_host(host).config_keys)
            refuse_unused_settings(keys)


# ---------------------------------------------------------------- FastVideo

FV = "fastvideo/train"
FV_DMD2 = f"{FV}/methods/distribution_matching/dmd2.py"


def test_fastvideo_prediction_signatures_take_conditional_keyword_only_and_required():
    src = source("fastvideo", f"{FV}/models/base.py")
    for method in ("predict_x0", "predict_noise"):
        theirs = src.signature(f"{FV}/models/base.py", f"ModelBase.{method}")
        assert ("conditional", "keyword", True) in theirs
        assert signature_of(getattr(sf.Role, method)) == theirs, method


def test_fastvideo_method_signatures():
    src = source("fastvideo", FV_DMD2, f"{FV}/methods/distribution_matching/self_forcing.py", f"{FV}/methods/base.py")
    assert signature_of(sf.DMD2Method.__init__) == src.signature(FV_DMD2, "DMD2Method.__init__")
    for method in ("_dmd_loss", "single_train_step", "_should_update_student"):
        assert signature_of(getattr(sf.DMD2Method, method)) == src.signature(FV_DMD2, f"DMD2Method.{method}"), method
    path = f"{FV}/methods/distribution_matching/self_forcing.py"
    assert signature_of(sf.SelfForcingMethod._predict_x0_with_scheduler) == src.signature(path, "SelfForcingMethod._predict_x0_with_scheduler")
    init = unparse(src.definition(f"{FV}/methods/base.py", "TrainingMethod.__init__"))
    assert "self.method_config: dict[str, Any] = dict(cfg.method)" in init


def test_fastvideo_generator_steps_follow_its_update_rule_and_loop():
    """Our generator step at iteration i counts the iterations 1..i-1 at which FastVideo's own
    _should_update_student (run here) trains the student; its loop starts at start_step + 1."""
    src = source("fastvideo", FV_DMD2, f"{FV}/utils/config.py", f"{FV}/trainer.py")
    namespace = {}
    get_optional_int = src.compile(f"{FV}/utils/config.py", "get_optional_int", namespace)
    should = src.compile(FV_DMD2, "DMD2Method._should_update_student", {"get_optional_int": get_optional_int})
    for interval in (None, 1, 3, "2", 0, -1):
        method = SimpleNamespace(method_config={} if interval is None else {"generator_update_interval": interval})
        trained = [i for i in range(1, 40) if should(method, i)]
        assert trained == [i for i in range(1, 40) if sf.DMD2Method._should_update_student(method, i)], interval
        every = fastvideo.generator_interval(method)
        assert [generator_steps_before(i, every, first=1) for i in trained] == list(range(len(trained))), interval
    loop = unparse(src.definition(f"{FV}/trainer.py", "Trainer.run"))
    assert "range(start_step + 1, max_steps + 1)" in loop and "method.single_train_step(batch, step)" in loop


def test_fastvideo_cli_overrides_land_where_the_stand_in_puts_them():
    src = source("fastvideo", f"{FV}/utils/config.py")
    import yaml

    namespace = {"yaml": yaml, "Any": object}
    cast = src.compile(f"{FV}/utils/config.py", "_cast_value", namespace)
    parse = src.compile(f"{FV}/utils/config.py", "_parse_cli_overrides", namespace)
    apply = src.compile(f"{FV}/utils/config.py", "_apply_overrides", namespace)
    assert cast is namespace["_cast_value"]
    for tokens in (["--method.lam", "0.5"], ["--method.msm.lam=0.25", "--method.msm.order", "2"],
                   ["--msm.lam", "1e-3"], ["--method.extra_losses", "[msm]"], ["--method.msm.normalization", "dmd"]):
        raw = {"models": {}, "method": {"_target_": "x", "msm": {"order": 1}}, "training": {}}
        apply(raw, parse(tokens))
        cfg = sf.fastvideo_cfg(msm={"order": 1})
        cfg.raw["method"] = {"_target_": "x", "msm": {"order": 1}}
        sf.fastvideo_cli_overrides(cfg, tokens)
        assert cfg.raw == raw, tokens


def test_fastvideo_run_config_keeps_the_whole_yaml_and_its_top_level_keys():
    src = source("fastvideo", f"{FV}/utils/config.py")
    fields = [n.target.id for n in src.definition(f"{FV}/utils/config.py", "RunConfig").body if hasattr(n, "target")]
    assert fields == ["models", "method", "training", "callbacks", "raw"]
    loader = unparse(src.definition(f"{FV}/utils/config.py", "load_run_config"))
    top = {"models", "method", "training", "callbacks", "pipeline"}
    assert all(f'cfg.get("{key}"' in loader.replace("'", '"') or key == "pipeline" for key in top)
    assert fastvideo.TOP_LEVEL_KEYS == top


def test_fastvideo_example_method_keys_pass_the_rule():
    src = source("fastvideo", FV_DMD2)
    import yaml

    configs = sorted((src.root / "examples" / "train" / "configs").rglob("*.yaml"))
    if not configs:
        pytest.skip(f"{src.root} has no examples/train/configs")
    for path in configs:
        raw = yaml.safe_load(path.read_text())
        method = raw.get("method") or {}
        assert set(method) <= fastvideo.FastVideoHost.config_keys, (path, set(method) - fastvideo.FastVideoHost.config_keys)
        refuse_unused_settings(method, at="method.")
        refuse_unused_settings(raw, home="method.", host_keys=fastvideo.TOP_LEVEL_KEYS)


def test_fastvideo_run_sh_resolves_a_config_path_as_the_stand_in_does(tmp_path):
    src = source("fastvideo", "examples/train/run.sh")
    checkout, elsewhere, bin_ = tmp_path / "FastVideo", tmp_path / "elsewhere", tmp_path / "bin"
    (checkout / "examples" / "train").mkdir(parents=True)
    (checkout / "examples" / "train" / "run.sh").write_text(src.text("examples/train/run.sh"))
    (checkout / "msm_configs").mkdir()
    (checkout / "msm_configs" / "c.yaml").write_text("")
    elsewhere.mkdir()
    bin_.mkdir()
    (bin_ / "python").write_text(f'#!/bin/sh\nprintf "%s\\n" "$@" > {tmp_path}/args\n')
    (bin_ / "python").chmod(0o755)
    env = {**os.environ, "PATH": f"{bin_}:{os.environ['PATH']}", "NUM_GPUS": "1", "LOG_DIR": str(tmp_path / "logs")}

    def launched(config, cwd):
        subprocess.run(["bash", str(checkout / "examples" / "train" / "run.sh"), config], cwd=cwd, env=env, check=True, capture_output=True)
        args = (tmp_path / "args").read_text().splitlines()
        return args[args.index("--config") + 1]

    for config, cwd in (("msm_configs/c.yaml", checkout), (str(checkout / "msm_configs" / "c.yaml"), elsewhere)):
        assert launched(config, cwd) == sf.fastvideo_run_config_path(config, cwd=str(cwd))


# ---------------------------------------------------------------- FastGen

FG_DMD2 = "fastgen/methods/distribution_matching/dmd2.py"


def test_fastgen_model_signatures_and_the_loss_it_looks_up_by_name():
    src = source("fastgen", FG_DMD2, "fastgen/methods/common_loss.py", "fastgen/methods/distribution_matching/causvid.py",
                 "fastgen/methods/distribution_matching/self_forcing.py")
    assert signature_of(sf.DMD2Model.__init__) == src.signature(FG_DMD2, "DMD2Model.__init__")  # `config` only: others refused
    for method in ("_student_update_step", "single_train_step", "_fake_score_discriminator_update_step"):
        assert signature_of(getattr(sf.DMD2Model, method)) == src.signature(FG_DMD2, f"DMD2Model.{method}"), method
    assert signature_of(sf.variational_score_distillation_loss) == src.signature(
        "fastgen/methods/common_loss.py", "variational_score_distillation_loss")
    step = src.definition(FG_DMD2, "DMD2Model._student_update_step")
    assert calls_of(step).count("variational_score_distillation_loss") == 1  # a global name, called once
    assert "self.net.noise_scheduler.forward_process" in attribute_chains(step)
    for path, cls in (("fastgen/methods/distribution_matching/causvid.py", "CausVidModel"),
                      ("fastgen/methods/distribution_matching/self_forcing.py", "SelfForcingModel")):
        defined = [n.name for n in src.definition(path, cls).body if hasattr(n, "name")]
        assert "_student_update_step" not in defined and "single_train_step" not in defined, cls


def test_fastgen_student_update_rule_and_loop():
    src = source("fastgen", FG_DMD2, "fastgen/trainer.py")
    assert "iteration % self.config.student_update_freq == 0" in unparse(src.definition(FG_DMD2, "DMD2Model.single_train_step"))
    assert "range(iter_start + 1, self.config.trainer.max_iter)" in unparse(src.definition("fastgen/trainer.py", "Trainer.run"))


def test_fastgen_noise_schedules_scale():
    path = "fastgen/networks/noise_schedule.py"
    src = source("fastgen", path)
    assert any(isinstance(d, ast.Name) and d.id == "property" for d in src.definition(path, "BaseNoiseSchedule.max_t").decorator_list)
    defaults = {}
    for cls, kind in (("RFNoiseSchedule", "rf"), ("EDMNoiseSchedule", "edm"), ("TrigNoiseSchedule", "trig")):
        args = src.definition(path, f"{cls}.__init__").args
        named = dict(zip([a.arg for a in args.args][-len(args.defaults):], args.defaults))
        defaults[kind] = (eval(unparse(named["min_t"]), {"torch": math}), eval(unparse(named["max_t"]), {"torch": math}))
    assert defaults == sf.NoiseSchedule.KINDS
    step = src.definition(FG_DMD2, "DMD2Model._generate_noise_and_time")
    assert "self.net.noise_scheduler.max_t" in attribute_chains(step)


def _import_fastgen(monkeypatch, root):
    """FastGen's own modules from ``root``, its logger stubbed (loguru and torch.distributed set-up)."""
    logging_utils = types.ModuleType("fastgen.utils.logging_utils")
    logging_utils.__getattr__ = lambda name: (lambda *args, **kwargs: None)
    logging_utils.logger = SimpleNamespace(**{k: (lambda *a, **kw: None) for k in ("info", "error", "warning", "debug", "critical", "success")})
    for name in [m for m in sys.modules if m.split(".")[0] in ("fastgen", "hydra")]:
        monkeypatch.delitem(sys.modules, name)
    monkeypatch.setitem(sys.modules, "fastgen.utils.logging_utils", logging_utils)
    hydra = types.ModuleType("hydra")
    hydra.compose = hydra.initialize = None
    store = types.ModuleType("hydra.core.config_store")
    store.ConfigStore = None
    for name, module in (("hydra", hydra), ("hydra.core", types.ModuleType("hydra.core")), ("hydra.core.config_store", store)):
        monkeypatch.setitem(sys.modules, name, module)
    monkeypatch.syspath_prepend(str(root))
    importlib.import_module("fastgen.utils")  # the package first: the stubbed logger is one of its modules


def test_fastgen_lazy_call_hands_over_omegaconf_containers(monkeypatch):
    src = source("fastgen", "fastgen/utils/__init__.py")
    _import_fastgen(monkeypatch, src.root)
    import fastgen.utils as real

    class Recorder:
        def __init__(self, **kwargs):
            self.types = {k: type(v) for k, v in kwargs.items()}

    call = dict(config=None, extra_losses=["msm"], msm=dict(lam=0.5, order=2))
    theirs = real.instantiate(real.LazyCall(Recorder)(**call)).types
    ours = sf.instantiate(sf.LazyCall(Recorder)(**call)).types
    assert theirs == ours == {"config": type(None), "extra_losses": ListConfig, "msm": DictConfig}
    appended = real.LazyCall(Recorder)(**call)
    appended.lam = 0.25  # `+model_class.lam=0.25`
    assert real.instantiate(appended).types["lam"] is float


def test_fastgen_config_loader_accepts_what_the_stand_in_accepts(monkeypatch, tmp_path):
    src = source("fastgen", "fastgen/configs/config_utils.py")
    _import_fastgen(monkeypatch, src.root)
    from fastgen.configs.config_utils import import_config_from_python_file as real

    checkout = tmp_path / "checkout"
    (checkout / "msm_configs").mkdir(parents=True)
    (checkout / "msm_configs" / "probe_config.py").write_text("def create_config():\n    return 'probe'\n")
    (checkout / "msm_configs" / "probe_config.txt").write_text("")
    monkeypatch.chdir(checkout)
    monkeypatch.syspath_prepend(str(checkout))

    def outcome(load, path):
        try:
            return load(path)
        except Exception as exc:  # the kind of failure is what is compared
            return type(exc)

    paths = ["msm_configs/probe_config.py", str(checkout / "msm_configs" / "probe_config.py"), "./msm_configs/probe_config.py",
             "msm_configs/probe_config.txt", "msm_configs/missing.py"]
    assert [outcome(real, p) for p in paths] == [outcome(sf.fastgen_load_config, p) for p in paths]
    assert [outcome(real, p) for p in paths][:2] == ["probe", TypeError]


def test_fastgen_train_script_reads_config_and_builds_model_class_with_its_config():
    src = source("fastgen", "train.py", "fastgen/utils/scripts.py")
    main = unparse(src.definition("train.py", "main"))
    assert "config.model_class.config = config.model" in main and "instantiate(config.model_class)" in main
    assert "parser.add_argument('--config'" in unparse(src.definition("fastgen/utils/scripts.py", "parse_args"))


def test_fastgen_example_config_is_upstreams_experiment(tmp_path):
    src = source("fastgen", "fastgen/configs/experiments/WanT2V/config_dmd2.py")
    assert "def create_config" in src.text("fastgen/configs/experiments/WanT2V/config_dmd2.py")
    shipped = Path(__file__).resolve().parents[2] / "examples" / "configs" / "fastgen_wan_t2v_dmd2_msm.py"
    assert "import fastgen.configs.experiments.WanT2V.config_dmd2 as upstream" in shipped.read_text()
