"""The EXCHANGE reader status: one table, values from the public Aliro lists.

The independent phone (a port of NXP's aliro-actuator user device) accepts
failure codes 0x0001-0x0026 and success codes 0x0100-0x0182 that its list
names, and answers anything else with 67 01 and the end of its session.
"""

from __future__ import annotations

import re

import pytest

from passbridge.bridge.reader_driver import InMemoryCredentials, settle
from passbridge.core.model import REASON_RESULT, Reason
from passbridge.protocol.aliro_crypto import generate_ephemeral, public_key_bytes
from passbridge.protocol.aliro_phone import PhoneApplet
from passbridge.protocol.aliro_reader import (
    Authenticated,
    Failed,
    Finished,
    ReaderIdentity,
    ReaderTransaction,
    SendCommand,
)
from passbridge.protocol.exchange_status import (
    EXCHANGE_STATUS,
    FAILURE_STATUSES,
    PUBLIC_STATUSES,
    SUCCESS_STATUSES,
    ReaderStatus,
    exchange_status,
    is_success,
)
from tests.conftest import shared_path

# The values of the public lists, written out independently of the enum.
PUBLIC_FAILURES = {0x0001, 0x0002, 0x0003, 0x0004, 0x0006, 0x0007, 0x0020, 0x0021, 0x0022,
                   0x0023, 0x0025, 0x0026}
PUBLIC_SUCCESSES = {0x0100, 0x0101, 0x0102, 0x0180, 0x0181, 0x0182}


def rules_reason_table() -> dict[str, str]:
    """reason -> result, read from the table in rules.md section 5."""
    text = shared_path("spec", "rules.md").read_text()
    table: dict[str, str] = {}
    row = re.compile(r"\|\s*(`[a-z_]+`(?:,\s*`[a-z_]+`)*)\s*\|\s*(granted|denied|pending)\s*\|")
    for line in text.splitlines():
        match = row.fullmatch(line.strip())
        if match:
            for reason in re.findall(r"`([a-z_]+)`", match.group(1)):
                table[reason] = match.group(2)
    return table


def test_the_lists_are_the_public_ones() -> None:
    assert set(FAILURE_STATUSES) == PUBLIC_FAILURES
    assert set(SUCCESS_STATUSES) == PUBLIC_SUCCESSES
    assert all(0x0001 <= s <= 0x0026 for s in FAILURE_STATUSES)
    assert all(0x0100 <= s <= 0x0182 for s in SUCCESS_STATUSES)


def test_every_reason_of_rules_md_maps_to_a_listed_value_of_its_class() -> None:
    reasons = rules_reason_table()
    assert len(reasons) == len(Reason) == 25
    assert reasons == {r.value: REASON_RESULT[r].value for r in Reason}
    assert set(EXCHANGE_STATUS) == set((result, reason) for reason, result in reasons.items())
    for reason, result in reasons.items():
        status = EXCHANGE_STATUS[(result, reason)]
        assert status in PUBLIC_STATUSES, reason
        if result == "denied":
            assert status in PUBLIC_FAILURES, reason
        else:
            assert status in PUBLIC_SUCCESSES, reason
        assert exchange_status(result, reason) == status


def test_the_choices_a_phone_sees() -> None:
    # An opened door is no longer secured: 0101, not 0100 as before.
    assert exchange_status("granted", "access_granted") == 0x0101
    assert exchange_status("granted", "door_unlocked") == 0x0101
    # The card step of two-factor entry: accepted, the door stays secured.
    assert exchange_status("pending", "pin_required") == 0x0100
    assert exchange_status("denied", "door_locked") == 0x0025
    assert exchange_status("denied", "lockdown") == 0x0025
    assert exchange_status("denied", "no_access") == 0x0025
    assert exchange_status("denied", "locked_out") == 0x0025
    assert exchange_status("denied", "unknown_credential") == 0x0001
    assert exchange_status("denied", "internal_error") == 0x0026
    assert exchange_status("denied", "token_invalid") == 0x0026


def test_an_unknown_decision_never_reads_as_a_success() -> None:
    assert exchange_status("denied", "some_new_reason") in PUBLIC_FAILURES
    assert exchange_status("bogus", "access_granted") in PUBLIC_FAILURES
    assert exchange_status("granted", "pin_required") in PUBLIC_SUCCESSES  # class of the result
    assert not is_success(0x0000)


# --------------------------------------------------------------------------- the phone


def authenticated_tap() -> tuple[ReaderTransaction, PhoneApplet]:
    identity = ReaderIdentity(generate_ephemeral(), b"G" * 16, b"S" * 16)
    key = generate_ephemeral()
    credentials = InMemoryCredentials({public_key_bytes(key): "cred-1"})
    phone = PhoneApplet(key, identity.public_key)
    reader = ReaderTransaction(identity)
    event = reader.receive(phone.process(reader.start()))
    while isinstance(event, SendCommand):
        event = reader.receive(phone.process(event.apdu))
    assert isinstance(settle(reader, event, credentials), Authenticated)
    return reader, phone


@pytest.mark.parametrize("status", sorted(PUBLIC_FAILURES | PUBLIC_SUCCESSES))
def test_the_phone_shows_every_listed_status(status: int) -> None:
    reader, phone = authenticated_tap()
    assert phone.process(reader.door_status(status)) == b"\x90\x00"
    assert phone.last_reader_status == status
    assert phone.last_door_status is (status >= 0x0100)


@pytest.mark.parametrize("status", [0x0000, 0x0005, 0x0024, 0x0027, 0x00FF, 0x0103, 0x0183,
                                    0x0200, 0x9000, 0xFFFF])
def test_the_phone_refuses_a_status_outside_the_lists(status: int) -> None:
    reader, phone = authenticated_tap()
    answer = phone.process(reader.door_status(status))
    assert answer == b"\x67\x01"  # command not compliant
    assert phone.last_reader_status == status
    assert phone.last_door_status is None  # it showed nothing
    final = reader.receive(answer)
    assert isinstance(final, Failed) and final.reason == "status_word"
    # The session is over: nothing but a new SELECT is taken.
    assert phone.process(bytes.fromhex("80800000")) == b"\x69\x85"
    assert phone.process(reader.control_flow()) == b"\x69\x85"


def test_after_a_refusal_a_new_tap_works() -> None:
    reader, phone = authenticated_tap()
    assert phone.process(reader.door_status(0x0000)) == b"\x67\x01"
    assert phone.process(bytes.fromhex("00a4040009a000000909acce550100"))[-2:] == b"\x90\x00"


def test_reader_status_values_are_two_bytes() -> None:
    reader, _ = authenticated_tap()
    with pytest.raises(TypeError):
        reader.door_status(True)  # a granted flag is not a status (True would send 0001)
    assert isinstance(ReaderStatus.STATE_UNSECURED, int)


def test_finished_after_an_accepted_status() -> None:
    reader, phone = authenticated_tap()
    final = reader.receive(phone.process(reader.door_status(exchange_status("denied",
                                                                            "door_locked"))))
    assert isinstance(final, Finished)
    assert phone.last_door_status is False and phone.last_reader_status == 0x0025
