"""Reader <-> phone in memory: STANDARD, FAST, fall-back, misbehaviours, parsing edges."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass, field

import pytest

from passbridge.bridge.reader_driver import InMemoryCredentials, reader_steps, run_reader
from passbridge.protocol import tlv
from passbridge.protocol.aliro_crypto import (
    EphemeralKeyPool,
    Interface,
    SecureChannel,
    generate_ephemeral,
    key_slot,
    public_key_bytes,
    sign_raw,
    verify_raw,
)
from passbridge.protocol.aliro_phone import PhoneApplet, PhoneMisbehaviour
from passbridge.protocol.aliro_reader import (
    TRANSITIONS,
    Authenticated,
    Event,
    Failed,
    Finished,
    NeedCredential,
    NeedFastKeys,
    ReaderIdentity,
    ReaderTransaction,
    SendCommand,
    State,
)
from passbridge.protocol.apdu import MalformedAPDU, parse_command, parse_response
from passbridge.protocol.exchange_status import ReaderStatus
from passbridge.protocol.tlv import Field, MalformedTLV


@dataclass
class Site:
    identity: ReaderIdentity = field(default_factory=lambda: ReaderIdentity(
        generate_ephemeral(), bytes(range(16)), bytes(range(16, 32))))
    credentials: InMemoryCredentials = field(default_factory=InMemoryCredentials)


@dataclass
class Tap:
    events: list[Event]
    commands: list[bytes]
    phone: PhoneApplet

    @property
    def outcome(self) -> Event:
        return self.events[-1]

    @property
    def authenticated(self) -> Authenticated | None:
        found = [e for e in self.events if isinstance(e, Authenticated)]
        return found[0] if found else None


def tap(site: Site, phone: PhoneApplet, *, status: int = ReaderStatus.STATE_UNSECURED,
        prefer_fast: bool = True,
        interface: Interface = Interface.NFC) -> Tap:
    """One tap through the bridge's reader driver, as the NFC and BLE paths run it."""
    reader = ReaderTransaction(site.identity, prefer_fast=prefer_fast, interface=interface)
    commands: list[bytes] = []
    events: list[Event] = []

    def exchange(command: bytes) -> bytes:
        commands.append(command)
        return phone.process(command)

    def report(event: Authenticated | Failed) -> int | None:
        events.append(event)
        return status if isinstance(event, Authenticated) else None

    outcome = run_reader(reader_steps(reader, site.credentials), exchange, report)
    if outcome.failure is not None and outcome.authenticated is None:
        commands.pop()  # the closing CONTROL FLOW
    elif outcome.failure is not None:
        events.append(outcome.failure)
    elif outcome.finished:
        events.append(Finished())
    return Tap(events, commands, phone)


def new_phone(site: Site, *, enrol: bool = True, store: dict[bytes, bytes] | None = None,
              **kwargs: object) -> PhoneApplet:
    key = generate_ephemeral()
    phone = PhoneApplet(key, site.identity.public_key, kpersistent_store=store,
                        **kwargs)  # type: ignore[arg-type]
    if enrol:
        site.credentials.enrol("cred-1", public_key_bytes(key))
    return phone


def test_standard_then_fast_then_revocation() -> None:
    site = Site()
    phone = new_phone(site)

    first = tap(site, phone)
    assert isinstance(first.outcome, Finished)
    assert first.authenticated is not None and first.authenticated.flow == "standard"
    assert first.authenticated.credential_id == "cred-1"
    assert len(first.commands) == 4  # SELECT, AUTH0, AUTH1, EXCHANGE
    assert phone.last_door_status is True and phone.last_flow == "standard"
    assert len(list(site.credentials.persistent_keys())) == 1

    second = tap(site, phone, status=ReaderStatus.INVALID_ACCESS_RIGHTS)
    assert isinstance(second.outcome, Finished)
    assert second.authenticated is not None and second.authenticated.flow == "fast"
    assert second.authenticated.credential_id == "cred-1"
    assert len(second.commands) == 3  # SELECT, AUTH0 with cryptogram, EXCHANGE
    assert phone.last_door_status is False and phone.last_flow == "fast"
    assert second.authenticated.transaction_id != first.authenticated.transaction_id

    site.credentials.revoke("cred-1")
    third = tap(site, phone)
    assert isinstance(third.outcome, Failed)
    assert third.outcome.reason == "unknown_credential"
    assert third.authenticated is None


