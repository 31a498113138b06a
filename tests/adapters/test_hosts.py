"""The host interface: registry and detection, the Self-Forcing config route, a fork sharing model/dmd.py."""

import sys

import pytest
import torch
import yaml

from msm_plugin import active_losses, unwrap_trainer, wrap_trainer
from msm_plugin import hosts, train
from msm_plugin.adapters import pop_extra_logs
from msm_plugin.hosts import detect_host, get_host, register_host
from msm_plugin.hosts.causvid import CausVidHost
from msm_plugin.hosts.self_forcing import SelfForcingHost
from tests.adapters.standins import SHAPE, CausVidDMD, SelfForcingDMD, make_config, text_dicts


class SelfForcingLoopTrainer:
    """Self-Forcing's ``trainer/distillation.py`` Trainer as the adapter sees it: ``.model``,
    ``.config``, ``.step``, ``.is_main_process``, ``.disable_wandb``, ``fwdbwd_one_step(batch,
    train_generator)`` returning the generator's log dict, and ``train()`` that runs the
    generator and critic, then increments ``step``, then logs a fixed set of keys at that step."""

    built = []

    def __init__(self, config) -> None:
        SelfForcingLoopTrainer.built.append(config)
        self.config, self.step = config, 0
        self.is_main_process, self.disable_wandb = True, config.disable_wandb
        self.model = SelfForcingDMD(config)
        self.logged = []  # what train() hands wandb.log: (step, keys)
        self.sink = None

    def fwdbwd_one_step(self, batch, train_generator):
        cond, uncond = text_dicts()
        shape = list(self.config.image_or_video_shape)
        if train_generator:
            loss, log = self.model.generator_loss(image_or_video_shape=shape, conditional_dict=cond,
                                                  unconditional_dict=uncond, clean_latent=None)
            loss.backward()
            return {**log, "generator_loss": loss.detach()}
        loss, log = self.model.critic_loss(image_or_video_shape=shape, conditional_dict=cond, unconditional_dict=uncond, clean_latent=None)
        loss.backward()
        return {"critic_loss": loss.detach()}

    def train(self) -> None:
        for _ in range(self.config.max_steps):
            train_generator = self.step % self.config.dfake_gen_update_ratio == 0
            if train_generator:
                generator_log = self.fwdbwd_one_step(None, True)
            critic_log = self.fwdbwd_one_step(None, False)
            self.step += 1
            keys = {"critic_loss": float(critic_log["critic_loss"])}
            if train_generator:
                keys.update(generator_loss=float(generator_log["generator_loss"]),
                            dmdtrain_gradient_norm=float(generator_log["dmdtrain_gradient_norm"]))
            if self.is_main_process and not self.disable_wandb:
                self.sink(keys, step=self.step)


@pytest.fixture
def checkout(tmp_path, monkeypatch):
    """A Self-Forcing checkout as the working directory: configs/default_config.yaml and a user YAML."""
    (tmp_path / "configs").mkdir()
    defaults = make_config(trainer="score_distillation", distribution_loss="sid", max_steps=3, disable_wandb=False)
    (tmp_path / "configs" / "default_config.yaml").write_text(yaml.safe_dump(defaults))
    user = {"distribution_loss": "dmd", "extra_losses": ["msm"], "msm": {"lam": 0.25, "per_pair_logs": False}}
    (tmp_path / "configs" / "self_forcing_msm.yaml").write_text(yaml.safe_dump(user))
    monkeypatch.chdir(tmp_path)
    return tmp_path


