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
and a causal teacher (``real_task_type: causal_video``) under the ``strict`` timestep policy.
Option names and types are read from the loss factory's signature; values are only ever data:
no config string is imported or evaluated.
"""

from __future__ import annotations

import difflib
import inspect
import math
import types
import typing
from dataclasses import dataclass, field
from typing import Any, Callable, Dict, List, Mapping, Optional, Tuple

from omegaconf import DictConfig, ListConfig, OmegaConf

from msm_plugin.registry import ExtraLoss, available_losses, get_loss

__all__ = ["EXTRA_LOSSES_KEY", "ExtraLossConfig", "build_extra_losses", "config_mapping", "parse_extra_losses"]

#: The config key listing the extra losses.
EXTRA_LOSSES_KEY = "extra_losses"

_NoneType = type(None)
_UnionType = getattr(types, "UnionType", typing.Union)  # `X | None` annotations (Python >= 3.10)


class _CodeOnly:
    """Marks a parameter type a config cannot express (a callable, a tensor, ...)."""


@dataclass(frozen=True)
class ExtraLossConfig:
    """One validated entry of ``extra_losses``: the loss name and its options.

    Example:
        >>> ExtraLossConfig("msm", {"lam": 0.5}).build().weight
        0.5
    """

    name: str
    options: Dict[str, Any] = field(default_factory=dict)

    def build(self) -> ExtraLoss:
        """The loss, built by its registered factory (``get_loss(name)(**options)``)."""
        return get_loss(self.name)(**self.options)


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


def _accepted_types(annotation: Any, default: Any) -> Optional[Tuple[type, ...]]:
    """Python types a config value may have for a factory parameter; None when anything goes.

    ``_CodeOnly`` among them means the parameter takes something only code can pass (a callable).
    """
    if annotation is inspect.Parameter.empty:
        if default is inspect.Parameter.empty or default is None:
            return None
        annotation = type(default)
    origin = typing.get_origin(annotation)
    if origin is typing.Union or origin is _UnionType:
        members = [_accepted_types(arg, inspect.Parameter.empty) for arg in typing.get_args(annotation)]
        if any(m is None for m in members):
            return None
        return tuple(t for m in members for t in m)
    if annotation is _NoneType:
        return (_NoneType,)
    if annotation is float:
        return (int, float)
    if annotation in (int, str, bool):
        return (annotation,)
    if annotation in (list, tuple) or origin in (list, tuple):
        return (list, tuple)
    if annotation is dict or origin is dict:
        return (dict,)
    if annotation is typing.Any:
        return None
    return (_CodeOnly,)


def _option_schema(factory: Callable[..., Any]) -> Tuple[Dict[str, Optional[Tuple[type, ...]]], bool]:
    """``({option: accepted types}, takes_any_keyword)`` from the factory's signature and hints."""
    target = factory.__init__ if inspect.isclass(factory) else factory
    try:
        hints = typing.get_type_hints(target)
    except Exception:  # a plugin's unresolvable annotations: fall back to the defaults' types
        hints = {}
    schema: Dict[str, Optional[Tuple[type, ...]]] = {}
    any_keyword = False
    for param in inspect.signature(factory).parameters.values():
        if param.kind is inspect.Parameter.VAR_KEYWORD:
            any_keyword = True
        elif param.kind is not inspect.Parameter.VAR_POSITIONAL:
            schema[param.name] = _accepted_types(hints.get(param.name, param.annotation), param.default)
    return schema, any_keyword


def _type_ok(value: Any, accepted: Tuple[type, ...]) -> bool:
    if isinstance(value, bool) and bool not in accepted:
        return False  # YAML `yes` must not pass as a number
    return isinstance(value, accepted)


