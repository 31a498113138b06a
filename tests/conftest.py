"""Fixtures shared across test folders."""

import pytest


@pytest.fixture(scope="session")
def toy_teacher_cache(tmp_path_factory):
    """One toy-teacher cache per session: the quick teacher is trained once, for the demo tests and the notebooks."""
    return tmp_path_factory.mktemp("toy-teacher-cache")