def test_fast_falls_back_to_standard_in_the_same_tap_when_reader_forgot_the_key() -> None:
    site = Site()
    phone = new_phone(site)
    tap(site, phone)
    site.credentials.forget_persistent_keys()
    again = tap(site, phone)
    assert again.authenticated is not None and again.authenticated.flow == "standard"
    assert len(again.commands) == 4
    assert isinstance(again.outcome, Finished)
    # ... and the fresh persistent key makes the next tap FAST again.
    assert tap(site, phone).authenticated.flow == "fast"  # type: ignore[union-attr]


def test_reader_that_does_not_prefer_fast_always_runs_standard() -> None:
    site = Site()
    phone = new_phone(site)
    tap(site, phone)
    again = tap(site, phone, prefer_fast=False)
    assert again.authenticated is not None and again.authenticated.flow == "standard"
    assert parse_command(again.commands[1]).data[:3] == bytes.fromhex("410100")


def test_ble_interface_byte_separates_key_schedules() -> None:
    site = Site()
    phone = new_phone(site)  # the phone speaks NFC
    result = tap(site, phone, interface=Interface.BLE)
    assert isinstance(result.outcome, Failed)
    assert result.outcome.reason == "decrypt_failed"


def test_identity_is_never_sent_before_the_reader_proves_itself() -> None:
    site = Site()
    phone = new_phone(site)
    credential = phone.credential_public_key
    reader = ReaderTransaction(site.identity)
    seen = phone.process(reader.start())
    auth0 = reader.receive(seen)
    assert isinstance(auth0, SendCommand)
    seen += phone.process(auth0.apdu)
    for token in (credential, credential[1:33], key_slot(credential)):
        assert token not in seen


@pytest.mark.parametrize(("misbehaviour", "reason"), [
    (PhoneMisbehaviour(bad_signature=True), "bad_signature"),
    (PhoneMisbehaviour(wrong_transaction_id=True), "bad_signature"),
    (PhoneMisbehaviour(wrong_credential_key=True), "unknown_credential"),
    (PhoneMisbehaviour(trust_wrong_reader_key=True), "status_word"),
    (PhoneMisbehaviour(truncate_responses=True), "malformed"),
    (PhoneMisbehaviour(wrong_counter=True), "decrypt_failed"),
    (PhoneMisbehaviour(extra_tag=True), "malformed"),
    (PhoneMisbehaviour(error_status=True), "status_word"),
    (PhoneMisbehaviour(key_slot_only=True), "malformed"),
])
def test_each_misbehaviour_fails_cleanly(misbehaviour: PhoneMisbehaviour, reason: str) -> None:
    site = Site()
    phone = new_phone(site, misbehaviour=misbehaviour)
    result = tap(site, phone)
    assert isinstance(result.outcome, Failed), result.events
    assert result.outcome.reason == reason, result.outcome
    assert result.authenticated is None
    assert list(site.credentials.persistent_keys()) == []
    assert phone.last_door_status is None


def test_corrupt_cryptogram_falls_back_and_still_authenticates_honestly() -> None:
    site = Site()
    store: dict[bytes, bytes] = {}
    honest = new_phone(site, store=store)
    tap(site, honest)
    corrupt = PhoneApplet(honest._credential, site.identity.public_key,
                          kpersistent_store=store,
                          misbehaviour=PhoneMisbehaviour(corrupt_cryptogram=True))
    result = tap(site, corrupt)
    assert result.authenticated is not None and result.authenticated.flow == "standard"


def test_one_byte_signaling_bitmap_is_accepted() -> None:
    site = Site()
    phone = new_phone(site, signaling_bitmap=b"\x00")
    result = tap(site, phone, prefer_fast=False)
    assert result.authenticated is not None


def test_after_failure_the_reader_stays_failed() -> None:
    site = Site()
    reader = ReaderTransaction(site.identity)
    reader.start()
    failed = reader.receive(b"\x6a\x82")
    assert isinstance(failed, Failed) and failed.reason == "status_word"
    again = reader.receive(new_phone(site).process(bytes.fromhex("00a4040009a000000909acce550100")))
    assert isinstance(again, Failed) and again.reason == "out_of_order"
    assert reader.control_flow() == bytes.fromhex("803c000006410100420100")
    with pytest.raises(RuntimeError):
        reader.door_status(ReaderStatus.STATE_UNSECURED)


