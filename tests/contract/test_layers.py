"""Import contracts: each layer imports only what its room allows.

Read from the source with ``ast`` (no import runs, no new dependency). Every
``import`` statement counts, at module level or inside a function (a lazy
import still loads the module when that code runs), and so does importing a
submodule's parent packages.

Some contracts do not hold yet (issue 9). Those keep an explicit list of
today's violations, one ``"file -> module"`` entry each. A new violation
fails, and fixing a listed one fails too until its entry is removed, so the
lists only shrink.
"""

from __future__ import annotations

import ast
import sys
from collections.abc import Iterable
from dataclasses import dataclass
from functools import cache
from pathlib import Path

import pytest

from tests.conftest import PROJECT

PACKAGE = PROJECT / "passbridge"

# Modules that do I/O or run an event loop, a thread pool or a child
# process: none of them belongs in the pure core or the sans-I/O protocol
# code. ``os`` is checked apart (see OS_PURE_NAMES); ``threading`` and
# ``time`` have their own contract for the core (locks and wall-clock
# reads), because the protocol code and ``passbridge.clock`` may use them.
IO_MODULES = frozenset({
    "asyncio", "socket", "socketserver", "ssl", "select", "selectors", "signal",
    "subprocess", "multiprocessing", "concurrent", "sqlite3", "dbm", "shelve",
    "io", "pathlib", "shutil", "tempfile", "glob", "fcntl", "mmap", "http", "urllib",
    "aiohttp", "yarl", "multidict", "uvloop", "nfc", "usb", "serial", "bleak", "bumble",
    "yaml",
})
# The only ``os`` functions the core and the protocol code may call: a
# random source and fork hygiene, no files, no environment.
OS_PURE_NAMES = frozenset({"urandom", "register_at_fork"})


@dataclass(frozen=True)
class Edge:
    """One import: the importing file (relative to the project), the module it names."""

    file: str
    target: str
    line: int

    def __str__(self) -> str:
        return f"{self.file} -> {self.target}"


