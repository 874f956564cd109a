"""The ``slow`` marker's module list names modules that exist, by their path under tests/.

A renamed module would silently leave the list and its slow tests would
land in the inner loop (``pytest -m "not slow"``); nothing is ever skipped
by the marker itself: ``-m slow`` and ``-m "not slow"`` together select
every test.
"""

from __future__ import annotations

from tests.conftest import SLOW_MODULES, TESTS


def test_every_listed_slow_module_exists() -> None:
    missing = sorted(name for name in SLOW_MODULES if not (TESTS / name).is_file())
    assert not missing, f"tests/conftest.py SLOW_MODULES names missing modules: {missing}"
