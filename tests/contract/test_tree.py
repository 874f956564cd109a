"""The tests' folders mirror the package, so a newcomer finds a part's tests
at the part's own name (tests/README.md maps them).

A test module dropped at tests/ root, or in a folder no package part and no
cross-cutting purpose names, would quietly start a second layout; a folder
without ``__init__.py`` would import its modules under bare names, where two
``test_x.py`` in different folders collide.
"""

from __future__ import annotations

from tests.conftest import PROJECT, TESTS

CROSS_CUTTING = {"contract", "process"}


def _package_parts() -> set[str]:
    package = PROJECT / "passbridge"
    return {p.parent.name for p in package.glob("*/__init__.py")}


def test_no_test_module_at_the_root() -> None:
    stray = sorted(p.name for p in TESTS.glob("test_*.py"))
    assert not stray, (
        f"test modules at tests/ root: {stray}; move each (git mv) into the folder of the "
        "package part it tests (tests/README.md)"
    )


def test_every_folder_names_a_package_part_or_a_cross_cutting_purpose() -> None:
    folders = {p.relative_to(TESTS).parts[0] for p in TESTS.rglob("test_*.py") if p.parent != TESTS}
    unknown = sorted(folders - _package_parts() - CROSS_CUTTING)
    assert not unknown, f"test folders that name no passbridge/ part: {unknown} (tests/README.md)"


def test_every_test_folder_is_a_package() -> None:
    bare = sorted(str(p.parent.relative_to(TESTS)) for p in TESTS.rglob("test_*.py")
                  if not (p.parent / "__init__.py").is_file())
    assert not bare, f"test folders without __init__.py: {sorted(set(bare))}"
