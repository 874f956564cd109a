"""A secret in the key store that is not sealed is refused, never used.

Whoever can write the database file could otherwise plant a PIN key or a
private key of their choosing in clear and have the service use it.
"""

from __future__ import annotations

import sqlite3
from pathlib import Path

import pytest

from passbridge.adapters.keystore import KeyStoreError, SqliteKeyStore
from passbridge.adapters.sealing import Sealer, SealError
from passbridge.core.tokens import generate_private_key, p256_point, private_key_to_pem

SEALING_KEY = b"s" * 32


def _store(db: Path) -> SqliteKeyStore:
    return SqliteKeyStore(db, sealing_key=SEALING_KEY)


def _plant(db: Path, sql: str, args: tuple[object, ...]) -> None:
    with sqlite3.connect(db) as conn:
        conn.execute(sql, args)


def test_sealer_refuses_a_value_in_clear() -> None:
    sealer = Sealer(SEALING_KEY)
    sealed = sealer.seal("pin_key", b"p" * 32)
    assert Sealer.is_sealed(sealed) and Sealer.is_sealed(sealed.decode("latin-1"))
    assert sealer.open("pin_key", sealed) == b"p" * 32
    for clear in (b"p" * 32, "p" * 32, b"", "-----BEGIN PRIVATE KEY-----"):
        assert not Sealer.is_sealed(clear)
        with pytest.raises(SealError, match="'pin_key' is not sealed"):
            sealer.open("pin_key", clear)


def test_pin_key_in_clear_is_refused(tmp_path: Path) -> None:
    db = tmp_path / "ks.sqlite3"
    _store(db).close()
    _plant(db, "INSERT INTO ks_secrets (name, value) VALUES ('pin_key', ?)", (b"x" * 32,))
    store = _store(db)
    with pytest.raises(KeyStoreError, match="'pin_key' is not sealed"):
        store.pin_key()
    store.close()


@pytest.mark.parametrize("role", ["bridge", "reader"])
def test_private_key_in_clear_is_refused(tmp_path: Path, role: str) -> None:
    db = tmp_path / "ks.sqlite3"
    _store(db).close()
    pem = private_key_to_pem(generate_private_key("ES256"))
    _plant(db, "INSERT INTO ks_private_keys (role, id, alg, private_pem, group_id, sub_id) "
               "VALUES (?, 'planted', 'ES256', ?, ?, ?)", (role, pem, b"g" * 16, b"s" * 16))
    store = _store(db)
    with pytest.raises(KeyStoreError, match=f"'{role}' is not sealed"):
        store.bridge_key() if role == "bridge" else store.reader_key()
    store.close()


def test_persistent_key_in_clear_is_refused(tmp_path: Path) -> None:
    db = tmp_path / "ks.sqlite3"
    store = _store(db)
    point = p256_point(generate_private_key("ES256").public_key())  # type: ignore[arg-type]
    store.enroll_phone("p1", "alice", point)
    store.close()
    _plant(db, "INSERT INTO ks_persistent_keys (credential_id, public_key, kpersistent) "
               "VALUES ('p1', ?, ?)", (point, b"K" * 32))
    store = _store(db)
    with pytest.raises(KeyStoreError, match="'kpersistent:p1' is not sealed"):
        store.persistent_keys()
    store.close()