def test_receive_before_start_is_out_of_order() -> None:
    site = Site()
    event = ReaderTransaction(site.identity).receive(b"\x90\x00")
    assert isinstance(event, Failed) and event.reason == "out_of_order"


def test_reader_refuses_unsupported_version() -> None:
    site = Site()
    reader = ReaderTransaction(site.identity)
    reader.start()
    answer = tlv.encode(0x6F, tlv.encode(0x84, bytes.fromhex("A000000909ACCE5501")) + tlv.encode(
        0xA5, tlv.encode(0x80, bytes(2)) + tlv.encode(0x5C, bytes.fromhex("0007")))) + b"\x90\x00"
    event = reader.receive(answer)
    assert isinstance(event, Failed) and event.reason == "unsupported_version"


def test_injected_ephemeral_key_and_pool() -> None:
    site = Site()
    pool = EphemeralKeyPool(size=2)
    assert len(pool) == 2
    reader = ReaderTransaction(site.identity, key_pool=pool)
    assert len(pool) == 1
    phone = new_phone(site)
    auth0 = reader.receive(phone.process(reader.start()))
    assert isinstance(auth0, SendCommand)
    pool.refill()
    assert len(pool) == 2


# ---------------------------------------------------------------- phone status words


SELECT = bytes.fromhex("00a4040009a000000909acce550100")


@pytest.mark.parametrize(("commands", "sw"), [
    ([bytes.fromhex("00a4040009a000000909acce550200")], "6a82"),  # other AID
    ([bytes.fromhex("80800000")], "6985"),  # AUTH0 before SELECT
    ([SELECT, bytes.fromhex("80810000024101")], "6985"),  # AUTH1 before AUTH0
    ([SELECT, bytes.fromhex("80c90000000002aabb")], "6700"),  # extended length
    ([SELECT, bytes.fromhex("80c90000021234")], "6985"),  # EXCHANGE before authentication
    ([SELECT, bytes.fromhex("8080000003410100")], "6a80"),  # AUTH0 missing fields
    ([SELECT, bytes.fromhex("80800100")], "6a86"),  # P1 set
    ([SELECT, bytes.fromhex("80ff0000")], "6d00"),
    ([SELECT, bytes.fromhex("10800000")], "6e00"),
    ([SELECT, bytes.fromhex("808000000541")], "6700"),  # truncated body
    ([b"\x80"], "6700"),
])
def test_phone_answers_error_status_words(commands: list[bytes], sw: str) -> None:
    phone = PhoneApplet(generate_ephemeral(), public_key_bytes(generate_ephemeral()))
    answer = b""
    for command in commands:
        answer = phone.process(command)
    assert answer.hex() == sw


def test_phone_rejects_auth0_with_point_off_the_curve() -> None:
    site = Site()
    phone = new_phone(site)
    reader = ReaderTransaction(site.identity)
    auth0 = reader.receive(phone.process(reader.start()))
    assert isinstance(auth0, SendCommand)
    bad = bytearray(auth0.apdu)
    key_at = bad.index(bytes.fromhex("8741")) + 2
    bad[key_at + 64] ^= 0x01  # last byte of y: no longer on P-256
    assert phone.process(bytes(bad)).hex() == "6a80"


def test_phone_rejects_exchange_with_wrong_key() -> None:
    site = Site()
    phone = new_phone(site)
    reader = ReaderTransaction(site.identity, prefer_fast=False)
    event = reader.receive(phone.process(reader.start()))
    while isinstance(event, SendCommand):
        event = reader.receive(phone.process(event.apdu))
    assert isinstance(event, NeedCredential)
    assert isinstance(reader.credential_found("cred-1"), Authenticated)
    forged = SecureChannel(send_key=bytes(32), receive_key=bytes(32), is_reader=True)
    exchange = bytes.fromhex("80c90000") + bytes([20]) + forged.encrypt(
        bytes.fromhex("97020100")) + b"\x00"
    assert phone.process(exchange).hex() == "6982"
    assert phone.last_door_status is None


# ---------------------------------------------------------------- TLV and APDU units