def test_msm_train_host_self_forcing_merges_defaults_wraps_and_logs_at_upstreams_step(checkout, monkeypatch):
    rows = {}

    def fake_log(keys, step):
        rows.setdefault(step, {}).update(keys)

    wandb = type(sys)("wandb")
    wandb.log, wandb.finish = fake_log, lambda: None
    monkeypatch.setitem(sys.modules, "wandb", wandb)
    original_init = SelfForcingLoopTrainer.__init__

    def init(self, config):
        original_init(self, config)
        self.sink = fake_log

    monkeypatch.setattr(SelfForcingLoopTrainer, "__init__", init)
    SelfForcingLoopTrainer.built.clear()
    train.main(["--host", "self-forcing", "--config_path", "configs/self_forcing_msm.yaml", "--no_save"],
               trainer_cls=SelfForcingLoopTrainer)
    (config,) = SelfForcingLoopTrainer.built
    assert config.distribution_loss == "dmd" and config.max_steps == 3 and config.no_save is True
    assert config.config_name == "self_forcing_msm" and config.disable_wandb is False
    # dfake_gen_update_ratio = 2: generator at steps 0 and 2; upstream logs those rows at step 1 and 3
    assert sorted(rows) == [1, 2, 3]
    for step in (1, 3):
        assert {"generator_loss", "dmdtrain_gradient_norm", "dmd_loss", "msm_loss", "msm_lambda"} <= rows[step].keys()
        assert rows[step]["generator_loss"] == pytest.approx(rows[step]["dmd_loss"] + 0.25 * rows[step]["msm_loss"], rel=1e-6)
    assert "msm_loss" not in rows[2] and "critic_loss" in rows[2]


def test_self_forcing_route_honours_disable_wandb_and_unwraps(checkout):
    logged = []
    config = get_host("self_forcing").load_config(
        train.build_parser("self_forcing").parse_args(["--host", "self_forcing", "--config_path", "configs/self_forcing_msm.yaml", "--disable-wandb"]))
    trainer = SelfForcingLoopTrainer(config)
    trainer.sink = lambda keys, step: None
    before = dict(vars(trainer))
    from msm_plugin.adapters import apply_extra_losses

    train.log_extra_losses(apply_extra_losses(trainer), log=lambda logs, step: logged.append(step))
    assert [loss.name for loss in active_losses(trainer)] == ["msm"]
    trainer.train()
    assert logged == [] and pop_extra_logs(trainer) == {}
    unwrap_trainer(trainer)
    assert vars(trainer).keys() == before.keys() and active_losses(trainer) == ()


def test_self_forcing_config_must_be_its_dmd_trainer(checkout):
    (checkout / "configs" / "sid.yaml").write_text(yaml.safe_dump({"distribution_loss": "sid"}))
    args = train.build_parser("self_forcing").parse_args(["--config_path", "configs/sid.yaml"])
    with pytest.raises(ValueError, match=r"needs `trainer: score_distillation` and `distribution_loss: dmd`, got trainer 'score_distillation' and distribution_loss 'sid'"):
        get_host("self_forcing").load_config(args)


