"""One exception root: every exception class passbridge defines derives
from ``passbridge.errors.PassbridgeError`` and keeps its built-in base, so
``except PassbridgeError`` catches all of ours and no handler changed."""

from __future__ import annotations

import importlib
import inspect
import pkgutil

import pytest

import passbridge
from passbridge.adapters.keystore import KeyStoreError
from passbridge.errors import ConfigError, PassbridgeError, Problem, UnknownDoor
from passbridge.protocol.tlv import MalformedTLV


def _package_exceptions() -> dict[str, type[BaseException]]:
    found: dict[str, type[BaseException]] = {}
    for info in pkgutil.walk_packages(passbridge.__path__, "passbridge."):
        if info.name.endswith("__main__"):
            continue  # runs the command line
        module = importlib.import_module(info.name)
        for name, obj in vars(module).items():
            if (inspect.isclass(obj) and issubclass(obj, BaseException)
                    and obj.__module__ == info.name):
                found[f"{info.name}.{name}"] = obj
    return found


def test_every_exception_the_package_defines_has_the_one_root() -> None:
    found = _package_exceptions()
    assert len(found) > 20  # the walk saw the package, not an empty corner of it
    outside = sorted(name for name, cls in found.items()
                     if not issubclass(cls, PassbridgeError))
    assert not outside, f"exceptions outside PassbridgeError: {outside}"


@pytest.mark.parametrize(("error", "builtin"), [
    (UnknownDoor("front"), KeyError),
    (MalformedTLV("bad"), ValueError),
    (KeyStoreError("locked"), RuntimeError),
    (ConfigError([Problem("site.yaml", "doors[0]", "bad")]), Exception),
])
def test_the_root_sits_beside_the_builtin_base(error: Exception, builtin: type) -> None:
    """Handlers that caught the built-in type still catch it; the message is unchanged."""
    assert isinstance(error, PassbridgeError) and isinstance(error, builtin)
    assert str(UnknownDoor("front")) == "no door 'front' on this site"
