"""Typed loss options: each rule's message in code and in a config, names, code-only fields; MSMConfig."""

import math
from dataclasses import FrozenInstanceError, dataclass
from typing import Callable, Optional

import pytest
import torch

from msm_plugin import MSMConfig, MSMLoss, MSMTerm, msm_loss
from msm_plugin.options import (
    LossOptions,
    at_least,
    boolean,
    callable_or_none,
    finite_real,
    one_of,
    option,
    or_none,
    positive_int,
    real_above,
    real_at_least,
)


@dataclass(frozen=True)
class Opts(LossOptions):
    weight: float = option(1.0, real_at_least(0))
    warmup: int = option(0, at_least(0))
    order: int = option(1, positive_int("1: velocity"))
    mode: str = option("a", one_of("a", "b"))
    flag: bool = option(True, boolean)
    fn: Optional[Callable] = option(None, callable_or_none("applied per frame"), code_only=True)


@pytest.mark.parametrize(
    "kwargs, error, message",
    [
        ({"weight": "1"}, TypeError, "`weight` should be a real number, got str '1'"),
        ({"weight": True}, TypeError, "`weight` should be a real number, got bool True"),
        ({"weight": -0.5}, ValueError, "`weight` should be finite and >= 0, got -0.5"),
        ({"weight": math.nan}, ValueError, "`weight` should be finite and >= 0, got nan"),
        ({"warmup": -1}, ValueError, "`warmup` should be an integer >= 0, got -1"),
        ({"warmup": 2.0}, ValueError, "`warmup` should be an integer >= 0, got 2.0"),
        ({"order": 0}, ValueError, r"`order` should be a positive integer \(1: velocity\), got 0"),
        ({"order": True}, ValueError, r"`order` should be a positive integer \(1: velocity\), got True"),
        ({"mode": "c"}, ValueError, r"`mode` should be one of \('a', 'b'\), got 'c'"),
        ({"flag": 1}, TypeError, "`flag` should be a bool, got int 1"),
        ({"fn": 3}, TypeError, "`fn` should be a callable applied per frame or None, got int"),
    ],
)
def test_each_rule_in_code(kwargs, error, message):
    with pytest.raises(error, match=f"^{message}$"):
        Opts(**kwargs)


@pytest.mark.parametrize(
    "section, error, message",
    [
        ({"weight": -1}, ValueError, "option `demo.weight` should be finite and >= 0, got -1"),
        ({"weight": "0.5"}, TypeError, "option `demo.weight` should be int or float, got str '0.5'"),
        ({"warmup": 1.5}, TypeError, "option `demo.warmup` should be int, got float 1.5"),
        ({"flag": "yes"}, TypeError, "option `demo.flag` should be bool, got str 'yes'"),
        ({"mode": "c"}, ValueError, r"option `demo.mode` should be one of \('a', 'b'\), got 'c'"),
        ({"fn": "os.system"}, TypeError, r"option `demo.fn` takes a Python object that a config cannot express; pass it to wrap_trainer\(\.\.\., fn=\.\.\.\) in code instead"),
        ({"wieght": 1}, ValueError, r"unknown option `demo.wieght`; did you mean `weight`\? Options of extra loss 'demo': weight, warmup, order, mode, flag, fn"),
        ({"zzz": 1}, ValueError, r"unknown option `demo.zzz`\. Options of extra loss 'demo': weight, warmup, order, mode, flag, fn"),
        ({3: 1}, TypeError, "option names under `demo` should be strings, got int 3"),
    ],
)
def test_each_rule_from_a_config_section(section, error, message):
    with pytest.raises(error, match=f"^{message}$"):
        Opts.from_section(section, loss="demo")


@dataclass(frozen=True)
class Bounds(LossOptions):
    eps: float = option(1e-6, real_above(0))
    level: Optional[float] = option(0.5, or_none(finite_real))


@pytest.mark.parametrize(
    "kwargs, error, message",
    [
        ({"eps": 0}, ValueError, "`eps` should be finite and > 0, got 0"),
        ({"eps": math.inf}, ValueError, "`eps` should be finite and > 0, got inf"),
        ({"eps": False}, TypeError, "`eps` should be a real number, got bool False"),
        ({"level": -math.inf}, ValueError, "`level` should be finite, got -inf"),
        ({"level": "low"}, TypeError, "`level` should be a real number, got str 'low'"),
    ],
)
def test_strict_bounds_and_optional_rules(kwargs, error, message):
    with pytest.raises(error, match=f"^{message}$"):
        Bounds(**kwargs)


def test_optional_rule_takes_none_and_normalises_numbers():
    assert Bounds(level=None).level is None and Bounds(eps=1, level=-2).level == -2.0
    assert isinstance(Bounds(eps=1).eps, float)
    with pytest.raises(TypeError, match=r"^option `demo.level` should be int or float or null, got str '1'$"):
        Bounds.from_section({"level": "1"}, loss="demo")
    assert Bounds.from_section({"level": None}, loss="demo").level is None


def test_section_values_are_normalised_and_code_values_win_and_may_be_callables():
    opts = Opts.from_section({"weight": 2, "mode": "b"}, loss="demo", code={"weight": 3, "fn": abs})
    assert (opts.weight, opts.mode, opts.fn) == (3.0, "b", abs) and isinstance(opts.weight, float)
    with pytest.raises(ValueError, match=r"^option `demo.order` should be a positive integer"):
        Opts.from_section({}, loss="demo", code={"order": 0})
    with pytest.raises(FrozenInstanceError):
        opts.weight = 1.0


class TestMSMConfig:
    def test_defaults_are_the_papers_msm(self):
        assert MSMConfig() == MSMConfig(lam=1.0, normalization="motion", order=1, timestep_policy="strict", per_pair_logs=False, feature=None)

    def test_function_module_and_term_take_the_config_or_its_fields(self):
        g = torch.Generator().manual_seed(0)
        x, real, fake = (torch.randn(2, 4, 1, 2, 2, generator=g, dtype=torch.float64) for _ in range(3))
        config = MSMConfig(lam=0.5, normalization="none", order=2)
        by_fields = msm_loss(x, real, fake, normalization="none", order=2)
        assert torch.equal(msm_loss(x, real, fake, config=MSMConfig(normalization="none", order=2)), by_fields)
        with pytest.raises(ValueError, match=r"^msm_loss does not apply `lam` "):  # it would return the unweighted loss
            msm_loss(x, real, fake, config=config)
        assert torch.equal(MSMLoss(config=config)(x, real, fake), 0.5 * by_fields)
        assert MSMLoss(2.0, config=config).lam == 2.0 and MSMTerm(config).weight == 0.5

    def test_config_and_fields_together_or_a_wrong_config_are_refused(self):
        x = torch.zeros(1, 3, 1, 1, 1)
        with pytest.raises(TypeError, match=r"^pass either `config` or MSM options \(order\), not both$"):
            msm_loss(x, x, x, config=MSMConfig(), order=2)
        with pytest.raises(TypeError, match="^`config` should be an instance of MSMConfig, got dict$"):
            MSMTerm({"lam": 1.0})
        with pytest.raises(TypeError, match="got an unexpected keyword argument 'lamda'"):
            MSMConfig(lamda=1.0)
