"""The reader's fixed-layout shortcuts give the bytes and verdicts of the generic code.

Encoders and parsers on the tap path recognise the one layout a valid message
has and fall back to the strict TLV code otherwise; these tests hold each
shortcut to an independent generic encoding (tlv.encode_all + CommandAPDU) or
to the strict schema parser, on valid messages and on mutated ones.
"""

from __future__ import annotations

import dataclasses

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from passbridge.protocol import aliro_messages as msg
from passbridge.protocol import tlv
from passbridge.protocol.aliro_crypto import (
    LABEL_PERSISTENT,
    READER_CONTEXT,
    EphemeralKeyPool,
    Interface,
    SaltInputs,
    authentication_data,
    load_public_key,
    private_key_from_scalar,
    public_key_bytes,
)
from passbridge.protocol.aliro_reader import ReaderIdentity
from passbridge.protocol.apdu import CommandAPDU, MalformedAPDU, parse_response, split_response
from passbridge.protocol.tlv import Field, MalformedTLV

POINT = public_key_bytes(private_key_from_scalar(bytes(31) + b"\x07"))


def generic_command(ins: int, fields: list[tuple[int, bytes]]) -> bytes:
    return CommandAPDU(0x80, ins, 0, 0, tlv.encode_all(fields), 0x00).encode()


def outcome(fn: object, *args: object) -> tuple[str, object]:
    assert callable(fn)
    try:
        return "ok", fn(*args)
    except (MalformedTLV, ValueError) as exc:
        return "error", type(exc).__name__


# ---------------------------------------------------------------- encoders


@given(params=st.integers(0, 1), policy=st.integers(0, 255),
       txid=st.binary(min_size=16, max_size=16), rid=st.binary(min_size=32, max_size=32))
def test_auth0_command_matches_generic_encoding(params: int, policy: int, txid: bytes,
                                                rid: bytes) -> None:
    expected = generic_command(msg.INS_AUTH0, [
        (0x41, bytes([params])), (0x42, bytes([policy])), (0x5C, b"\x01\x00"),
        (0x87, POINT), (0x4C, txid), (0x4D, rid)])
    assert msg.auth0_command(params, policy, b"\x01\x00", POINT, txid, rid) == expected
    assert msg.Auth0Command(params, policy, b"\x01\x00", POINT, txid, rid).encode() == expected


def test_auth0_command_with_odd_sizes_takes_the_generic_path() -> None:
    expected = generic_command(msg.INS_AUTH0, [
        (0x41, b"\x01"), (0x42, b"\x01"), (0x5C, b"\x01\x00"), (0x87, POINT),
        (0x4C, bytes(8)), (0x4D, bytes(32))])
    assert msg.auth0_command(1, 1, b"\x01\x00", POINT, bytes(8), bytes(32)) == expected
    with pytest.raises(ValueError):
        msg.auth0_command(256, 1, b"\x01\x00", POINT, bytes(16), bytes(32))


@given(flag=st.booleans(), signature=st.binary(min_size=0, max_size=80))
def test_auth1_command_matches_generic_encoding(flag: bool, signature: bytes) -> None:
    expected = generic_command(msg.INS_AUTH1, [(0x41, bytes([int(flag)])), (0x9E, signature)])
    assert msg.auth1_command(flag, signature) == expected
    assert msg.Auth1Command(flag, signature).encode() == expected


@given(ciphertext=st.binary(min_size=0, max_size=255))
def test_exchange_command_matches_generic_encoding(ciphertext: bytes) -> None:
    expected = CommandAPDU(0x80, msg.INS_EXCHANGE, 0, 0, ciphertext, 0x00).encode()
    assert msg.exchange_command(ciphertext) == expected


def test_exchange_command_refuses_an_oversized_ciphertext() -> None:
    with pytest.raises(ValueError):
        msg.exchange_command(bytes(256))


def test_reader_status_plaintexts() -> None:
    assert msg.reader_status_plaintext(0x0101) == tlv.encode(0x97, b"\x01\x01")
    assert msg.reader_status_plaintext(0x0025) == tlv.encode(0x97, b"\x00\x25")
    with pytest.raises(TypeError):  # a granted flag is not a status: True would be 0001
        msg.reader_status_plaintext(True)
    with pytest.raises(ValueError):
        msg.reader_status_plaintext(0x10000)


@given(rid=st.binary(min_size=30, max_size=33), ex=st.binary(min_size=32, max_size=32),
       rx=st.binary(min_size=31, max_size=32), txid=st.binary(min_size=16, max_size=17))
