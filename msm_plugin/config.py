"""The ``extra_losses`` section of a host's training config, validated before anything is built.

A CausVid / Self-Forcing YAML gains two things::

    extra_losses: [msm]          # names of registered extra losses (see msm_plugin.registry)
    msm:                         # options of the loss, under a key named after it
      lam: 0.5
      normalization: motion
      order: 1
      timestep_policy: strict

:func:`parse_extra_losses` checks this at start-up, before any model is built or file written:
a string where a list is expected, an unknown loss (the error lists the known ones), an options
section that is not a mapping, an unknown or misspelt option (``lamda`` -> did you mean ``lam``),
a value of the wrong type, a negative ``lam``, an options section for a loss that is not listed,
and, given the host's reading of its config (``unequal``), unequal per-frame score timesteps a
loss cannot work with (MSM's ``strict`` policy under a causal teacher). The hosts build their
losses through :meth:`msm_plugin.hosts.Host.build_losses`, which passes that reading.
A loss whose factory declares ``options_class`` (a :class:`~msm_plugin.options.LossOptions`
dataclass, e.g. ``msm``'s :class:`~msm_plugin.losses.msm.MSMConfig`) has its section validated
into that object here, once; this module knows no loss and no host by name. Values are only
ever data: no config string is imported or evaluated.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Dict, List, Mapping, Optional

from omegaconf import DictConfig, ListConfig, OmegaConf

from msm_plugin.options import LossOptions, UnequalTimesteps
from msm_plugin.context import ExtraLoss
from msm_plugin.registry import available_losses, get_loss

__all__ = ["EXTRA_LOSSES_KEY", "ExtraLossConfig", "build_extra_losses", "config_mapping", "parse_extra_losses"]

#: The config key listing the extra losses.
EXTRA_LOSSES_KEY = "extra_losses"


@dataclass(frozen=True)
class ExtraLossConfig:
    """One validated entry of ``extra_losses``: the loss name, its options as given, and (for a
    loss with an ``options_class``) the typed options they were validated into.

    Example:
        >>> ExtraLossConfig("msm", {"lam": 0.5}).build().weight
        0.5
    """

    name: str
    options: Dict[str, Any] = field(default_factory=dict)
    typed: Optional[LossOptions] = field(default=None, compare=False, repr=False)

    def build(self) -> ExtraLoss:
        """The loss, built by its registered factory: ``factory(typed_options)`` when the loss
        declares an ``options_class``, else ``factory(**options)``."""
        factory = get_loss(self.name)
        options_class = getattr(factory, "options_class", None)
        if options_class is None:
            try:
                return factory(**self.options)
            except (TypeError, ValueError) as exc:
                raise type(exc)(f"invalid options for extra loss {self.name!r}: {exc}") from exc
        typed = self.typed if self.typed is not None else options_class.from_section({}, loss=self.name, code=self.options)
        return factory(typed)


def config_mapping(config: Any) -> Dict[str, Any]:
    """A plain ``dict`` view of a config: a dict, an OmegaConf ``DictConfig``, a namespace or None.

    Example:
        >>> from omegaconf import OmegaConf
        >>> config_mapping(OmegaConf.create({"extra_losses": ["msm"]}))
        {'extra_losses': ['msm']}
    """
    if config is None:
        return {}
    if isinstance(config, DictConfig):
        return OmegaConf.to_container(config, resolve=True)
    if isinstance(config, Mapping):
        return dict(config)
    if hasattr(config, "__dict__") and not callable(config):
        return dict(vars(config))
    raise TypeError(f"expected a config mapping (dict, OmegaConf DictConfig or namespace), got {type(config).__name__}")


def _describe(value: Any) -> str:
    return f"{type(value).__name__} {value!r}"


def parse_extra_losses(
    config: Any, overrides: Optional[Mapping[str, Mapping[str, Any]]] = None, *, unequal: Optional[UnequalTimesteps] = None
) -> List[ExtraLossConfig]:
    """Validate a config's ``extra_losses`` and per-loss option sections.

    Args:
        config: the host config (dict, OmegaConf ``DictConfig``, namespace) or None.
        overrides: ``{loss name: options}`` given in code (e.g. by ``wrap_trainer(lam=...)``);
            they are merged over the config's section and the loss is added if not listed.
            They are validated like the config's, except that they may be Python objects
            (a callable ``feature``).
        unequal: the host's reading of this config as giving frames unequal score timesteps
            (:meth:`msm_plugin.hosts.Host.unequal_timesteps`); None: they share one.

    Returns:
        One :class:`ExtraLossConfig` per loss, in the config's order; ``[]`` when none is listed.

    Raises:
        TypeError: ``extra_losses`` is not a list of strings, a section is not a mapping, an
            option has the wrong type.
        ValueError: unknown loss or option, duplicate, a value a rule refuses (negative ``lam``),
            orphan section, unequal per-frame timesteps a loss cannot work with.

    Example:
        >>> parse_extra_losses({"extra_losses": ["msm"], "msm": {"lam": 0.5}})
        [ExtraLossConfig(name='msm', options={'lam': 0.5})]
        >>> parse_extra_losses({"extra_losses": ["msm"], "msm": {"lamda": 0.5}})
        Traceback (most recent call last):
        ...
        ValueError: unknown option `msm.lamda`; did you mean `lam`? Options of extra loss 'msm': lam, normalization, order, timestep_policy, per_pair_logs, feature, warmup_steps, ramp_steps, start_step, t_min, t_max, smoothing, pair_weights, pair_weights_mix, pair_weights_base
    """
    cfg = config_mapping(config)
    overrides = dict(overrides or {})
    names = cfg.get(EXTRA_LOSSES_KEY)
    if names is None:
        names = []
    if isinstance(names, str):
        raise TypeError(
            f"`{EXTRA_LOSSES_KEY}` should be a list of loss names, e.g. `{EXTRA_LOSSES_KEY}: [{names}]`, "
            f"got the string {names!r}"
        )
    if not isinstance(names, (list, tuple, ListConfig)):
        raise TypeError(f"`{EXTRA_LOSSES_KEY}` should be a list of loss names, got {_describe(names)}")
    known = available_losses()
    for name in names:
        if not isinstance(name, str):
            raise TypeError(f"`{EXTRA_LOSSES_KEY}` entries should be loss names (strings), got {_describe(name)}")
        if name not in known:
            raise ValueError(f"unknown extra loss {name!r} in `{EXTRA_LOSSES_KEY}`; known losses: {', '.join(known)}")
    duplicates = sorted({n for n in names if list(names).count(n) > 1})
    if duplicates:
        raise ValueError(f"`{EXTRA_LOSSES_KEY}` lists {duplicates} more than once")
    for name in overrides:
        get_loss(name)  # an unknown code-given loss fails here, listing the known ones
    names = list(names) + [n for n in overrides if n not in names]
    orphans = [n for n in known if n in cfg and n not in names]
    if orphans:
        raise ValueError(
            f"the config has an options section `{orphans[0]}:` but `{EXTRA_LOSSES_KEY}` does not list "
            f"{orphans[0]!r}; add `{EXTRA_LOSSES_KEY}: [{orphans[0]}]` or remove the section"
        )
    specs = []
    for name in names:
        section = cfg.get(name)
        if section is None:
            section = {}
        if not isinstance(section, Mapping):
            raise TypeError(
                f"`{name}` should be a mapping of options of extra loss {name!r}, e.g. `{name}: {{lam: 0.5}}`, "
                f"got {_describe(section)}"
            )
        code = dict(overrides.get(name, {}))
        options_class = getattr(get_loss(name), "options_class", None)
        typed = None
        if options_class is not None:
            typed = options_class.from_section(section, loss=name, code=code)
            if unequal is not None:
                typed.check_timesteps(unequal)
        else:
            bad = [key for key in list(section) + list(code) if not isinstance(key, str)]
            if bad:
                raise TypeError(f"option names under `{name}` should be strings, got {_describe(bad[0])}")
        specs.append(ExtraLossConfig(name, {**section, **code}, typed))
    return specs


def build_extra_losses(
    config: Any, overrides: Optional[Mapping[str, Mapping[str, Any]]] = None, *, unequal: Optional[UnequalTimesteps] = None
) -> List[ExtraLoss]:
    """Validate (:func:`parse_extra_losses`) and build every listed extra loss.

    A value the factory of a loss without ``options_class`` refuses is re-raised with the loss
    name in front.

    Example:
        >>> [loss.name for loss in build_extra_losses({"extra_losses": ["msm"]})]
        ['msm']
    """
    return [spec.build() for spec in parse_extra_losses(config, overrides, unequal=unequal)]