def _module_name(path: Path) -> str:
    parts = list(path.relative_to(PROJECT).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


@cache
def _files() -> dict[str, Path]:
    """Every module of the package by dotted name."""
    return {_module_name(p): p for p in sorted(PACKAGE.rglob("*.py"))}


def _resolve(importer: str, is_package: bool, node: ast.ImportFrom) -> str:
    if not node.level:
        return node.module or ""
    base = importer.split(".") if is_package else importer.split(".")[:-1]
    base = base[: len(base) - (node.level - 1)]
    return ".".join(base + ([node.module] if node.module else []))


def _with_parents(name: str) -> Iterable[str]:
    """``a.b.c`` runs ``a``, ``a.b`` and ``a.b.c`` when imported."""
    parts = name.split(".")
    return (".".join(parts[: i + 1]) for i in range(len(parts)))


@cache
def _tree(module: str) -> ast.Module:
    path = _files()[module]
    return ast.parse(path.read_text(encoding="utf-8"), filename=str(path))


@cache
def _edges(module: str) -> tuple[Edge, ...]:
    """Every module ``module`` names in an import; ``from p import sub`` names
    ``p.sub`` when that is one of the package's modules."""
    path = _files()[module]
    file = str(path.relative_to(PROJECT))
    edges: list[Edge] = []
    for node in ast.walk(_tree(module)):
        targets: list[str] = []
        if isinstance(node, ast.Import):
            targets = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            base = _resolve(module, path.name == "__init__.py", node)
            subs = [f"{base}.{a.name}" for a in node.names if f"{base}.{a.name}" in _files()]
            targets = subs if len(subs) == len(node.names) else [base, *subs]
        edges.extend(Edge(file, target, node.lineno) for target in targets if target != module)
    return tuple(dict.fromkeys(edges))


def _runs(edge: Edge) -> list[str]:
    """The package's modules an import runs: the one named and its parents."""
    return [name for name in _with_parents(edge.target) if name in _files()]


def _top(name: str) -> str:
    return name.split(".")[0]


def _in(module: str, *layers: str) -> bool:
    return any(module == layer or module.startswith(layer + ".") for layer in layers)


def _modules(*layers: str) -> list[str]:
    return [m for m in _files() if _in(m, *layers)]


def _check_known(found: set[str], known: frozenset[str], contract: str) -> None:
    """New violations fail; so do listed ones that are gone (remove them)."""
    new = sorted(found - known)
    fixed = sorted(known - found)
    assert not new, f"{contract}: new violations (fix them):\n  " + "\n  ".join(new)
    assert not fixed, (f"{contract}: fixed, so remove from the known list:\n  "
                       + "\n  ".join(fixed))


# --- core and protocol import no I/O -------------------------------------------------

PURE_LAYERS = ("passbridge.core", "passbridge.protocol")
# What the pure layers may import from the rest of the package: the
# injectable clock and the error types, nothing that runs I/O.
PURE_MAY_USE = ("passbridge.core", "passbridge.protocol", "passbridge.clock",
                "passbridge.errors", "passbridge.p256")


def _closure(modules: Iterable[str]) -> set[str]:
    """The package's modules that importing ``modules`` runs (static, transitive)."""
    seen: set[str] = set()
    todo = list(modules)
    while todo:
        module = todo.pop()
        if module in seen:
            continue
        seen.add(module)
        todo.extend(name for e in _edges(module) for name in _runs(e))
    return seen


def test_core_and_protocol_reach_only_pure_parts_of_the_package() -> None:
    reached = _closure(_modules(*PURE_LAYERS))
    outside = sorted(m for m in reached if m != "passbridge" and not _in(m, *PURE_MAY_USE))
    assert not outside, f"core/protocol reach {outside}"


def test_core_and_protocol_import_no_io_modules() -> None:
    reached = _closure(_modules(*PURE_LAYERS))
    bad = [str(e) for m in sorted(reached) for e in _edges(m) if _top(e.target) in IO_MODULES]
    assert not bad, "I/O imports in the pure layers:\n  " + "\n  ".join(bad)


def _os_uses(module: str) -> set[str]:
    """The ``os`` names a module uses: ``from os import x``, ``import os.x``, ``os.x``."""
    tree = _tree(module)
    aliases = {alias.asname or "os" for node in ast.walk(tree) if isinstance(node, ast.Import)
               for alias in node.names if alias.name == "os"}
    used: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.ImportFrom) and not node.level and _top(node.module or "") == "os":
            used.update(f"{node.module}.{alias.name}" for alias in node.names)
        elif isinstance(node, ast.Import):
            used.update(alias.name for alias in node.names if alias.name.startswith("os."))
        elif (isinstance(node, ast.Attribute) and isinstance(node.value, ast.Name)
              and node.value.id in aliases):
            used.add(f"os.{node.attr}")
    return used


def test_core_and_protocol_use_no_os_file_or_process_calls() -> None:
    """``os`` is allowed for its random source and fork hook only."""
    reached = _closure(_modules(*PURE_LAYERS))
    allowed = {f"os.{name}" for name in OS_PURE_NAMES}
    bad = sorted(f"{_files()[m].relative_to(PROJECT)} uses {name}"
                 for m in reached for name in _os_uses(m) - allowed)
    assert not bad, "\n  ".join(bad)


def test_core_and_protocol_open_no_files() -> None:
    """The builtin ``open`` needs no import; look for the call itself."""
    bad = sorted(
        f"{_files()[m].relative_to(PROJECT)}:{node.lineno}"
        for m in _closure(_modules(*PURE_LAYERS)) for node in ast.walk(_tree(m))
        if isinstance(node, ast.Call) and isinstance(node.func, ast.Name)
        and node.func.id in ("open", "input", "print", "exec", "eval", "__import__")
    )
    assert not bad, f"builtin I/O calls in the pure layers: {bad}"


# Issue 9: "no threading locks in the pure core" (document it as not
# thread-safe instead), and time read only from the injectable clock.
KNOWN_CORE_LOCKS_AND_CLOCK_READS: frozenset[str] = frozenset()


def test_core_takes_no_locks_and_reads_no_clock_but_the_injected_one() -> None:
    found = {str(e) for m in _modules("passbridge.core") for e in _edges(m)
             if e.target in ("threading", "_thread", "time")}
    _check_known(found, KNOWN_CORE_LOCKS_AND_CLOCK_READS, "core: threading/time")


# --- the edges: who may import whom -------------------------------------------------

# Issue 9: adapters are byte transports; the Aliro transaction is driven
# by the bridge, not from inside an adapter.
KNOWN_ADAPTERS_TO_ALIRO: frozenset[str] = frozenset()