def test_self_forcing_outside_its_checkout_is_one_line_and_status_2(tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    (tmp_path / "user.yaml").write_text("extra_losses: [msm]\n")
    with pytest.raises(SystemExit) as exit_info:
        train.main(["--host", "self_forcing", "--config_path", "user.yaml"])
    err = capsys.readouterr().err
    assert exit_info.value.code == 2 and err.count("\n") == 1
    assert err.startswith("msm-train: error: no configs/default_config.yaml in ")


def test_self_forcing_trainer_class_names_the_checkout(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    monkeypatch.setattr(sys, "path", list(sys.path))  # trainer_class puts the checkout on the path
    monkeypatch.setitem(sys.modules, "trainer", None)
    with pytest.raises(ModuleNotFoundError, match=r"no package `trainer` in .*run it from a Self-Forcing checkout"):
        SelfForcingHost().trainer_class()


class CausalForcingDMD(SelfForcingDMD):
    """thu-ml/Causal-Forcing shares Self-Forcing's ``model/dmd.py``: same methods, tuple outputs,
    hidden predictions. A separate class (another module in the fork) with nothing added."""


class CausalForcingTrainer:
    def __init__(self, config) -> None:
        self.config, self.model, self.step = config, CausalForcingDMD(config), 0


def test_a_fork_sharing_model_dmd_works_as_it_is():
    trainer = CausalForcingTrainer(make_config())
    assert detect_host(trainer).name == "self_forcing"
    wrap_trainer(trainer, lam=0.5)
    x = torch.randn(SHAPE)
    loss, log = trainer.model.compute_distribution_matching_loss(x, *text_dicts())
    assert log["msm_lambda"] == 0.5 and torch.isfinite(loss) and "dmdtrain_gradient_norm" in log


def test_detection_error_lists_the_hosts_and_host_forces_one():
    with pytest.raises(TypeError, match=r"expected a CausVid Trainer .* or a Self-Forcing Trainer .* or a FastVideo DMD2Method .*, or a FastGen DMD2Model .* \(known hosts: causvid, self_forcing, fastvideo, fastgen; pass host=\.\.\. to force one\), got object"):
        wrap_trainer(object())
    dmd = CausVidDMD(make_config(real_task_type="causal_video"))
    with pytest.raises(ValueError, match="real_task_type is causal_video"):
        wrap_trainer(dmd, lam=1.0, host="causvid")
    with pytest.raises(ValueError, match=r"unknown host 'fast_gen'; known hosts: causvid, fastgen, fastvideo, self_forcing"):
        wrap_trainer(dmd, lam=1.0, host="fast_gen")
    with pytest.raises(TypeError, match=r"expected a Self-Forcing Trainer \(with \.model and \.config\), got object"):
        wrap_trainer(object(), host="self_forcing")


class ForkHost(SelfForcingHost):
    name = "my_fork"
    description = "a my-fork Trainer (with .fork_model)"

    def trainer_dmd(self, trainer):
        return (trainer.fork_model, trainer.config) if hasattr(trainer, "fork_model") else None


class _FakeEntryPoint:
    def __init__(self, name, target):
        self.name, self.value, self.target, self.dist = name, f"fork:{target.__name__}", target, None

    def load(self):
        return self.target


def test_a_plugin_host_from_an_entry_point_is_detected_before_the_built_ins(monkeypatch):
    monkeypatch.setattr(hosts, "_hosts", dict(hosts._hosts))
    monkeypatch.setattr(hosts, "_plugins", [])
    monkeypatch.setattr(hosts, "_loaded", False)
    monkeypatch.setattr(hosts, "entry_points", lambda group: [_FakeEntryPoint("my_fork", ForkHost)] if group == hosts.HOST_ENTRY_POINT_GROUP else [])
    assert hosts.available_hosts() == ["causvid", "fastgen", "fastvideo", "my_fork", "self_forcing"]
    trainer = type("ForkTrainer", (), {})()
    trainer.config, trainer.fork_model = make_config(), SelfForcingDMD(make_config())
    assert detect_host(trainer).name == "my_fork"
    wrap_trainer(trainer, lam=0.3)
    assert [loss.weight for loss in active_losses(trainer)] == [0.3]
    with pytest.raises(ValueError, match=r"host 'my_fork' of .*OtherHost is already registered by ForkHost"):
        register_host(type("OtherHost", (ForkHost,), {}))
    with pytest.raises(TypeError, match="expected a msm_plugin.hosts.Host subclass or instance, got 3"):
        register_host(3)
    with pytest.raises(ValueError, match="host names are lower-case identifiers"):
        register_host(type("BadHost", (SelfForcingHost,), {"name": "Bad-Host"}))


def _fake_host_entry_points(monkeypatch, *eps):
    monkeypatch.setattr(hosts, "_hosts", dict(hosts._hosts))
    monkeypatch.setattr(hosts, "_plugins", [])
    monkeypatch.setattr(hosts, "_loaded", False)
    monkeypatch.setattr(hosts, "entry_points", lambda group: list(eps) if group == hosts.HOST_ENTRY_POINT_GROUP else [])


def test_an_entry_point_resolving_to_a_built_in_host_is_a_no_op(monkeypatch):
    """The installed package declares its own hosts too: loading them must not make them plugins."""
    before = dict(hosts._hosts)
    _fake_host_entry_points(monkeypatch, _FakeEntryPoint("causvid", CausVidHost), _FakeEntryPoint("my_fork", ForkHost))
    assert hosts.available_hosts() == ["causvid", "fastgen", "fastvideo", "my_fork", "self_forcing"]
    assert hosts._plugins == ["my_fork"]
    assert hosts._hosts["causvid"] is before["causvid"]  # the instance registered in code stays
    with pytest.raises(TypeError, match=r"expected a my-fork Trainer .* or a CausVid Trainer .* \(known hosts: my_fork, causvid, "):
        detect_host(object())


def test_an_entry_point_must_carry_its_hosts_name_and_one_name_one_value(monkeypatch):
    _fake_host_entry_points(monkeypatch, _FakeEntryPoint("fork", ForkHost))
    with pytest.raises(ValueError, match=r"^entry point 'fork' = 'fork:ForkHost' of distribution '<unknown distribution>' loads a host named 'my_fork'; the entry point's name must be the host's name$"):
        hosts.available_hosts()
    _fake_host_entry_points(monkeypatch, _FakeEntryPoint("my_fork", ForkHost), _FakeEntryPoint("my_fork", SelfForcingHost))
    with pytest.raises(ValueError, match=r"^host 'my_fork' is declared twice: by entry point 'my_fork' = 'fork:ForkHost' .* and by entry point 'my_fork' = 'fork:SelfForcingHost' "):
        hosts.available_hosts()
    _fake_host_entry_points(monkeypatch, _FakeEntryPoint("my_fork", type("NotAHost", (), {"name": "my_fork"})))
    with pytest.raises(TypeError, match=r"^expected a msm_plugin.hosts.Host subclass or instance from entry point 'my_fork' = 'fork:NotAHost' "):
        hosts.available_hosts()
    other = type("OtherHost", (SelfForcingHost,), {"name": "causvid"})
    _fake_host_entry_points(monkeypatch, _FakeEntryPoint("causvid", other))
    with pytest.raises(ValueError, match=r"^host 'causvid' of OtherHost from entry point 'causvid' = 'fork:OtherHost' .* is already registered by CausVidHost$"):
        hosts.available_hosts()


def test_a_host_without_an_msm_train_route_says_so_in_one_line(monkeypatch, capsys):
    class CodeOnlyHost(ForkHost):
        name = "code_only"
        load_config = hosts.Host.load_config

    monkeypatch.setitem(hosts._hosts, "code_only", CodeOnlyHost())
    with pytest.raises(SystemExit) as exit_info:
        train.main(["--host", "code_only", "--config_path", "x.yaml"])
    assert exit_info.value.code == 2
    assert capsys.readouterr().err == "msm-train: error: host 'code_only' has no msm-train route; wrap its trainer in code (wrap_trainer)\n"


class PatchedSelfForcingTrainer(SelfForcingLoopTrainer):
    """The stand-in with the two lines patches/self-forcing-extra-losses.patch adds to upstream's
    Trainer: ``apply_extra_losses(self, host=...)`` at the end of setup, and the extra scalars
    merged into the generator step's wandb dict."""

    def __init__(self, config) -> None:
        super().__init__(config)
        from msm_plugin.adapters import apply_extra_losses

        apply_extra_losses(self, host="self_forcing")

    def train(self) -> None:
        original = self.sink
        self.sink = lambda keys, step: original({**keys, **pop_extra_logs(self)}, step=step)
        super().train()


def test_the_patched_self_forcing_trainer_logs_the_extra_keys_in_its_own_rows(checkout):
    from omegaconf import OmegaConf

    config = OmegaConf.merge(OmegaConf.load("configs/default_config.yaml"), OmegaConf.load("configs/self_forcing_msm.yaml"))
    rows = {}
    trainer = PatchedSelfForcingTrainer(config)
    trainer.sink = lambda keys, step: rows.setdefault(step, {}).update(keys)
    trainer.train()
    assert sorted(rows) == [1, 2, 3] and "msm_loss" not in rows[2]
    for step in (1, 3):
        assert rows[step]["generator_loss"] == pytest.approx(rows[step]["dmd_loss"] + 0.25 * rows[step]["msm_loss"], rel=1e-6)
    config.extra_losses = None
    config.pop("msm")
    plain = PatchedSelfForcingTrainer(config)
    assert "compute_distribution_matching_loss" not in vars(plain.model)  # no extra_losses: unchanged


def test_a_failing_host_plugin_names_itself_and_a_bad_name_type_is_refused(monkeypatch):
    class Broken(_FakeEntryPoint):
        def load(self):
            raise ImportError("no module named fork")

    monkeypatch.setattr(hosts, "_hosts", dict(hosts._hosts))
    monkeypatch.setattr(hosts, "_plugins", [])
    monkeypatch.setattr(hosts, "_loaded", False)
    monkeypatch.setattr(hosts, "entry_points", lambda group: [Broken("my_fork", ForkHost)] if group == hosts.HOST_ENTRY_POINT_GROUP else [])
    with pytest.raises(RuntimeError, match=r"host plugin 'my_fork' \(fork:ForkHost\) from distribution '<unknown distribution>' failed to load: ImportError: no module named fork"):
        hosts.available_hosts()
    with pytest.raises(TypeError, match="a host name must be a string, got int 3"):
        get_host(3)
