"""Reversible instance patching: exact restore, metadata, replace-not-stack, errors."""

import inspect

import pytest
from torch import nn

from msm_plugin.hosts.hooks import PATCHES_ATTR, is_patched, original_method, patch_method, unpatch_method


class Host(nn.Module):
    def step(self, x, scale=2):
        """Host docstring."""
        return x * scale


def _times_ten(original):
    def wrapper(*args, **kwargs):
        return 10 * original(*args, **kwargs)

    return wrapper


def test_patch_changes_only_the_instance_and_keeps_metadata():
    host, other = Host(), Host()
    replacement = patch_method(host, "step", _times_ten)
    assert host.step(1) == 20 and other.step(1) == 2
    assert replacement.__name__ == "step" and replacement.__doc__ == "Host docstring."
    assert inspect.signature(replacement) == inspect.signature(Host().step)
    assert replacement.__wrapped__.__func__ is Host.step
    assert is_patched(host, "step") and not is_patched(other, "step")
    assert original_method(host, "step").__func__ is Host.step


def test_unpatch_restores_the_class_method_and_removes_every_added_attribute():
    host = Host()
    before = dict(vars(host))
    patch_method(host, "step", _times_ten)
    unpatch_method(host, "step")
    assert vars(host) == before and PATCHES_ATTR not in vars(host)
    assert host.step.__func__ is Host.step and host.step(1) == 2


def test_unpatch_restores_a_previous_instance_attribute_object():
    host = Host()
    mine = lambda x, scale=2: -x  # noqa: E731 - an attribute someone else set on the instance
    object.__setattr__(host, "step", mine)
    patch_method(host, "step", _times_ten)
    assert host.step(1) == -10
    unpatch_method(host, "step")
    assert vars(host)["step"] is mine


def test_second_patch_warns_and_replaces_instead_of_stacking():
    host = Host()
    patch_method(host, "step", _times_ten)
    with pytest.warns(UserWarning, match="already wrapped by msm_plugin; replacing"):
        patch_method(host, "step", _times_ten)
    assert host.step(1) == 20  # not 200
    assert vars(host)["step"].__wrapped__.__func__ is Host.step
    unpatch_method(host, "step")
    assert "step" not in vars(host)


def test_unpatch_when_not_patched_is_a_no_op():
    host = Host()
    unpatch_method(host, "step")
    assert PATCHES_ATTR not in vars(host)


def test_patches_of_two_methods_are_independent():
    host = Host()
    patch_method(host, "step", _times_ten)
    patch_method(host, "forward", lambda original: lambda *a: "patched")
    unpatch_method(host, "step")
    assert host.forward() == "patched" and is_patched(host, "forward")
    unpatch_method(host, "forward")
    assert PATCHES_ATTR not in vars(host) and "forward" not in vars(host)


def test_state_dict_and_submodules_untouched():
    host = Host()
    host.lin = nn.Linear(2, 2)
    keys = list(host.state_dict())
    patch_method(host, "step", _times_ten)
    assert list(host.state_dict()) == keys and list(host._modules) == ["lin"]


def test_errors():
    host = Host()
    with pytest.raises(TypeError, match="`make_wrapper` should be callable"):
        patch_method(host, "step", None)
    with pytest.raises(TypeError, match=r"expected Host.missing to be a method"):
        patch_method(host, "missing", _times_ten)
    assert PATCHES_ATTR not in vars(host)
