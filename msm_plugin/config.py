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
a setting that is not used (:func:`refuse_unused_settings`: ``msmm:``, ``extra_loss:``, ``lam:``
beside the ``msm:`` section), and, given the host's reading of its config (``unequal``), unequal
per-frame score timesteps a loss cannot work with (MSM's ``strict`` policy under a causal teacher). The hosts build their
losses through :meth:`msm_plugin.hosts.Host.build_losses`, which passes that reading.
A loss whose factory declares ``options_class`` (a :class:`~msm_plugin.options.LossOptions`
dataclass, e.g. ``msm``'s :class:`~msm_plugin.losses.msm.MSMConfig`) has its section validated
into that object here, once; this module knows no loss and no host by name. Values are only
ever data: no config string is imported or evaluated.
"""

from __future__ import annotations

import difflib
from dataclasses import dataclass, field
from typing import Any, Collection, Dict, List, Mapping, Optional

from omegaconf import DictConfig, ListConfig, OmegaConf

from msm_plugin.options import LossOptions, UnequalTimesteps
from msm_plugin.context import ExtraLoss
from msm_plugin.registry import available_losses, get_loss

__all__ = [
    "EXTRA_LOSSES_KEY",
    "ExtraLossConfig",
    "build_extra_losses",
    "config_mapping",
    "parse_extra_losses",
    "refuse_unused_settings",
    "unused_setting",
]

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


def _normal(key: str) -> str:
    return key.lower().replace("-", "_")


def _resembles(key: str, name: str) -> bool:
    """``key`` reads as a variant of ``name``: another case or separator, a suffix after a separator
    (``msm_options``), or one slip of the keyboard (``msmm``, ``extra_loss``). Deliberately not a
    looser match: a host's own key (``mse``, ``lr``) must never look like one."""
    k = _normal(key)
    return k == name or k.startswith(name + "_") or difflib.SequenceMatcher(None, k, name).ratio() >= 0.85


def _option_names() -> Dict[str, Collection[str]]:
    """``{registered loss: its option names}`` (none for a loss without ``options_class``)."""
    names = {}
    for loss in available_losses():
        options_class = getattr(get_loss(loss), "options_class", None)
        names[loss] = options_class.option_names() if options_class is not None else ()
    return names


def unused_setting(key: Any, *, listed: Collection[str] = ()) -> Optional[str]:
    """What ``key``, found where ``extra_losses`` is read, was probably meant to be (a path from that
    level), or None when it does not look like an extra-loss setting (or is one in its place).

    Looks like one: a variant of ``extra_losses`` or of a registered loss name (see
    :func:`_resembles`), or exactly the name of an option of a registered loss (``lam``: the
    options go under the loss's name). The losses in ``listed`` are suggested first.

    Example:
        >>> [unused_setting(k) for k in ("msmm", "MSM", "msm_options", "extra_loss", "lam", "lr", "msm")]
        ['msm', 'msm', 'msm', 'extra_losses', 'msm.lam', None, None]
    """
    options = _option_names()
    if not isinstance(key, str) or key == EXTRA_LOSSES_KEY or key in options:
        return None
    if _resembles(key, EXTRA_LOSSES_KEY):
        return EXTRA_LOSSES_KEY
    order = [n for n in listed if n in options] + [n for n in options if n not in listed]
    for name in order:
        if _resembles(key, name):
            return name
    for name in order:
        if _normal(key) in options[name]:
            return f"{name}.{_normal(key)}"
    return None


def refuse_unused_settings(
    config: Any,
    *,
    at: str = "",
    home: Optional[str] = None,
    host_keys: Collection[str] = (),
    listed: Collection[str] = (),
    accepts: Optional[str] = None,
) -> None:
    """Refuse, in one line, a key of ``config`` that looks like an extra-loss setting but is not used.

    The one rule every route applies (YAML, framework keywords and overrides, ``wrap_trainer``),
    before anything is built. A host contributes only what is its own: where its config keeps the
    extra losses and its own keys, which are never refused.

    Args:
        config: the mapping (a dict, ``DictConfig``, namespace) at one level of the host's config.
        at: how the user writes the path of this level: ``""`` (the top), ``"method."`` (FastVideo).
        home: None when this level is where the extra losses are read; else the path where they
            are (``"method."``): then ``extra_losses`` and the losses' sections are misplaced here too.
        host_keys: the host's own keys at this level (never refused).
        listed: the losses the config lists (their options are suggested first).
        accepts: for a keyword route (a class that refuses unknown keywords, as the framework's
            own does): every other key is refused, and this says what the class takes.

    Raises:
        ValueError: naming the key and, where one fits, what it was probably meant to be.

    Example:
        >>> refuse_unused_settings({"extra_losses": ["msm"], "msm": {}, "lam": 0.5})
        Traceback (most recent call last):
        ...
        ValueError: setting `lam` is not used: did you mean `msm.lam`?
        >>> refuse_unused_settings({"msm": {"lam": 0.5}}, home="method.")
        Traceback (most recent call last):
        ...
        ValueError: setting `msm` is not used: extra losses are read under `method.`; did you mean `method.msm`?
    """
    options = _option_names()
    for key in config_mapping(config):
        if not isinstance(key, str) or key in host_keys:
            continue
        in_place = key == EXTRA_LOSSES_KEY or key in options
        if home is None:
            guess = None if in_place else unused_setting(key, listed=listed)
            if guess is not None:
                raise ValueError(f"setting `{at}{key}` is not used: did you mean `{at}{guess}`?")
            if accepts is not None and not in_place:
                raise ValueError(f"setting `{at}{key}` is not used: {accepts}")
        else:
            guess = key if in_place else unused_setting(key, listed=listed)
            if guess is not None:
                raise ValueError(
                    f"setting `{at}{key}` is not used: extra losses are read under `{home}`; did you mean `{home}{guess}`?"
                )


def parse_extra_losses(
    config: Any,
    overrides: Optional[Mapping[str, Mapping[str, Any]]] = None,
    *,
    unequal: Optional[UnequalTimesteps] = None,
    at: str = "",
    host_keys: Collection[str] = (),
    host_step: Optional[str] = None,
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
        at, host_keys: how the user writes this level's path and the host's own keys there
            (:func:`refuse_unused_settings`, which every config passes through).
        host_step: the host's own step that it restores on resume and the schedules follow (e.g.
            "FastGen's training iteration"), None when it has none; a loss's options may refuse
            what that makes unused (MSM's ``start_step``).

    Returns:
        One :class:`ExtraLossConfig` per loss, in the config's order; ``[]`` when none is listed.

    Raises:
        TypeError: ``extra_losses`` is not a list of strings, a section is not a mapping, an
            option has the wrong type.
        ValueError: unknown loss or option, duplicate, a value a rule refuses (negative ``lam``),
            orphan section, a setting that is not used (``msmm:``, a top-level ``lam:``),
            unequal per-frame timesteps a loss cannot work with.

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
    refuse_unused_settings(cfg, at=at, host_keys=host_keys, listed=list(names) + list(overrides))
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
            if host_step is not None:
                typed.check_host_step(host_step)
        else:
            bad = [key for key in list(section) + list(code) if not isinstance(key, str)]
            if bad:
                raise TypeError(f"option names under `{name}` should be strings, got {_describe(bad[0])}")
        specs.append(ExtraLossConfig(name, {**section, **code}, typed))
    return specs


def build_extra_losses(
    config: Any,
    overrides: Optional[Mapping[str, Mapping[str, Any]]] = None,
    *,
    unequal: Optional[UnequalTimesteps] = None,
    at: str = "",
    host_keys: Collection[str] = (),
    host_step: Optional[str] = None,
) -> List[ExtraLoss]:
    """Validate (:func:`parse_extra_losses`) and build every listed extra loss.

    A value the factory of a loss without ``options_class`` refuses is re-raised with the loss
    name in front.

    Example:
        >>> [loss.name for loss in build_extra_losses({"extra_losses": ["msm"]})]
        ['msm']
    """
    return [spec.build() for spec in parse_extra_losses(config, overrides, unequal=unequal, at=at, host_keys=host_keys, host_step=host_step)]
