"""Shared fixtures. Tests read ../shared in place and skip where it is absent."""

from __future__ import annotations

from pathlib import Path

import pytest

PROJECT = Path(__file__).resolve().parent.parent
SHARED = PROJECT.parent / "shared"


def shared_path(*parts: str) -> Path:
    """A path under ../shared, or a skip naming what is missing."""
    path = SHARED.joinpath(*parts)
    if not path.exists():
        pytest.skip(f"../shared is absent here ({path} not found); shared contract tests skipped")
    return path


@pytest.fixture
def shared_dir() -> Path:
    return shared_path()