def _check_options(name: str, options: Mapping[str, Any], *, check_types: bool = True) -> None:
    """Option names against the factory's signature and, with ``check_types``, value types."""
    schema, any_keyword = _option_schema(get_loss(name))
    for key, value in options.items():
        if not isinstance(key, str):
            raise TypeError(f"option names under `{name}` should be strings, got {_describe(key)}")
        if key not in schema:
            if any_keyword:
                continue
            close = difflib.get_close_matches(key, list(schema), n=1, cutoff=0.6)
            hint = f"; did you mean `{close[0]}`?" if close else ""
            raise ValueError(
                f"unknown option `{name}.{key}`{hint} Options of extra loss {name!r}: {', '.join(schema)}"
            )
        if not check_types:
            continue
        accepted = schema[key]
        if accepted is not None and _CodeOnly in accepted and not _type_ok(value, accepted):
            raise TypeError(
                f"option `{name}.{key}` takes a Python object that a config cannot express; "
                f"pass it to wrap_trainer(..., {key}=...) in code instead"
            )
        if accepted is not None and not _type_ok(value, accepted):
            expected = " or ".join("null" if t is _NoneType else t.__name__ for t in accepted if t is not _CodeOnly)
            raise TypeError(f"option `{name}.{key}` should be {expected}, got {_describe(value)}")
    lam = options.get("lam")
    if isinstance(lam, (int, float)) and not isinstance(lam, bool) and not (math.isfinite(lam) and lam >= 0):
        raise ValueError(f"option `{name}.lam` should be finite and >= 0, got {lam}")


def _check_timestep_policy(config: Mapping[str, Any], options: Mapping[str, Any]) -> None:
    """A causal teacher draws one timestep per block, which the strict policy refuses (paper sec. 6.2)."""
    # CausVid's own default: real_task_type falls back to generator_task.
    teacher = config.get("real_task_type", config.get("generator_task"))
    if teacher == "causal_video" and options.get("timestep_policy", "strict") == "strict":
        raise ValueError(
            "real_task_type is causal_video (one teacher timestep per block), but MSM's "
            "timestep_policy is 'strict', which requires one timestep shared by all frames "
            "(paper sec. 6.2). Use a bidirectional teacher (real_task_type: bidirectional_video, "
            "as CausVid stage 3 does) or set `msm: {timestep_policy: pairs}` to count only frame "
            "pairs inside a block"
        )


def parse_extra_losses(config: Any, overrides: Optional[Mapping[str, Mapping[str, Any]]] = None) -> List[ExtraLossConfig]:
    """Validate a config's ``extra_losses`` and per-loss option sections.

    Args:
        config: the host config (dict, OmegaConf ``DictConfig``, namespace) or None.
        overrides: ``{loss name: options}`` given in code (e.g. by ``wrap_trainer(lam=...)``);
            they are merged over the config's section and the loss is added if not listed.
            Their option names are checked like the config's; their values by the loss factory
            itself (code may pass callables).

    Returns:
        One :class:`ExtraLossConfig` per loss, in the config's order; ``[]`` when none is listed.

    Raises:
        TypeError: ``extra_losses`` is not a list of strings, a section is not a mapping, an
            option has the wrong type.
        ValueError: unknown loss or option, duplicate, negative ``lam``, orphan section,
            causal teacher under the strict timestep policy.

    Example:
        >>> parse_extra_losses({"extra_losses": ["msm"], "msm": {"lam": 0.5}})
        [ExtraLossConfig(name='msm', options={'lam': 0.5})]
        >>> parse_extra_losses({"extra_losses": ["msm"], "msm": {"lamda": 0.5}})
        Traceback (most recent call last):
        ...
        ValueError: unknown option `msm.lamda`; did you mean `lam`? Options of extra loss 'msm': lam, normalization, order, timestep_policy, per_pair_logs, feature
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
    names = list(names) + [n for n in overrides if n not in names]
    for name, options in overrides.items():
        # An unknown code-given loss fails here listing the known ones, a misspelt option with the
        # same hint as in a config; the values are left to the factory (code may pass callables).
        _check_options(name, options, check_types=False)
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
        _check_options(name, section)
        options = {**section, **overrides.get(name, {})}
        if name == "msm":
            _check_timestep_policy(cfg, options)
        specs.append(ExtraLossConfig(name, options))
    return specs


def build_extra_losses(config: Any, overrides: Optional[Mapping[str, Mapping[str, Any]]] = None) -> List[ExtraLoss]:
    """Validate (:func:`parse_extra_losses`) and build every listed extra loss.

    A value the factory itself refuses (e.g. ``normalization: motoin``) is re-raised with the
    loss name in front.

    Example:
        >>> [loss.name for loss in build_extra_losses({"extra_losses": ["msm"]})]
        ['msm']
    """
    losses = []
    for spec in parse_extra_losses(config, overrides):
        try:
            losses.append(spec.build())
        except (TypeError, ValueError) as exc:
            raise type(exc)(f"invalid options for extra loss {spec.name!r}: {exc}") from exc
    return losses
