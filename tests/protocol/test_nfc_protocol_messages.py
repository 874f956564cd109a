"""NFC message and key-schedule pieces against the layouts of protocols/nfc/README.md.

The encoders are the generic TLV code (the fixed-layout shortcuts that sat
beside them went in issue 9); these tests hold the pieces whose layout the
README spells out to those bytes.
"""

from __future__ import annotations

import dataclasses

import pytest

from passbridge.protocol import aliro_messages as msg
from passbridge.protocol import tlv
from passbridge.protocol.aliro_crypto import (
    LABEL_PERSISTENT,
    EphemeralKeyPool,
    Interface,
    SaltInputs,
    private_key_from_scalar,
    public_key_bytes,
)
from passbridge.protocol.aliro_reader import Failed, ReaderIdentity, ReaderTransaction, SendCommand
from passbridge.protocol.tlv import MalformedTLV

POINT = public_key_bytes(private_key_from_scalar(bytes(31) + b"\x07"))


def test_reader_status_plaintexts() -> None:
    assert msg.reader_status_plaintext(0x0101) == tlv.encode(0x97, b"\x01\x01")
    assert msg.reader_status_plaintext(0x0025) == tlv.encode(0x97, b"\x00\x25")
    with pytest.raises(TypeError):  # a granted flag is not a status: True would be 0001
        msg.reader_status_plaintext(True)
    with pytest.raises(ValueError):
        msg.reader_status_plaintext(0x10000)


def test_auth0_response_round_trip_and_invalid_point() -> None:
    answer = msg.Auth0Response(POINT, bytes(64))
    assert msg.parse_auth0_response(answer.encode()) == answer
    off_curve = b"\x04" + bytes(64)
    with pytest.raises(ValueError):
        msg.parse_auth0_response(msg.Auth0Response(off_curve, None).encode())



def salt_inputs(**changes: object) -> SaltInputs:
    base = SaltInputs(reader_public_x=b"X" * 32, reader_id=b"R" * 32,
                      interface=Interface.NFC, version=b"\x01\x00",
                      reader_ephemeral_x=b"E" * 32, transaction_id=b"T" * 16,
                      command_parameters=1, authentication_policy=1, select_a5=b"\xa5\x00")
    return dataclasses.replace(base, **changes)  # type: ignore[arg-type]


def test_salt_layout_and_value_semantics() -> None:
    s = salt_inputs()
    assert s.salt(LABEL_PERSISTENT, b"C" * 32) == (
        b"X" * 32 + LABEL_PERSISTENT + b"R" * 32 + b"\x5e" + b"\x5c\x02\x01\x00"
        + b"E" * 32 + b"T" * 16 + b"\x01\x01" + b"\xa5\x00" + b"C" * 32)
    changed = salt_inputs(command_parameters=0, interface=Interface.BLE)
    assert changed != s and salt_inputs() == s and hash(salt_inputs()) == hash(s)
    assert changed.salt(b"L") == b"X" * 32 + b"L" + b"R" * 32 + b"\xc3" + b"\x5c\x02\x01\x00" \
        + b"E" * 32 + b"T" * 16 + b"\x00\x01" + b"\xa5\x00"
    with pytest.raises(dataclasses.FrozenInstanceError):
        s.version = b"\x00\x07"  # type: ignore[misc]


def test_reader_identity_caches_its_encodings() -> None:
    key = private_key_from_scalar(bytes(31) + b"\x05")
    identity = ReaderIdentity(key, b"G" * 16, b"S" * 16)
    assert identity.public_key == public_key_bytes(key)
    assert identity.public_x == public_key_bytes(key)[1:33]
    assert identity.reader_id == b"G" * 16 + b"S" * 16
    assert identity.public_key is identity.public_key


def test_pool_hands_out_each_key_once_with_its_point() -> None:
    pool = EphemeralKeyPool(size=3)
    pairs = [pool.take_pair() for _ in range(3)]
    assert len(pool) == 0
    assert all(public_key_bytes(key) == point for key, point in pairs)
    assert len({point for _, point in pairs}) == 3
    key, point = pool.take_pair()  # empty pool: generated on the spot
    assert public_key_bytes(key) == point


