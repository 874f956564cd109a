"""FAST stays fast with many phones (issue 14, item 4).

The reader's persistent keys are unsealed once per process, tried in a
door's order (recent phones, then the door's users, then the rest) and at
most MAX_FAST_TRIALS per tap before the same tap falls back to STANDARD.
The taps are real ReaderTransactions against the phone applet.
"""

from __future__ import annotations

import secrets
from pathlib import Path
from zoneinfo import ZoneInfo

import pytest

from passbridge.adapters.keystore import KeyStore, MemoryKeyStore, SqliteKeyStore
from passbridge.bridge.fast_keys import DoorPhones, FastKeyOrder
from passbridge.bridge.reader_driver import (
    CredentialDirectory,
    new_transaction,
    reader_identity,
    settle,
)
from passbridge.core.model import Site, User
from passbridge.protocol.aliro_crypto import generate_ephemeral, public_key_bytes
from passbridge.protocol.aliro_phone import PhoneApplet
from passbridge.protocol.aliro_reader import (
    MAX_FAST_TRIALS,
    Authenticated,
    Failed,
    SendCommand,
)

SEALING_KEY = b"s" * 32


def tap(store: KeyStore, directory: CredentialDirectory, phone: PhoneApplet
        ) -> tuple[Authenticated | Failed, int]:
    """One tap; the event it ended on and how many persistent keys it tried."""
    txn = new_transaction(reader_identity(store.reader_key()))
    event = settle(txn, txn.receive(phone.process(txn.start())), directory)
    while isinstance(event, SendCommand):
        event = settle(txn, txn.receive(phone.process(event.apdu)), directory)
    assert isinstance(event, Authenticated | Failed), event
    if isinstance(event, Authenticated) and isinstance(directory, FastKeyOrder):
        directory.authenticated(event.credential_id)
    return event, txn.fast_keys_tried


def enrol_others(store: KeyStore, count: int) -> None:
    """Phones that hold a persistent key at this reader and are not tapping."""
    for i in range(count):
        point = public_key_bytes(generate_ephemeral())
        store.enroll_phone(f"other-{i:05d}", f"user-{i:05d}", point)
        store.remember_persistent_key(f"other-{i:05d}", point, secrets.token_bytes(32))


def enrol(store: KeyStore, credential_id: str) -> PhoneApplet:
    phone = PhoneApplet(generate_ephemeral(), store.reader_key().public_key)
    store.enroll_phone(credential_id, "alice", phone.credential_public_key)
    return phone


def no_door_phones() -> tuple[str, ...]:
    return ()


def flow(event: Authenticated | Failed) -> str:
    assert isinstance(event, Authenticated), event
    return event.flow


def test_keys_are_unsealed_once_not_on_every_tap(tmp_path: Path) -> None:
    store = SqliteKeyStore(tmp_path / "pb.sqlite3", sealing_key=SEALING_KEY)
    phone = enrol(store, "alice-phone")
    tap(store, store, phone)  # STANDARD: the reader now holds alice's key
    for i in range(30):
        point = public_key_bytes(generate_ephemeral())
        store.enroll_phone(f"other-{i}", f"user-{i}", point)
        store.remember_persistent_key(f"other-{i}", point, secrets.token_bytes(32))
    opened: list[str] = []
    real_open = store._sealer.open

    def counting_open(name: str, stored: bytes | str) -> bytes:
        opened.append(name)
        return real_open(name, stored)

    store._sealer.open = counting_open  # type: ignore[method-assign]
    for _ in range(5):
        assert flow(tap(store, store, phone)[0]) == "fast"
    kpersistent_opens = [n for n in opened if n.startswith("kpersistent:")]
    assert len(kpersistent_opens) <= 31  # once per key at most, not once per key per tap
    store.close()


def test_returning_phone_is_tried_first_among_many() -> None:
    store = MemoryKeyStore()
    phone = enrol(store, "alice-phone")
    enrol_others(store, 2_000)
    order = FastKeyOrder(store, no_door_phones)
    first, _ = tap(store, order, phone)
    assert flow(first) == "standard"
    enrol_others(store, 10)  # others remembered since: alice is still tried first
    event, tried = tap(store, order, phone)
    assert (flow(event), tried) == ("fast", 1)


def test_door_users_are_tried_before_other_phones() -> None:
    store = MemoryKeyStore()
    phone = enrol(store, "alice-phone")
    enrol_others(store, 500)
    tap(store, store, phone)  # alice's key comes after the others; this order never saw her
    users = {
        "alice": User("alice", phones=("alice-phone",), doors=frozenset({"front"})),
        "bob": User("bob", phones=("other-00007",), doors=frozenset({"garage"})),
    }
    site = Site(id="hq", timezone=ZoneInfo("UTC"), doors={}, users=users)
    order = FastKeyOrder(store, DoorPhones(lambda: site, "front"))
    event, tried = tap(store, order, phone)
    assert (flow(event), tried) == ("fast", 1)


def test_trials_are_bounded_then_the_same_tap_falls_back_to_standard() -> None:
    """A phone past the bound is served by STANDARD in the same tap: the
    reader never tries thousands of keys, and the phone is FAST next time."""
    store = MemoryKeyStore()
    enrol_others(store, 3 * MAX_FAST_TRIALS)
    phone = enrol(store, "alice-phone")
    tap(store, store, phone)  # alice's key is stored after all the others
    order = FastKeyOrder(store, no_door_phones)
    event, tried = tap(store, order, phone)
    assert (flow(event), tried) == ("standard", MAX_FAST_TRIALS)
    event, tried = tap(store, order, phone)
    assert (flow(event), tried) == ("fast", 1)


@pytest.mark.parametrize("where", ["this process", "another process"])
def test_revoked_phone_never_authenticates_from_the_key_cache(tmp_path: Path, where: str) -> None:
    """The in-memory keys follow this process's revocations, and a revocation
    by another process (the CLI) is caught by the enrolment check after a match."""
    db = tmp_path / "pb.sqlite3"
    store = SqliteKeyStore(db, sealing_key=SEALING_KEY)
    phone = enrol(store, "alice-phone")
    order = FastKeyOrder(store, no_door_phones)
    assert flow(tap(store, order, phone)[0]) == "standard"
    assert flow(tap(store, order, phone)[0]) == "fast"
    if where == "this process":
        assert store.revoke_phone("alice-phone")
    else:
        with SqliteKeyStore(db, sealing_key=SEALING_KEY) as cli:
            assert cli.revoke_phone("alice-phone")
    event, _ = tap(store, order, phone)
    assert isinstance(event, Failed) and event.reason == "unknown_credential"
    store.close()


def test_enrolment_and_remember_keep_the_cache_current(tmp_path: Path) -> None:
    db = tmp_path / "pb.sqlite3"
    store = SqliteKeyStore(db, sealing_key=SEALING_KEY)
    phone = enrol(store, "alice-phone")
    tap(store, store, phone)
    assert store.persistent_key("alice-phone") is not None
    fresh = PhoneApplet(generate_ephemeral(), store.reader_key().public_key)
    store.enroll_phone("alice-phone", "alice", fresh.credential_public_key)  # a new phone
    assert store.persistent_key("alice-phone") is None
    assert flow(tap(store, store, fresh)[0]) == "standard"
    with SqliteKeyStore(db, sealing_key=SEALING_KEY) as again:  # what is at rest
        assert again.persistent_key("alice-phone") == store.persistent_key("alice-phone")
    store.close()
