"""The ``trust:`` section: bridge and backend public keys, inline or from a file,
checked against their algorithm."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

from cryptography.exceptions import UnsupportedAlgorithm
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, ed25519

from passbridge.core.model import BRIDGE_DEFAULT_FACTORS, Door, Factor, TrustedKey
from passbridge.site_file.checker import Checker
from passbridge.site_file.describe import kind_of
from passbridge.site_file.shape import BRIDGE_FACTORS, KEY_ALGORITHMS

_MAX_KEY_FILE = 16 * 1024  # a PEM public key is well under 1 KiB; never read /dev/zero


def parse_trust(
    check: Checker,
    value: Any,
    base_dir: Path | None,
    doors: Mapping[str, Door | None] | None = None,
) -> tuple[tuple[TrustedKey, ...], tuple[TrustedKey, ...]]:
    """Bridge and backend keys. ``doors``: the site's doors, to check a bridge's
    ``doors`` list against (None: they could not be read, so not checked)."""
    if value is None:
        return (), ()
    m = check.mapping(value, "trust", required=(), optional=("bridges", "backends"))
    if m is None:
        return (), ()
    return (_parse_keys(check, m, "bridges", base_dir, doors),
            _parse_keys(check, m, "backends", base_dir, doors))


def _parse_keys(
    check: Checker,
    m: Mapping[str, Any],
    key: str,
    base_dir: Path | None,
    doors: Mapping[str, Door | None] | None,
) -> tuple[TrustedKey, ...]:
    keys: list[TrustedKey] = []
    seen: dict[str, str] = {}
    scoped = key == "bridges"
    for path, item in check.items(m, key, "trust"):
        before = check.count
        k = check.mapping(item, path, required=("id",),
                          optional=("alg", "public_key", "public_key_file",
                                    *(("doors", "factors") if scoped else ())))
        if k is None:
            continue
        key_id = check.ident(k, "id", path)
        if key_id in seen:
            check.fail(f"{path}.id", f"key id {key_id!r} is already used at {seen[key_id]}")
        elif key_id:
            seen[key_id] = path
        alg = k.get("alg", "ES256")
        if alg not in KEY_ALGORITHMS:
            check.fail(f"{path}.alg",
                       f"expected ES256 (P-256) or EdDSA (Ed25519); got {kind_of(alg)}")
        key_doors = _bridge_doors(check, k, path, doors) if scoped else None
        factors = _bridge_factors(check, k, path) if scoped else BRIDGE_DEFAULT_FACTORS
        pem = _read_pem(check, k, path, base_dir)
        if pem is None or check.count != before:
            continue
        normal = _check_public_key(check, pem, path, str(alg))
        if normal is not None:
            keys.append(TrustedKey(id=key_id, alg=str(alg), public_key_pem=normal,
                                   doors=key_doors, factors=factors))
    return tuple(keys)


def _bridge_doors(
    check: Checker, k: Mapping[str, Any], path: str, doors: Mapping[str, Door | None] | None
) -> frozenset[str] | None:
    """The doors a bridge may vouch for; None (every door) when not given or "all"."""
    listed = check.door_ids(k, "doors", path, doors)
    if listed is None or listed[0]:
        return None
    return listed[1]


def _bridge_factors(check: Checker, k: Mapping[str, Any], path: str) -> frozenset[Factor]:
    """The factors a bridge may vouch for; nfc, ble and card when not given."""
    value = k.get("factors")
    if value is None:
        return BRIDGE_DEFAULT_FACTORS
    where = f"{path}.factors"
    expected = " | ".join(BRIDGE_FACTORS)
    if not isinstance(value, list):
        check.fail(where, f"expected a list of factors ({expected}); got {kind_of(value)}")
        return frozenset()
    out: set[Factor] = set()
    for i, item in enumerate(value):
        if item == Factor.PIN.value:
            check.fail(f"{where}[{i}]", "a PIN never travels as a factor token; "
                                        f"expected one of {expected}")
        elif not isinstance(item, str) or item not in BRIDGE_FACTORS:
            check.fail(f"{where}[{i}]", f"expected one of {expected}; got {kind_of(item)}")
        else:
            out.add(Factor(item))
    return frozenset(out)


def _read_pem(
    check: Checker, k: Mapping[str, Any], path: str, base_dir: Path | None
) -> tuple[str, str] | None:
    """(PEM text, the key path it came from), from exactly one of the two keys."""
    if ("public_key" in k) == ("public_key_file" in k):
        check.fail(path, "expected exactly one of public_key (PEM text) or public_key_file")
        return None
    if "public_key" in k:
        pem = check.text(k, "public_key", path)
        return (pem, f"{path}.public_key") if pem else None
    name = check.text(k, "public_key_file", path)
    if not name:
        return None
    file = (base_dir or Path.cwd()) / name
    try:
        with file.open("rb") as stream:
            raw = stream.read(_MAX_KEY_FILE + 1)
    except OSError as exc:
        check.fail(f"{path}.public_key_file", f"cannot read {file}: {exc.strerror or exc}")
        return None
    if len(raw) > _MAX_KEY_FILE:
        check.fail(f"{path}.public_key_file", f"{file} is too large for a PEM public key")
        return None
    return raw.decode("ascii", "replace"), f"{path}.public_key_file"


def _check_public_key(check: Checker, pem: tuple[str, str], path: str, alg: str) -> str | None:
    """The key as canonical PEM if it parses and fits the algorithm."""
    text, where = pem
    try:
        key = serialization.load_pem_public_key(text.encode("ascii", "replace"))
    except (ValueError, UnsupportedAlgorithm, TypeError):
        check.fail(where, "expected a PEM public key (-----BEGIN PUBLIC KEY-----)")
        return None
    fits: Callable[[object], bool]
    if alg == "ES256":
        fits = lambda k: isinstance(k, ec.EllipticCurvePublicKey) and isinstance(  # noqa: E731
            k.curve, ec.SECP256R1)
        wanted = "a P-256 (secp256r1) key for ES256"
    else:
        fits = lambda k: isinstance(k, ed25519.Ed25519PublicKey)  # noqa: E731
        wanted = "an Ed25519 key for EdDSA"
    if not fits(key):
        check.fail(where, f"expected {wanted}; got a {type(key).__name__.removeprefix('_')}")
        return None
    return key.public_bytes(
        serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
    ).decode("ascii")