def test_auth0_and_auth1_commands_have_the_readme_layout() -> None:
    txid, rid = bytes(range(16)), bytes(range(32))
    assert msg.auth0_command(1, 1, b"\x01\x00", POINT, txid, rid) == (
        bytes.fromhex("80800000814101014201015c020100") + b"\x87\x41" + POINT
        + b"\x4c\x10" + txid + b"\x4d\x20" + rid + b"\x00")
    signature = bytes(range(64))
    assert msg.auth1_command(True, signature) == (
        bytes.fromhex("80810000454101019e40") + signature + b"\x00")
    assert msg.exchange_command(bytes(20)) == bytes.fromhex("80c9000014") + bytes(20) + b"\x00"
    with pytest.raises(ValueError):
        msg.exchange_command(bytes(256))


# --- per-reader AUTH0 template and SELECT answer (issue 9, the NFC benchmark) ---------------


@pytest.mark.parametrize("reader_id", [bytes(range(32)), bytes(32), b"\xff" * 32,
                                       b"\x00\xff" * 16],
                         ids=["counting", "zeros", "ones", "alternating"])
@pytest.mark.parametrize("parameters", [0x00, 0x01])
def test_auth0_template_gives_the_bytes_of_the_encoder(reader_id: bytes, parameters: int) -> None:
    template = msg.auth0_template(parameters, 0x01, b"\x01\x00", reader_id)
    for ephemeral, txid in ((POINT, bytes(range(16))), (bytes(65), bytes(16)),
                            (b"\xff" * 65, b"\xff" * 16)):
        assert template.command(ephemeral, txid) == msg.auth0_command(
            parameters, 0x01, b"\x01\x00", ephemeral, txid, reader_id)
    with pytest.raises(ValueError):
        template.command(POINT[:64], bytes(16))
    with pytest.raises(ValueError):
        template.command(POINT, bytes(17))


def test_reader_sends_auth0_from_its_identity_template() -> None:
    identity = ReaderIdentity(private_key_from_scalar(bytes(31) + b"\x05"), b"G" * 16, b"S" * 16)
    for prefer_fast, parameters in ((True, 0x01), (False, 0x00)):
        ephemeral = private_key_from_scalar(bytes(31) + b"\x09")
        reader = ReaderTransaction(identity, prefer_fast=prefer_fast,
                                   ephemeral_private_key=ephemeral)
        reader.start()
        event = reader.receive(msg.select_response_data() + b"\x90\x00")
        assert isinstance(event, SendCommand)
        assert event.apdu == msg.auth0_command(
            parameters, 0x01, b"\x01\x00", public_key_bytes(ephemeral),
            reader.transaction_id, identity.reader_id)
    assert identity.auth0_templates is identity.auth0_templates  # made once per identity


def test_select_answers_reuse_only_the_very_same_bytes() -> None:
    answers = msg.SelectAnswers()
    data = msg.select_response_data()
    first = answers.parse(data)
    assert first == msg.parse_select_response(data)
    assert answers.parse(bytes(data)) is first  # equal bytes: the kept parse
    newer = msg.select_response_data(versions=(b"\x01\x00", b"\x02\x00"))
    assert answers.parse(newer).versions == (b"\x01\x00", b"\x02\x00")
    with pytest.raises(MalformedTLV):  # a malformed answer is parsed (and refused) every time
        answers.parse(data[:-1])
    assert answers.parse(newer).versions == (b"\x01\x00", b"\x02\x00")


def test_a_reader_refuses_a_bad_select_after_a_good_one() -> None:
    identity = ReaderIdentity(private_key_from_scalar(bytes(31) + b"\x05"), b"G" * 16, b"S" * 16)
    good = ReaderTransaction(identity)
    good.start()
    assert isinstance(good.receive(msg.select_response_data() + b"\x90\x00"), SendCommand)
    other_version = ReaderTransaction(identity)
    other_version.start()
    event = other_version.receive(
        msg.select_response_data(versions=(b"\x00\x07",)) + b"\x90\x00")
    assert isinstance(event, Failed) and event.reason == "unsupported_version"
    truncated = ReaderTransaction(identity)
    truncated.start()
    event = truncated.receive(msg.select_response_data()[:-1] + b"\x90\x00")
    assert isinstance(event, Failed) and event.reason == "malformed"
