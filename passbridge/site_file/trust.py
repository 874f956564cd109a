"""The ``trust:`` section: bridge and backend public keys, inline or from a file,
checked against their algorithm."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from pathlib import Path

from cryptography.exceptions import UnsupportedAlgorithm
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, ed25519

from passbridge.core.model import BRIDGE_DEFAULT_FACTORS, Factor, TrustedKey
from passbridge.site_file import shape
from passbridge.site_file.checker import Checker

_MAX_KEY_FILE = 16 * 1024  # a PEM public key is well under 1 KiB; never read /dev/zero


def parse_trust(
    check: Checker, trust: shape.Trust | None, base_dir: Path | None
) -> tuple[tuple[TrustedKey, ...], tuple[TrustedKey, ...]]:
    """Bridge and backend keys (door references were judged with the shape)."""
    if trust is None:
        return (), ()
    return (_parse_keys(check, trust.bridges or [], "trust.bridges", base_dir),
            _parse_keys(check, trust.backends or [], "trust.backends", base_dir))


def _parse_keys(
    check: Checker, entries: Sequence[shape.TrustedKey], where: str, base_dir: Path | None
) -> tuple[TrustedKey, ...]:
    keys: list[TrustedKey] = []
    seen: dict[str, str] = {}
    for index, k in enumerate(entries):
        path = f"{where}[{index}]"
        before = check.count
        if k.id in seen:
            check.fail(f"{path}.id", f"key id {k.id!r} is already used at {seen[k.id]}")
        else:
            seen[k.id] = path
        pem = _read_pem(check, k, path, base_dir)
        if pem is None or check.count != before:
            continue
        normal = _check_public_key(check, pem, path, k.alg)
        if normal is None:
            continue
        doors = factors = None
        if isinstance(k, shape.BridgeKey):  # what this bridge may vouch for
            doors = k.doors if isinstance(k.doors, list) else None  # "all" or not given: every
            factors = k.factors
        keys.append(TrustedKey(
            id=k.id, alg=k.alg, public_key_pem=normal,
            doors=None if doors is None else frozenset(doors),
            factors=BRIDGE_DEFAULT_FACTORS if factors is None else frozenset(
                Factor(f) for f in factors),
        ))
    return tuple(keys)


def _read_pem(
    check: Checker, k: shape.TrustedKey, path: str, base_dir: Path | None
) -> tuple[str, str] | None:
    """(PEM text, the key path it came from), from exactly one of the two keys."""
    if (k.public_key is None) == (k.public_key_file is None):
        check.fail(path, "expected exactly one of public_key (PEM text) or public_key_file")
        return None
    if k.public_key is not None:
        return k.public_key, f"{path}.public_key"
    assert k.public_key_file is not None
    file = (base_dir or Path.cwd()) / k.public_key_file
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
