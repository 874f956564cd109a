"""Proximity keys (resolvable BLE ids): agreed at enrolment, sealed at rest,
resolved per time slot by the bridge."""

from __future__ import annotations

import sqlite3
from datetime import UTC, datetime
from pathlib import Path

import pytest
from cryptography.hazmat.primitives.asymmetric import ec

from passbridge.adapters.keystore import MemoryKeyStore, SqliteKeyStore
from passbridge.bridge.proximity import AdvertResolver
from passbridge.clock import ManualClock
from passbridge.core.tokens import p256_point
from passbridge.protocol.ble_advert import (
    derive_proximity_key,
    rotating_id,
    slot_at,
)

START = datetime(2026, 11, 30, 18, 0, 10, tzinfo=UTC)


def _phone() -> ec.EllipticCurvePrivateKey:
    return ec.generate_private_key(ec.SECP256R1())


def _phone_side_key(phone: ec.EllipticCurvePrivateKey, store: MemoryKeyStore | SqliteKeyStore
                    ) -> bytes:
    """What the app derives: its own private key and the site's reader public key."""
    return derive_proximity_key(phone, store.reader_key().public_key)


def test_memory_store_agrees_on_the_key_at_enrolment() -> None:
    store = MemoryKeyStore()
    phone = _phone()
    store.enroll_phone("p1", "alice", p256_point(phone.public_key()))
    assert store.proximity_keys() == [("p1", _phone_side_key(phone, store))]
    before = store.proximity_version()
    store.revoke_phone("p1")
    assert store.proximity_keys() == [] and store.proximity_version() != before


def test_sqlite_store_seals_the_key_and_keeps_it(tmp_path: Path) -> None:
    db = tmp_path / "passbridge.sqlite3"
    phone = _phone()
    with SqliteKeyStore(db) as store:
        store.enroll_phone("p1", "alice", p256_point(phone.public_key()))
        key = _phone_side_key(phone, store)
        assert store.proximity_keys() == [("p1", key)]
    raw = sqlite3.connect(db)
    try:
        (stored,) = raw.execute("SELECT proximity_key FROM ks_proximity_keys").fetchone()
    finally:
        raw.close()
    assert key not in bytes(stored)
    for path in tmp_path.iterdir():
        assert key not in path.read_bytes(), path.name  # not in clear anywhere on disk
    with SqliteKeyStore(db) as again:
        assert again.proximity_keys() == [("p1", key)]


def test_a_service_sees_enrolments_made_by_another_process(tmp_path: Path) -> None:
    """The CLI enrols and revokes through its own key store on the same file;
    the running service's resolver follows without a restart."""
    db = tmp_path / "passbridge.sqlite3"
    clock = ManualClock(START)
    with SqliteKeyStore(db) as service, SqliteKeyStore(db) as cli:
        resolver = AdvertResolver(service, clock)
        phone = _phone()
        adv = rotating_id(_phone_side_key(phone, service), slot_at(START.timestamp()))
        assert resolver.resolve(adv) is None
        cli.enroll_phone("p1", "alice", p256_point(phone.public_key()))
        assert resolver.resolve(adv) == "p1"
        cli.revoke_phone("p1")
        assert resolver.resolve(adv) is None


def test_phones_enrolled_before_proximity_keys_get_theirs(tmp_path: Path) -> None:
    db = tmp_path / "passbridge.sqlite3"
    phone = _phone()
    with SqliteKeyStore(db) as store:
        store.enroll_phone("p1", "alice", p256_point(phone.public_key()))
        raw = sqlite3.connect(db)  # as an older version left the file
        with raw:
            raw.execute("DELETE FROM ks_proximity_keys")
        raw.close()
        assert store.proximity_keys() == [("p1", _phone_side_key(phone, store))]


@pytest.mark.parametrize(("offset", "resolves"), [
    (-2, False), (-1, True), (0, True), (1, True), (2, False),
])
def test_resolver_accepts_the_adjacent_slots_only(offset: int, resolves: bool) -> None:
    """The phone advertises the id of slot n + offset while the bridge is in slot n."""
    clock = ManualClock(START)
    store = MemoryKeyStore(clock=clock)
    phone = _phone()
    store.enroll_phone("p1", "alice", p256_point(phone.public_key()))
    resolver = AdvertResolver(store, clock)
    adv = rotating_id(_phone_side_key(phone, store), slot_at(START.timestamp()) + offset)
    assert (resolver.resolve(adv) == "p1") is resolves


class _SameKeyTwice:
    """Two credentials with one key: every id of theirs collides."""

    def proximity_keys(self) -> list[tuple[str, bytes]]:
        return [("p1", b"k" * 32), ("p2", b"k" * 32)]

    def proximity_version(self) -> tuple[int, ...]:
        return (1,)


def test_an_id_two_credentials_share_resolves_to_nobody() -> None:
    clock = ManualClock(START)
    resolver = AdvertResolver(_SameKeyTwice(), clock)
    assert resolver.resolve(rotating_id(b"k" * 32, slot_at(START.timestamp()))) is None
