"""Reversible instance patching of a host object's methods (in the style of accelerate's hooks).

A patch replaces ``obj.name`` on the *instance* only: the class, other instances, pickled
checkpoints and ``state_dict()`` never see it. What was there before is kept on the object
(``obj._msm_plugin_patches``), the replacement carries the original's name, docstring and
signature (``functools.wraps``), patching a name twice replaces the first patch instead of
stacking on it, and :func:`unpatch_method` puts back the exact previous state: the instance
attribute object that was there, or no instance attribute at all (so the class method shows
through again), and deletes every attribute the patching added.
"""

from __future__ import annotations

import functools
import warnings
from typing import Any, Callable, Dict, Tuple

__all__ = ["PATCHES_ATTR", "is_patched", "original_method", "patch_method", "unpatch_method"]

#: Name of the one attribute patching adds to the object: ``{method name: (saved state, original)}``.
PATCHES_ATTR = "_msm_plugin_patches"

# Marks "the instance had no attribute of that name" (the method came from the class).
_ABSENT = object()


def _patches(obj: Any) -> Dict[str, Tuple[Any, Callable]]:
    return vars(obj).get(PATCHES_ATTR, {})


def is_patched(obj: Any, name: str) -> bool:
    """Whether ``obj.name`` is currently replaced by :func:`patch_method`.

    Example:
        >>> class Host:
        ...     def f(self):
        ...         return 1
        >>> host = Host()
        >>> is_patched(host, "f")
        False
    """
    return name in _patches(obj)


def original_method(obj: Any, name: str) -> Callable:
    """The callable :func:`patch_method` replaced (``obj.name`` itself when not patched)."""
    entry = _patches(obj).get(name)
    return getattr(obj, name) if entry is None else entry[1]


def patch_method(obj: Any, name: str, make_wrapper: Callable[[Callable], Callable]) -> Callable:
    """Replace ``obj.name`` on the instance by ``make_wrapper(original)``.

    ``original`` is the bound method (or callable) ``obj.name`` resolved to before any patch of
    this module; the wrapper gets ``functools.wraps(original)`` so it keeps the host's name,
    docstring and signature, and ``wrapper.__wrapped__ is original``. If ``name`` is already
    patched, a warning is issued and the old patch is replaced (never stacked).

    Args:
        obj: the host object (e.g. a DMD ``nn.Module``).
        name: the method name, e.g. ``"compute_distribution_matching_loss"``.
        make_wrapper: ``original -> replacement``.

    Returns:
        The installed replacement.

    Example:
        >>> class Host:
        ...     def f(self, x):
        ...         return x + 1
        >>> host = Host()
        >>> _ = patch_method(host, "f", lambda orig: lambda x: 10 * orig(x))
        >>> host.f(1)
        20
        >>> unpatch_method(host, "f")
        >>> host.f(1), "f" in vars(host)
        (2, False)
    """
    if not callable(make_wrapper):
        raise TypeError(f"`make_wrapper` should be callable, got {type(make_wrapper).__name__}")
    if not callable(getattr(obj, name, None)):
        raise TypeError(f"expected {type(obj).__name__}.{name} to be a method, got {getattr(obj, name, None)!r}")
    if is_patched(obj, name):
        warnings.warn(
            f"{type(obj).__name__}.{name} is already wrapped by msm_plugin; replacing the previous "
            "wrapper (wrappers never stack)",
            UserWarning,
            stacklevel=3,
        )
        unpatch_method(obj, name)
    saved = vars(obj).get(name, _ABSENT)
    original = getattr(obj, name)
    replacement = functools.wraps(original)(make_wrapper(original))
    patches = dict(_patches(obj))
    patches[name] = (saved, original)
    # object.__setattr__ keeps nn.Module bookkeeping (_modules, _parameters) out of it.
    object.__setattr__(obj, PATCHES_ATTR, patches)
    object.__setattr__(obj, name, replacement)
    return replacement


def unpatch_method(obj: Any, name: str) -> None:
    """Undo :func:`patch_method` for ``name``; a no-op when it is not patched.

    Restores the exact previous instance state and removes the bookkeeping attribute when no
    patch is left.
    """
    patches = dict(_patches(obj))
    if name not in patches:
        return
    saved, _ = patches.pop(name)
    if saved is _ABSENT:
        object.__delattr__(obj, name)
    else:
        object.__setattr__(obj, name, saved)
    if patches:
        object.__setattr__(obj, PATCHES_ATTR, patches)
    else:
        object.__delattr__(obj, PATCHES_ATTR)
