"""Typed options of an extra loss: a frozen dataclass validated once, one place per rule.

A loss declares its options as a subclass of :class:`LossOptions`; each field names its rule
(:func:`option`). Construction in code (``MSMConfig(lam=0.5)``) checks every field; a config
section (``msm: {lam: 0.5}``) goes through :meth:`LossOptions.from_section`, which adds what only
a config needs: unknown names with a did-you-mean, value types read from the field annotations
(a YAML ``'0.5'`` is not a number), and fields only code can set (a callable). One rule gives one
message, naming the option in code ("`lam` should be ...") and its section in a config
("option `msm.lam` should be ...").

Adding a validated option is one field::

    warmup_steps: int = option(0, at_least(0))

Example:
    >>> from dataclasses import dataclass
    >>> @dataclass(frozen=True)
    ... class Opts(LossOptions):
    ...     weight: float = option(1.0, real_at_least(0))
    ...     mode: str = option("a", one_of("a", "b"))
    >>> Opts(weight=2).weight
    2.0
    >>> Opts.from_section({"wieght": 1}, loss="demo")
    Traceback (most recent call last):
    ...
    ValueError: unknown option `demo.wieght`; did you mean `weight`? Options of extra loss 'demo': weight, mode
"""

from __future__ import annotations

import difflib
import math
import types
import typing
from dataclasses import dataclass, field, fields
from typing import Any, Callable, ClassVar, Collection, Dict, Mapping, NamedTuple, Optional, Tuple, Type, TypeVar

__all__ = [
    "LossOptions",
    "UnequalTimesteps",
    "at_least",
    "boolean",
    "callable_or_none",
    "finite_real",
    "one_of",
    "option",
    "or_none",
    "positive_int",
    "real_above",
    "real_at_least",
    "real_between",
]

#: ``rule(label, value) -> value``: raises TypeError / ValueError naming ``label``; returns the
#: value to store (e.g. ``float(lam)``).
Rule = Callable[[str, Any], Any]

_NoneType = type(None)
_Options = TypeVar("_Options", bound="LossOptions")
_UnionType = getattr(types, "UnionType", typing.Union)  # `X | None` annotations (Python >= 3.10)


class UnequalTimesteps(NamedTuple):
    """A host's reading of a config whose score timesteps differ across frames (paper sec. 6.2).

    Attributes:
        reason: what in the config says so, e.g. "real_task_type is causal_video (one teacher
            timestep per block)".
        remedy: the host's way to one shared timestep, e.g. "use a bidirectional teacher ...".
    """

    reason: str
    remedy: str


def option(default: Any, rule: Optional[Rule] = None, *, code_only: bool = False) -> Any:
    """A dataclass field with its validation ``rule``; ``code_only`` fields cannot come from a config."""
    return field(default=default, metadata={"rule": rule, "code_only": code_only})


def _describe(value: Any) -> str:
    return f"{type(value).__name__} {value!r}"


def real_at_least(low: float) -> Rule:
    """A finite real number ``>= low`` (stored as float); a bool is not a number."""

    def rule(label: str, value: Any) -> float:
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise TypeError(f"{label} should be a real number, got {_describe(value)}")
        if not math.isfinite(value) or value < low:
            raise ValueError(f"{label} should be finite and >= {low:g}, got {value}")
        return float(value)

    return rule


def real_above(low: float) -> Rule:
    """A finite real number ``> low`` (stored as float); a bool is not a number."""

    def rule(label: str, value: Any) -> float:
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise TypeError(f"{label} should be a real number, got {_describe(value)}")
        if not math.isfinite(value) or value <= low:
            raise ValueError(f"{label} should be finite and > {low:g}, got {value}")
        return float(value)

    return rule


def finite_real(label: str, value: Any) -> float:
    """Any finite real number (stored as float); a bool is not a number."""
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise TypeError(f"{label} should be a real number, got {_describe(value)}")
    if not math.isfinite(value):
        raise ValueError(f"{label} should be finite, got {value}")
    return float(value)