def test_authentication_data_matches_generic_encoding(rid: bytes, ex: bytes, rx: bytes,
                                                      txid: bytes) -> None:
    expected = tlv.encode_all(((0x4D, rid), (0x86, ex), (0x87, rx), (0x4C, txid),
                               (0x93, READER_CONTEXT)))
    assert authentication_data(rid, ex, rx, txid, READER_CONTEXT) == expected


@given(tag=st.sampled_from([0x4D, 0x9F1F, 0x5F20]), value=st.binary(max_size=300))
def test_tlv_encode_short_form_agrees_with_long_form_rules(tag: int, value: bytes) -> None:
    encoded = tlv.encode(tag, value)
    assert tlv.split(encoded) == [(tag, value, encoded)]


# ---------------------------------------------------------------- parsers


def strict_auth0_response(data: bytes) -> tuple[bytes, bytes | None]:
    f = tlv.parse(data, (Field(0x86, (65,)), Field(0x9D, (64,), required=False)))
    load_public_key(f[0x86])
    return f[0x86], f.get(0x9D)


def shortcut_auth0_response(data: bytes) -> tuple[bytes, bytes | None]:
    point, cryptogram, key = msg.read_auth0_response(data)
    assert public_key_bytes(key) == point
    return point, cryptogram


def mutations() -> st.SearchStrategy[bytes]:
    valid = st.sampled_from([
        msg.Auth0Response(POINT, None).encode(),
        msg.Auth0Response(POINT, bytes(range(64))).encode(),
    ])

    def mutate(data: bytes, position: int, value: int, cut: int) -> bytes:
        out = bytearray(data)
        out[position % len(out)] = value
        return bytes(out[: len(out) - cut])

    return st.one_of(valid, st.builds(mutate, valid, st.integers(0, 200), st.integers(0, 255),
                                      st.sampled_from([0, 0, 1, 64])),
                     st.binary(max_size=140))


@settings(max_examples=400)
@given(data=mutations())
@pytest.mark.slow
def test_auth0_response_shortcut_agrees_with_the_strict_parser(data: bytes) -> None:
    assert outcome(shortcut_auth0_response, data) == outcome(strict_auth0_response, data)


def test_auth0_response_round_trip_and_invalid_point() -> None:
    answer = msg.Auth0Response(POINT, bytes(64))
    assert msg.parse_auth0_response(answer.encode()) == answer
    off_curve = b"\x04" + bytes(64)
    with pytest.raises(ValueError):
        msg.parse_auth0_response(msg.Auth0Response(off_curve, None).encode())


CONTENT = msg.CryptogramContent(b"\x00\x01", bytes(range(20)), bytes(range(20, 40))).encode()


@settings(max_examples=300)
@given(position=st.integers(0, 47), value=st.integers(0, 255), cut=st.sampled_from([0, 0, 3]))
@pytest.mark.slow
def test_cryptogram_content_shortcut_agrees_with_the_strict_parser(position: int, value: int,
                                                                   cut: int) -> None:
    data = bytearray(CONTENT)
    data[position] = value
    mutated = bytes(data[: len(data) - cut])

    def strict(raw: bytes) -> msg.CryptogramContent:
        f = tlv.parse(raw, (Field(0x5E, (2,)), Field(0x91, (20,)), Field(0x92, (20,))))
        return msg.CryptogramContent(f[0x5E], f[0x91], f[0x92])

    assert outcome(msg.parse_cryptogram_content, mutated) == outcome(strict, mutated)
    assert outcome(msg.check_cryptogram_content, mutated)[0] == outcome(strict, mutated)[0]


def test_select_answers_are_memoised_but_malformed_ones_always_fail() -> None:
    answer = msg.select_response_data()
    first = msg.parse_select_response(answer)
    assert msg.parse_select_response(bytes(bytearray(answer))) is first
    broken = answer[:-1]
    for _ in range(2):
        with pytest.raises(MalformedTLV):
            msg.parse_select_response(broken)
    for n in range(100):  # many distinct answers cannot grow the memo without bound
        msg.parse_select_response(msg.select_response_data(applet_type=n.to_bytes(2, "big")))
    assert len(msg._SELECT_ANSWERS) <= msg._SELECT_ANSWERS_MAX


@given(raw=st.binary(max_size=300))
def test_split_response_agrees_with_parse_response(raw: bytes) -> None:
    try:
        parsed = parse_response(raw)
    except MalformedAPDU:
        with pytest.raises(MalformedAPDU):
            split_response(raw)
        return
    assert split_response(raw) == (parsed.data, parsed.sw)


# ---------------------------------------------------------------- cached key material


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
