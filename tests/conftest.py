"""Fixtures shared across test folders (the toy's live in tests/toy/conftest.py)."""
