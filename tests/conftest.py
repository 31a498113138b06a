"""Fixtures shared across test folders (the toy's live in tests/toy/conftest.py)."""

import pytest


@pytest.fixture
def frameworks(monkeypatch):
    """FastVideo's and FastGen's stand-ins (tests/adapters/framework_standins.py) importable as the
    frameworks; the msm-plugin subclasses built from them are dropped afterwards, so that the next
    test builds its own from its own stand-ins."""
    from msm_plugin.hosts import fastgen, fastvideo
    from tests.adapters import framework_standins

    framework_standins.install_frameworks(monkeypatch)
    yield
    for module in (fastvideo, fastgen):
        for name in module.SUBCLASSES:
            vars(module).pop(name, None)