def test_adapters_do_not_import_the_aliro_protocol() -> None:
    """Direct imports only: an adapter may use framing code that itself uses crypto."""
    found = {str(e) for m in _modules("passbridge.adapters") for e in _edges(m)
             if e.target.startswith("passbridge.protocol.aliro_")}
    _check_known(found, KNOWN_ADAPTERS_TO_ALIRO, "adapters -> passbridge.protocol.aliro_*")


# Issue 9: `serve` with real radios must load no simulator. Transitive: a
# path through another package counts as much as a direct import.
# None left: the simulated air lives in passbridge/sim/air.py and reaches
# the app through the SimulatedRoutes protocol.
KNOWN_SERVICE_TO_SIM: frozenset[str] = frozenset()


def _paths_into(sources: Iterable[str], forbidden: str, known: frozenset[str]) -> set[str]:
    """Direct imports of ``forbidden`` from the package's modules that ``sources``
    reach, not counting the known edges (so a second way in is new)."""
    seen: set[str] = set()
    todo = list(sources)
    found: set[str] = set()
    while todo:
        module = todo.pop()
        if module in seen or _in(module, forbidden):
            continue
        seen.add(module)
        for edge in _edges(module):
            if _in(edge.target, forbidden):
                found.add(str(edge))
            elif str(edge) not in known:
                todo.extend(_runs(edge))
    return found


def test_service_does_not_import_the_simulators() -> None:
    found = _paths_into(_modules("passbridge.service"), "passbridge.sim", KNOWN_SERVICE_TO_SIM)
    _check_known(found, KNOWN_SERVICE_TO_SIM, "service -> passbridge.sim")


# The service's public face, as its package docstring says: ``runtime``
# builds the parts, ``app.create_app`` serves them. Everything else in
# passbridge.service is internal to it.
SERVICE_PUBLIC = frozenset({"passbridge.service", "passbridge.service.app",
                            "passbridge.service.runtime"})
KNOWN_SCENARIO_TO_SERVICE_INTERNALS: frozenset[str] = frozenset()


def test_scenario_does_not_import_service_internals() -> None:
    found = {str(e) for m in _modules("passbridge.scenario") for e in _edges(m)
             if _in(e.target, "passbridge.service") and e.target not in SERVICE_PUBLIC}
    _check_known(found, KNOWN_SCENARIO_TO_SERVICE_INTERNALS,
                 "scenario -> passbridge.service internals")


# Issue 9: a scenario run is not a test harness.
KNOWN_SCENARIO_TO_TEST_UTILS: frozenset[str] = frozenset()


def test_scenario_does_not_use_aiohttp_test_utils() -> None:
    found = {str(e) for m in _modules("passbridge.scenario") for e in _edges(m)
             if _in(e.target, "aiohttp.test_utils", "pytest", "unittest")}
    _check_known(found, KNOWN_SCENARIO_TO_TEST_UTILS, "scenario -> test utilities")


# --- the checker checks -------------------------------------------------------------


@pytest.mark.parametrize(("source", "expected"), [
    ("import asyncio\n", {"asyncio"}),
    ("def f():\n    from passbridge.sim import radios\n", {"passbridge.sim.radios"}),
    ("from ..sim.radios import SimulatedRadios\n", {"passbridge.sim.radios"}),
    ("from . import storage, __doc__\n", {"passbridge.service", "passbridge.service.storage"}),
    ("import os.path as p\nfrom os import urandom\n", {"os.path", "os"}),
])
def test_the_import_reader_sees_lazy_relative_and_submodule_imports(
    source: str, expected: set[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(sys.modules[__name__], "_tree", lambda module: ast.parse(source))
    _edges.cache_clear()
    try:
        assert {e.target for e in _edges("passbridge.service.app")} == expected
    finally:
        _edges.cache_clear()


def test_one_set_of_p256_point_helpers() -> None:
    """Issue 9: the 65-byte point is encoded and decoded in passbridge/p256.py
    only; no other module spells the encoding or decodes a point itself."""
    bad = sorted(
        f"{_files()[m].relative_to(PROJECT)}:{node.lineno}"
        for m in _files() if m != "passbridge.p256" for node in ast.walk(_tree(m))
        if isinstance(node, ast.Attribute)
        and node.attr in ("UncompressedPoint", "from_encoded_point", "derive_private_key")
    )
    assert not bad, f"P-256 point helpers outside passbridge/p256.py: {bad}"