def test_tlv_rejects_structural_defects() -> None:
    schema = (Field(0x41, (1,)), Field(0x42, (1,), required=False), Field(0x43, (2,)))
    assert tlv.parse(bytes.fromhex("4101004302aabb"), schema) == {0x41: b"\x00", 0x43: b"\xaa\xbb"}
    for bad in ("410100", "41010041010043020000", "4302000041010", "4102000043020000",
                "4101004302aa", "43020000410100", "410100420100420100430200", "4101004302000044",
                "41810100430200", "4101004380", "41010043820002aabb", "00"):
        with pytest.raises(MalformedTLV):
            tlv.parse(bytes.fromhex(bad) if len(bad) % 2 == 0 else bytes.fromhex(bad + "0"),
                      schema)


def test_tlv_long_lengths_round_trip() -> None:
    value = bytes(300)
    encoded = tlv.encode(0x7F66, value)
    assert encoded[:5] == bytes.fromhex("7f66820" + "12c")[:5]
    assert tlv.split(encoded) == [(0x7F66, value, encoded)]
    assert tlv.split(tlv.encode(0x41, bytes(200)))[0][1] == bytes(200)


def test_apdu_parsing_limits() -> None:
    assert parse_command(bytes.fromhex("80c9000002aabb00")).data == b"\xaa\xbb"
    assert parse_command(bytes.fromhex("80c90000")).data == b""
    for bad in ("80c9", "80c9000003aabb", "80c9000001aabbcc"):
        with pytest.raises(MalformedAPDU):
            parse_command(bytes.fromhex(bad))
    with pytest.raises(MalformedAPDU):
        parse_response(b"\x90")
    with pytest.raises(MalformedAPDU):
        parse_response(bytes(300))


def test_raw_signatures() -> None:
    key = generate_ephemeral()
    pub = public_key_bytes(key)
    sig = sign_raw(key, b"data")
    assert len(sig) == 64 and verify_raw(pub, sig, b"data")
    assert sign_raw(key, b"data", deterministic=True) == sign_raw(key, b"data", deterministic=True)
    assert not verify_raw(pub, sig, b"other")
    assert not verify_raw(pub, sig[:-1], b"data")
    assert not verify_raw(pub, bytes(64), b"data")
    assert not verify_raw(pub, b"\xff" * 64, b"data")
    assert not verify_raw(b"\x04" + bytes(64), sig, b"data")


def test_reader_moves_only_along_its_transition_table() -> None:
    """STANDARD then FAST: every state the reader passes through is a step of
    TRANSITIONS, and a call the table does not list is refused."""
    site = Site()
    phone = new_phone(site)
    walks = []
    for _ in range(2):
        reader = ReaderTransaction(site.identity)
        seen = [reader.state]
        with pytest.raises(RuntimeError):
            reader.door_status(ReaderStatus.STATE_UNSECURED)  # not before authentication
        command = reader.start()
        seen.append(reader.state)
        event = reader.receive(phone.process(command))
        seen.append(reader.state)
        while isinstance(event, SendCommand):
            event = reader.receive(phone.process(event.apdu))
            seen.append(reader.state)
        if isinstance(event, NeedFastKeys):  # the second tap: the phone holds a key
            event = reader.fast_keys_found(site.credentials.persistent_keys())
            seen.append(reader.state)
        assert isinstance(event, NeedCredential)
        with pytest.raises(RuntimeError):
            reader.door_status(ReaderStatus.STATE_UNSECURED)  # not before the answer
        event = reader.credential_found("cred-1")
        seen.append(reader.state)
        assert isinstance(event, Authenticated)
        if event.kpersistent is not None:
            site.credentials.remember_persistent_key("cred-1", event.public_key,
                                                     event.kpersistent)
        command = reader.door_status(ReaderStatus.STATE_UNSECURED)
        seen.append(reader.state)
        reader.receive(phone.process(command))
        seen.append(reader.state)
        steps = set(zip(seen, seen[1:], strict=False))
        allowed = {(before, after) for (before, _input), after in TRANSITIONS.items()}
        assert steps <= allowed, steps - allowed
        walks.append(seen)
    assert walks[0] == [State.NEW, State.SELECT_SENT, State.AUTH0_SENT, State.AUTH1_SENT,
                        State.CREDENTIAL_ASKED, State.AUTHENTICATED, State.EXCHANGE_SENT,
                        State.FINISHED]
    assert walks[1] == [State.NEW, State.SELECT_SENT, State.AUTH0_SENT, State.FAST_KEYS_ASKED,
                        State.CREDENTIAL_ASKED, State.AUTHENTICATED, State.EXCHANGE_SENT,
                        State.FINISHED]
    assert State.AUTH1_SENT in walks[0] and State.AUTH1_SENT not in walks[1]  # FAST skips AUTH1
    assert walks[1][-1] is State.FINISHED
    with pytest.raises(RuntimeError):
        reader.start()  # FINISHED has no way out