def or_none(rule: Rule) -> Rule:
    """None, or a value ``rule`` accepts (e.g. ``or_none(finite_real)``: a number or null)."""

    def optional(label: str, value: Any) -> Any:
        return None if value is None else rule(label, value)

    return optional


def real_between(low: float, high: float) -> Rule:
    """A real number in ``[low, high]`` (stored as float); a bool is not a number."""

    def rule(label: str, value: Any) -> float:
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise TypeError(f"{label} should be a real number, got {_describe(value)}")
        if not low <= value <= high:  # also refuses nan
            raise ValueError(f"{label} should be in [{low:g}, {high:g}], got {value}")
        return float(value)

    return rule


def at_least(low: int) -> Rule:
    """An integer ``>= low``; a bool is not an integer."""

    def rule(label: str, value: Any) -> int:
        if isinstance(value, bool) or not isinstance(value, int) or value < low:
            raise ValueError(f"{label} should be an integer >= {low}, got {value!r}")
        return value

    return rule


def positive_int(meaning: str) -> Rule:
    """An integer ``>= 1``; ``meaning`` says what the values mean, e.g. "1: velocity"."""

    def rule(label: str, value: Any) -> int:
        if isinstance(value, bool) or not isinstance(value, int) or value < 1:
            raise ValueError(f"{label} should be a positive integer ({meaning}), got {value!r}")
        return value

    return rule


def one_of(*choices: str) -> Rule:
    """One of the listed strings."""

    def rule(label: str, value: Any) -> str:
        if value not in choices:
            raise ValueError(f"{label} should be one of {choices}, got {value!r}")
        return value

    return rule


def boolean(label: str, value: Any) -> bool:
    """A bool (a YAML ``yes``/``true``, never a number)."""
    if not isinstance(value, bool):
        raise TypeError(f"{label} should be a bool, got {_describe(value)}")
    return value


def callable_or_none(what: str) -> Rule:
    """A callable (``what`` says which) or None."""

    def rule(label: str, value: Any) -> Any:
        if value is not None and not callable(value):
            raise TypeError(f"{label} should be a callable {what} or None, got {type(value).__name__}")
        return value

    return rule


def _accepted_types(annotation: Any) -> Optional[Tuple[type, ...]]:
    """The Python types a config value may have for a field annotation; None when anything goes."""
    origin = typing.get_origin(annotation)
    if origin is typing.Union or origin is _UnionType:
        members = [_accepted_types(arg) for arg in typing.get_args(annotation)]
        return None if any(m is None for m in members) else tuple(t for m in members for t in m)
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
    return None  # Any, or a type the rule checks itself


def _type_ok(value: Any, accepted: Tuple[type, ...]) -> bool:
    if isinstance(value, bool) and bool not in accepted:
        return False  # YAML `yes` must not pass as a number
    return isinstance(value, accepted)


