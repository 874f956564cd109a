"""Key store: secrets persist (SQLite) or are fresh (memory), phones bind and revoke,
FAST keys are forgotten with their phone, private material never shows."""

from __future__ import annotations

import stat
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path

import pytest

from passbridge.adapters.audit_sqlite import AuditLog
from passbridge.adapters.keystore import (
    KeyStore,
    KeyStoreError,
    MemoryKeyStore,
    SqliteKeyStore,
)
from passbridge.bridge.reader_driver import CredentialDirectory, reader_identity
from passbridge.clock import ManualClock
from passbridge.core.model import Factor, Side, TrustedKey
from passbridge.core.tokens import (
    BadKey,
    FactorTokenMinter,
    FactorTokenVerifier,
    VerifiedFactor,
    generate_private_key,
    p256_point,
    private_key_to_pem,
    public_key_to_pem,
)

AT = datetime(2027, 3, 1, 9, 0, tzinfo=UTC)
PHONE_A = p256_point(generate_private_key("ES256"))  # type: ignore[arg-type]
PHONE_B = p256_point(generate_private_key("ES256"))  # type: ignore[arg-type]
PHONE_C = p256_point(generate_private_key("ES256"))  # type: ignore[arg-type]


@pytest.fixture(params=["memory", "sqlite"])
def store(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[KeyStore]:
    clock = ManualClock(AT)
    ks: KeyStore
    if request.param == "memory":
        ks = MemoryKeyStore(clock=clock)
    else:
        ks = SqliteKeyStore(tmp_path / "keys.db", clock=clock)
    yield ks
    ks.close()


def test_secrets_are_created_once_and_stable(store: KeyStore) -> None:
    pin_key = store.pin_key()
    assert len(pin_key) == 32 and pin_key == store.pin_key()
    bridge = store.bridge_key()
    assert bridge.alg == "ES256" and bridge.id.startswith("bridge-")
    assert store.bridge_key().public_key_pem == bridge.public_key_pem
    reader = store.reader_key()
    assert len(reader.group_id) == 16 and len(reader.sub_id) == 16
    assert len(reader.public_key) == 65
    assert store.reader_key().public_key == reader.public_key


def test_private_material_never_shows_in_repr(store: KeyStore) -> None:
    bridge = store.bridge_key()
    pem = private_key_to_pem(bridge.private_key)
    body = pem.splitlines()[1]
    for text in (repr(store), repr(bridge), str(bridge)):
        assert "PRIVATE" not in text and body not in text
        assert store.pin_key().hex() not in text


def test_bridge_key_signs_tokens_its_trust_entry_verifies(store: KeyStore) -> None:
    clock = ManualClock(AT)
    bridge = store.bridge_key()
    minter = FactorTokenMinter(bridge.id, bridge.private_key, alg=bridge.alg, kid=bridge.id,
                               site_id="s", clock=clock)
    verifier = FactorTokenVerifier("s", [bridge.trusted()], clock=clock)
    token = minter.mint(user="u", door="d", side=Side.IN, factor=Factor.NFC, credential="c",
                        evidence={})
    assert isinstance(verifier.verify(token), VerifiedFactor)


def test_enrol_look_up_and_revoke(store: KeyStore) -> None:
    enrolment = store.enroll_phone("phone-a", "alice", PHONE_A)
    assert (enrolment.credential_id, enrolment.user_id, enrolment.public_key) == (
        "phone-a", "alice", PHONE_A)
    assert enrolment.enrolled_at == AT and not enrolment.revoked
    store.enroll_phone("phone-b", "bob", PHONE_B)
    assert store.credential_for_public_key(PHONE_A) == "phone-a"
    assert store.credential_for_public_key(PHONE_B) == "phone-b"
    assert store.phone_public_key("phone-a") == PHONE_A
    assert [p.credential_id for p in store.phones()] == ["phone-a", "phone-b"]

    assert store.revoke_phone("phone-a") is True
    assert store.revoke_phone("phone-a") is False
    assert store.revoke_phone("nobody") is False
    assert store.credential_for_public_key(PHONE_A) is None
    assert store.phone_public_key("phone-a") is None
    revoked = store.phone("phone-a")
    assert revoked is not None and revoked.revoked
    assert store.phone("nobody") is None
    assert store.credential_for_public_key(b"\x04" + bytes(64)) is None


def test_enrolment_is_checked(store: KeyStore) -> None:
    with pytest.raises(BadKey):
        store.enroll_phone("phone-x", "x", b"\x04" + bytes(64))  # not on the curve
    with pytest.raises(ValueError):
        store.enroll_phone("phone-x", "x", PHONE_A[:33])
    with pytest.raises(ValueError):
        store.enroll_phone("", "x", PHONE_A)
    store.enroll_phone("phone-a", "alice", PHONE_A)
    with pytest.raises(ValueError):
        store.enroll_phone("phone-other", "mallory", PHONE_A)  # one key, one credential
    assert store.credential_for_public_key(PHONE_A) == "phone-a"


def test_persistent_keys_follow_their_phone(store: KeyStore) -> None:
    store.enroll_phone("phone-a", "alice", PHONE_A)
    store.enroll_phone("phone-b", "bob", PHONE_B)
    store.remember_persistent_key("phone-a", PHONE_A, b"k" * 32)
    store.remember_persistent_key("phone-b", PHONE_B, b"j" * 32)
    store.remember_persistent_key("phone-a", PHONE_B, b"x" * 32)  # wrong key: ignored
    store.remember_persistent_key("ghost", PHONE_A, b"x" * 32)  # unknown: ignored
    assert sorted(store.persistent_keys()) == [("phone-a", PHONE_A, b"k" * 32),
                                               ("phone-b", PHONE_B, b"j" * 32)]
    store.remember_persistent_key("phone-a", PHONE_A, b"n" * 32)  # a later STANDARD tap
    assert ("phone-a", PHONE_A, b"n" * 32) in list(store.persistent_keys())

    store.revoke_phone("phone-a")
    assert list(store.persistent_keys()) == [("phone-b", PHONE_B, b"j" * 32)]
    store.remember_persistent_key("phone-a", PHONE_A, b"k" * 32)  # revoked: ignored
    assert [c for c, _, _ in store.persistent_keys()] == ["phone-b"]

    # Re-enrolment (a new phone key) starts without a FAST key.
    store.enroll_phone("phone-b", "bob", PHONE_C)
    assert list(store.persistent_keys()) == []
    assert store.credential_for_public_key(PHONE_B) is None


def test_trusted_keys(store: KeyStore) -> None:
    key = TrustedKey("app", "ES256", public_key_to_pem(generate_private_key("ES256")))
    store.add_trusted_key("backend", key)
    assert store.trusted_keys("backend") == [key]
    assert store.trusted_keys("bridge") == []
    with pytest.raises(ValueError):
        store.add_trusted_key("friends", key)
    with pytest.raises(BadKey):
        store.add_trusted_key("backend", TrustedKey("bad", "EdDSA", key.public_key_pem))


def test_it_is_a_credential_directory(store: KeyStore) -> None:
    directory: CredentialDirectory = store
    assert directory.credential_for_public_key(PHONE_A) is None


def test_memory_stores_are_fresh_each_run() -> None:
    a, b = MemoryKeyStore(), MemoryKeyStore()
    assert a.pin_key() != b.pin_key()
    assert a.bridge_key().id != b.bridge_key().id
    assert a.reader_key().public_key != b.reader_key().public_key


def test_reader_key_is_plain_material_the_bridge_turns_into_the_identity(
    store: KeyStore,
) -> None:
    """Issue 9: the key store keeps keys, the bridge builds the Aliro
    protocol's ReaderIdentity from them (no adapter imports the protocol)."""
    key = store.reader_key()
    identity = reader_identity(key)
    assert identity.private_key is key.private_key
    assert identity.reader_id == key.group_id + key.sub_id
    assert identity.public_key == key.public_key
    assert "private_key" not in repr(key)


def test_sqlite_store_persists_across_reopen(tmp_path: Path) -> None:
    path = tmp_path / "passbridge.db"
    with SqliteKeyStore(path, clock=ManualClock(AT)) as first:
        pin_key = first.pin_key()
        bridge = first.bridge_key()
        reader = first.reader_key()
        first.enroll_phone("phone-a", "alice", PHONE_A)
        first.remember_persistent_key("phone-a", PHONE_A, b"k" * 32)
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    with SqliteKeyStore(path) as again:
        assert again.pin_key() == pin_key
        assert again.bridge_key().id == bridge.id
        assert again.bridge_key().public_key_pem == bridge.public_key_pem
        assert again.reader_key().public_key == reader.public_key
        assert (again.reader_key().group_id, again.reader_key().sub_id) == (
            reader.group_id, reader.sub_id)
        phone = again.phone("phone-a")
        assert phone is not None and phone.enrolled_at == AT and phone.user_id == "alice"
        assert list(again.persistent_keys()) == [("phone-a", PHONE_A, b"k" * 32)]


def test_sqlite_store_shares_the_database_file_with_the_audit_log(tmp_path: Path) -> None:
    path = tmp_path / "passbridge.db"
    with AuditLog(path) as audit, SqliteKeyStore(path) as keys:
        keys.enroll_phone("phone-a", "alice", PHONE_A)
        seq = audit.append_change("enrolment", {"credential": "phone-a"}).result(10)
        assert audit.events()[0]["seq"] == seq
        assert keys.credential_for_public_key(PHONE_A) == "phone-a"


def test_sqlite_store_that_cannot_open_is_a_clear_error(tmp_path: Path) -> None:
    with pytest.raises(KeyStoreError):
        SqliteKeyStore(tmp_path / "no-such-dir" / "keys.db")
    junk = tmp_path / "junk.db"
    junk.write_bytes(b"not sqlite at all" * 200)
    with pytest.raises(KeyStoreError):
        SqliteKeyStore(junk)


# --- secrets at rest -----------------------------------------------------------------


def test_secrets_are_sealed_at_rest(tmp_path: Path) -> None:
    from passbridge.adapters.keystore import SqliteKeyStore
    from passbridge.adapters.sealing import sealing_key_path
    from passbridge.core.tokens import private_key_to_pem

    db = tmp_path / "ks.sqlite3"
    store = SqliteKeyStore(db)
    pin_key = store.pin_key()
    reader_pem = private_key_to_pem(store.reader_key().private_key)
    bridge_pem = private_key_to_pem(store.bridge_key().private_key)
    point = p256_point(generate_private_key("ES256").public_key())  # type: ignore[arg-type]
    store.enroll_phone("p1", "alice", point)
    store.remember_persistent_key("p1", point, b"K" * 32)
    store.close()
    files = [p for p in tmp_path.glob("ks.sqlite3*") if not p.name.endswith("sealing-key")]
    raw = b"".join(p.read_bytes() for p in files)
    for secret in (pin_key, b"K" * 32, reader_pem.encode(), bridge_pem.encode(), b"PRIVATE KEY"):
        assert secret not in raw
    assert sealing_key_path(db).stat().st_mode & 0o077 == 0
    # The same key file opens them again; another sealing key cannot.
    again = SqliteKeyStore(db)
    assert again.pin_key() == pin_key
    assert private_key_to_pem(again.reader_key().private_key) == reader_pem
    assert again.persistent_keys() == [("p1", point, b"K" * 32)]
    again.close()
    wrong = SqliteKeyStore(db, sealing_key=b"w" * 32)
    with pytest.raises(KeyStoreError, match="sealing key"):
        wrong.pin_key()
    wrong.close()


def test_sealing_key_from_the_environment(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from passbridge.adapters.keystore import SqliteKeyStore
    from passbridge.adapters.sealing import SEALING_KEY_ENV, sealing_key_path

    monkeypatch.setenv(SEALING_KEY_ENV, "ab" * 32)
    store = SqliteKeyStore(tmp_path / "ks.sqlite3")
    key = store.pin_key()
    store.close()
    assert not sealing_key_path(tmp_path / "ks.sqlite3").exists()
    assert SqliteKeyStore(tmp_path / "ks.sqlite3").pin_key() == key
    monkeypatch.setenv(SEALING_KEY_ENV, "not hex")
    with pytest.raises(KeyStoreError, match=SEALING_KEY_ENV):
        SqliteKeyStore(tmp_path / "other.sqlite3")


def test_an_osdp_reader_key_is_set_once_unless_replaced(store: KeyStore) -> None:
    from passbridge.adapters.keystore import OsdpKeyExists, new_osdp_key

    assert store.osdp_key("front", Side.IN) is None
    first = new_osdp_key()
    key = store.set_osdp_key("front", Side.IN, first)
    assert store.osdp_key("front", Side.IN) == key and key.scbk == first
    assert first.hex() not in repr(key)
    with pytest.raises(OsdpKeyExists, match="--again"):
        store.set_osdp_key("front", Side.IN, new_osdp_key())
    assert store.osdp_key("front", Side.IN) == key  # the refused one changed nothing
    second = new_osdp_key()
    store.set_osdp_key("front", Side.IN, second, replace=True)
    store.set_osdp_key("front", Side.OUT, new_osdp_key())
    assert store.osdp_key("front", Side.IN).scbk == second  # type: ignore[union-attr]
    assert [(k.door, k.side) for k in store.osdp_keys()] == [("front", Side.IN),
                                                            ("front", Side.OUT)]
    with pytest.raises(ValueError, match="16 bytes"):
        store.set_osdp_key("garage", Side.IN, b"short")


def test_osdp_reader_keys_are_sealed_and_persist(tmp_path: Path) -> None:
    from passbridge.adapters.keystore import new_osdp_key

    db = tmp_path / "ks.sqlite3"
    scbk = new_osdp_key()
    with SqliteKeyStore(db) as store:
        store.set_osdp_key("front", Side.IN, scbk)
    raw = b"".join(p.read_bytes() for p in tmp_path.glob("ks.sqlite3*")
                   if not p.name.endswith("sealing-key"))
    assert scbk not in raw and scbk.hex().encode() not in raw
    with SqliteKeyStore(db) as again:
        assert again.osdp_key("front", Side.IN).scbk == scbk  # type: ignore[union-attr]