def test_receive_calls_nothing_the_key_store_answers_between_the_steps() -> None:
    """Sans-I/O: the transaction holds no directory. It asks whether a key is
    enrolled (NeedCredential) and the caller's None fails the tap; a STANDARD
    tap hands its Kpersistent out instead of storing it."""
    site = Site()
    phone = new_phone(site)
    reader = ReaderTransaction(site.identity)
    event = reader.receive(phone.process(reader.start()))
    while isinstance(event, SendCommand):
        event = reader.receive(phone.process(event.apdu))
    assert event == NeedCredential(phone.credential_public_key, "standard")
    with pytest.raises(RuntimeError):
        reader.door_status(ReaderStatus.STATE_UNSECURED)  # the key is not vouched for yet
    refused = reader.credential_found(None)
    assert isinstance(refused, Failed) and refused.reason == "unknown_credential"
    assert reader.authenticated is None and reader.done

    again = ReaderTransaction(site.identity)
    event = again.receive(phone.process(again.start()))
    assert isinstance(event, SendCommand)
    event = again.receive(phone.process(event.apdu))
    assert event == NeedFastKeys()  # the phone kept a key from the first tap
    event = again.fast_keys_found(iter(()))  # the reader holds none: fall back in the tap
    assert isinstance(event, SendCommand) and event.apdu[:2] == b"\x80\x81"  # AUTH1
    event = again.receive(phone.process(event.apdu))
    assert isinstance(event, NeedCredential)
    found = again.credential_found("cred-1")
    assert isinstance(found, Authenticated) and found.kpersistent is not None
    assert found.kpersistent == again.keys.kpersistent
    assert "kpersistent" not in repr(found)  # a secret: never in a log line
    assert list(site.credentials.persistent_keys()) == []  # nothing stored behind our back


def test_fast_keys_are_pulled_from_the_caller_one_by_one_at_most_the_bound() -> None:
    """The caller's candidates are taken lazily in fast_keys_found (none in
    receive), at most fast_trials of them; a key past the bound is a STANDARD tap."""
    site = Site()
    phone = new_phone(site)
    tap(site, phone)  # STANDARD: both sides hold a key now
    (held,) = site.credentials.persistent_keys()
    pulled: list[int] = []

    def candidates(decoys: int) -> Iterator[tuple[str, bytes, bytes]]:
        for n in range(decoys):
            pulled.append(n)
            yield f"decoy-{n}", held[1], bytes(32)
        pulled.append(decoys)
        yield held

    for trials, decoys, flow in ((4, 2, "fast"), (2, 2, "standard")):
        pulled.clear()
        reader = ReaderTransaction(site.identity, fast_trials=trials)
        event = reader.receive(phone.process(reader.start()))
        assert isinstance(event, SendCommand)
        assert reader.receive(phone.process(event.apdu)) == NeedFastKeys()
        assert pulled == []
        event = reader.fast_keys_found(candidates(decoys))
        assert len(pulled) == min(trials, decoys + 1) == reader.fast_keys_tried
        if flow == "fast":
            assert event == NeedCredential(phone.credential_public_key, "fast")
        else:
            assert isinstance(event, SendCommand)  # AUTH1: the fall-back in the same tap


def test_a_key_store_failure_while_fast_keys_are_pulled_fails_the_tap() -> None:
    site = Site()
    phone = new_phone(site)
    tap(site, phone)  # the phone holds a key: its next tap offers a cryptogram

    def broken() -> Iterator[tuple[str, bytes, bytes]]:
        raise OSError("key store unavailable")
        yield  # pragma: no cover

    reader = ReaderTransaction(site.identity)
    event = reader.receive(phone.process(reader.start()))
    assert isinstance(event, SendCommand)
    assert reader.receive(phone.process(event.apdu)) == NeedFastKeys()
    failed = reader.fast_keys_found(broken())
    assert isinstance(failed, Failed) and failed.reason == "internal"
    assert reader.done and reader.authenticated is None
    with pytest.raises(RuntimeError):
        reader.door_status(ReaderStatus.STATE_UNSECURED)