@dataclass(frozen=True)
class LossOptions:
    """Base of a loss's typed options: every field's rule runs once, at construction."""

    #: How messages name these options given as keywords (``"MSM options"``).
    label: ClassVar[str] = "options"

    def __post_init__(self) -> None:
        for f in fields(self):
            rule = f.metadata.get("rule")
            if rule is not None:
                # frozen: the normalised value (e.g. float(lam)) is stored through object.__setattr__
                object.__setattr__(self, f.name, rule(f"`{f.name}`", getattr(self, f.name)))

    @classmethod
    def option_names(cls) -> Tuple[str, ...]:
        """The option names, in declaration order."""
        return tuple(f.name for f in fields(cls))

    @classmethod
    def resolve(
        cls: Type[_Options],
        config: Optional[_Options],
        options: Mapping[str, Any],
        *,
        user: str = "",
        unapplied: Collection[str] = (),
        why: str = "",
    ) -> _Options:
        """``config`` or ``cls(**options)``, whichever a function or class taking both was given
        (never both). ``user`` names it, and refuses the options in ``unapplied`` (those it would
        ignore) when they differ from their defaults: a default gives the same result applied or not;
        ``why`` says what to do instead.

        Example:
            >>> @dataclass(frozen=True)
            ... class Opts(LossOptions):
            ...     weight: float = option(1.0, real_at_least(0))
            >>> Opts.resolve(None, {"weight": 2}).weight
            2.0
            >>> Opts.resolve(Opts(), {}, user="loss_fn", unapplied=("weight",)).weight  # the default: accepted
            1.0
            >>> Opts.resolve(None, {"weight": 2}, user="loss_fn", unapplied=("weight",), why="weight it yourself")
            Traceback (most recent call last):
            ...
            ValueError: loss_fn does not apply `weight` (weight it yourself)
        """
        if config is None:
            config = cls(**options)
        elif not isinstance(config, cls):
            raise TypeError(f"`config` should be an instance of {cls.__name__}, got {type(config).__name__}")
        elif options:
            raise TypeError(f"pass either `config` or {cls.label} ({', '.join(options)}), not both")
        defaults = {f.name: f.default for f in fields(cls)}
        given = [name for name in unapplied if getattr(config, name) != defaults[name]]
        if given:
            raise ValueError(f"{user} does not apply {', '.join(f'`{name}`' for name in given)} ({why})")
        return config

    @classmethod
    def check_names(cls, names: Collection[Any], *, loss: str) -> None:
        """Refuse a non-string or unknown option name, suggesting the closest known one."""
        known = cls.option_names()
        for key in names:
            if not isinstance(key, str):
                raise TypeError(f"option names under `{loss}` should be strings, got {_describe(key)}")
            if key not in known:
                close = difflib.get_close_matches(key, list(known), n=1, cutoff=0.6)
                hint = f"; did you mean `{close[0]}`?" if close else "."
                raise ValueError(f"unknown option `{loss}.{key}`{hint} Options of extra loss {loss!r}: {', '.join(known)}")

    @classmethod
    def from_section(cls, section: Mapping[str, Any], *, loss: str, code: Optional[Mapping[str, Any]] = None) -> "LossOptions":
        """Validate a config section (plus options given in ``code``, which win) and build the options.

        Config values are checked against the field annotations first (what a YAML can get
        wrong), code values only by the rules (code may pass callables); every message names
        the option as "option `loss.key`".
        """
        code = dict(code or {})
        cls.check_names(list(section) + list(code), loss=loss)
        by_name = {f.name: f for f in fields(cls)}
        hints = typing.get_type_hints(cls)
        values: Dict[str, Any] = {}
        for key, value in section.items():
            if key in code:
                continue
            if by_name[key].metadata.get("code_only"):
                raise TypeError(
                    f"option `{loss}.{key}` takes a Python object that a config cannot express; "
                    f"pass it to wrap_trainer(..., {key}=...) in code instead"
                )
            accepted = _accepted_types(hints[key])
            if accepted is not None and not _type_ok(value, accepted):
                expected = " or ".join("null" if t is _NoneType else t.__name__ for t in accepted)
                raise TypeError(f"option `{loss}.{key}` should be {expected}, got {_describe(value)}")
            values[key] = value
        values.update(code)
        for key, value in values.items():
            rule = by_name[key].metadata.get("rule")
            if rule is not None:
                values[key] = rule(f"option `{loss}.{key}`", value)
        return cls(**values)

    def check_timesteps(self, unequal: UnequalTimesteps) -> None:
        """Called when the host's config means unequal per-frame score timesteps; a loss that
        cannot work then raises ValueError. The default accepts."""

    def check_host_step(self, source: str) -> None:
        """Called when the host hands over its own step and restores it on resume (``source``
        says which, e.g. "FastGen's training iteration"), which a schedule then follows; an option
        made for placing a resumed run without it raises ValueError. The default accepts."""
