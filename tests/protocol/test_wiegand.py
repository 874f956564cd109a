"""Card reads from wired readers (passbridge/protocol/wiegand.py): H10301 and
34-bit framing with parity, raw bits, and every way a read is refused."""

from __future__ import annotations

import osdp
import pytest
from hypothesis import given
from hypothesis import strategies as st

from passbridge.protocol.wiegand import (
    MAX_CARD_BITS,
    OSDP_FORMAT_ASCII,
    OSDP_FORMAT_RAW_UNSPECIFIED,
    OSDP_FORMAT_RAW_WIEGAND,
    CardFormat,
    CardNumber,
    CardRejected,
    decode_card,
    decode_card_event,
    encode_card,
)


def bits_to_bytes(bits: str) -> bytes:
    """'0101...' -> MSB-first, left-justified, zero-padded bytes (OSDP's packing)."""
    padded = bits + "0" * (-len(bits) % 8)
    return int(padded, 2).to_bytes(len(padded) // 8, "big")


# H10301, facility 12, card 10001, worked by hand:
#   facility 12 = 00001100, card 10001 = 0010011100010001
#   first 12 data bits 000011000010 -> three ones -> even parity bit 1
#   last 12 data bits  011100010001 -> five ones  -> odd parity bit 0
H10301_12_10001 = "1" + "00001100" + "0010011100010001" + "0"
# 34-bit, facility 300, card 10001:
#   facility 300 = 0000000100101100 (four ones) -> even parity bit 0
#   card 10001 = 0010011100010001 (six ones) -> odd parity bit 1
W34_300_10001 = "0" + "0000000100101100" + "0010011100010001" + "1"


def test_the_osdp_format_codes_are_libosdps() -> None:
    assert OSDP_FORMAT_RAW_UNSPECIFIED == osdp.CardFormat.Unspecified
    assert OSDP_FORMAT_RAW_WIEGAND == osdp.CardFormat.Wiegand
    assert OSDP_FORMAT_ASCII == osdp.CardFormat.ASCII


def test_h10301_hand_worked_read() -> None:
    read = decode_card(bits_to_bytes(H10301_12_10001), 26)
    assert read == CardNumber(number="10001", facility=12, format="h10301", bits=26)
    assert read.describe() == "26-bit h10301 card, facility 12"
    assert "10001" not in read.describe()


def test_34_bit_hand_worked_read() -> None:
    read = decode_card(bits_to_bytes(W34_300_10001), 34, CardFormat.WIEGAND34)
    assert read == CardNumber(number="10001", facility=300, format="wiegand34", bits=34)


def test_encode_matches_the_hand_worked_frames() -> None:
    assert encode_card(10001, "h10301", facility=12).data == bits_to_bytes(H10301_12_10001)
    assert encode_card(10001, "wiegand34", facility=300).data == bits_to_bytes(W34_300_10001)


@pytest.mark.parametrize(("frame", "bits", "which"), [
    (H10301_12_10001, 26, "leading (even)"),
    (W34_300_10001, 34, "leading (even)"),
])
def test_bad_leading_parity_is_refused(frame: str, bits: int, which: str) -> None:
    flipped = ("0" if frame[0] == "1" else "1") + frame[1:]
    read = decode_card(bits_to_bytes(flipped), bits)
    assert isinstance(read, CardRejected)
    assert which in read.detail


def test_bad_trailing_parity_is_refused() -> None:
    flipped = H10301_12_10001[:-1] + "1"
    read = decode_card(bits_to_bytes(flipped), 26)
    assert read == CardRejected("h10301: bad trailing (odd) parity")


def test_auto_never_falls_back_to_raw_on_bad_parity() -> None:
    """A 26-bit read with bad parity is not read as 26 raw bits instead."""
    flipped = H10301_12_10001[:-1] + "1"
    assert isinstance(decode_card(bits_to_bytes(flipped), 26, CardFormat.AUTO), CardRejected)


def test_auto_reads_other_lengths_as_raw_bits() -> None:
    read = decode_card(bits_to_bytes("1" + "0" * 36), 37)
    assert read == CardNumber(number=str(1 << 36), facility=None, format="raw", bits=37)
    assert read.describe() == "37-bit raw card"


def test_raw_setting_reads_26_bits_as_one_number() -> None:
    read = decode_card(bits_to_bytes(H10301_12_10001), 26, CardFormat.RAW)
    assert read == CardNumber(number=str(int(H10301_12_10001, 2)), facility=None,
                              format="raw", bits=26)


@pytest.mark.parametrize(("setting", "bits", "expected"), [
    (CardFormat.H10301, 34, "34-bit read on a reader set to h10301 (26 bits)"),
    (CardFormat.WIEGAND34, 26, "26-bit read on a reader set to wiegand34 (34 bits)"),
    (CardFormat.H10301, 37, "37-bit read on a reader set to h10301 (26 bits)"),
])
def test_a_length_the_reader_is_not_set_to_is_refused(
    setting: CardFormat, bits: int, expected: str
) -> None:
    assert decode_card(bytes((bits + 7) // 8), bits, setting) == CardRejected(expected)


@pytest.mark.parametrize(("data", "bits", "expected"), [
    (b"\x01\x02\x03", 26, "card data too short: 3 bytes for 26 bits"),
    (b"", 26, "card data too short: 0 bytes for 26 bits"),
    (bits_to_bytes(H10301_12_10001) + b"\x00", 26, "card data longer than its 26 bits: 5 bytes"),
    (b"", 0, "card read with no bits"),
    (b"\x00", -3, "card read with no bits"),
    (bytes(65), MAX_CARD_BITS + 8, f"card read of 520 bits (at most {MAX_CARD_BITS})"),
])
def test_short_long_and_empty_reads_are_refused(data: bytes, bits: int, expected: str) -> None:
    assert decode_card(data, bits) == CardRejected(expected)


def test_set_padding_bits_are_garbled_data() -> None:
    data = bytearray(bits_to_bytes(H10301_12_10001))
    data[-1] |= 0x01  # bit 32 of 32: past the 26 read
    read = decode_card(bytes(data), 26)
    assert read == CardRejected("card data garbled: padding after bit 26 is not zero")


def test_unknown_setting_is_refused_not_raised() -> None:
    assert decode_card(b"\x00", 8, "wiegand99") == CardRejected(
        "unknown card format setting 'wiegand99'")


def test_facility_filter() -> None:
    data = bits_to_bytes(H10301_12_10001)
    assert isinstance(decode_card(data, 26, facility=12), CardNumber)
    assert decode_card(data, 26, facility=13) == CardRejected(
        "h10301: facility 12, the reader accepts facility 13 only")
    raw = decode_card(bits_to_bytes("1" * 37), 37, facility=12)
    assert isinstance(raw, CardRejected) and "no facility code" in raw.detail


@pytest.mark.parametrize(("event", "expected"), [
    ({"format": OSDP_FORMAT_ASCII, "length": 5, "data": b"10001"},
     "ASCII card data (deprecated in OSDP; send raw bits)"),
    ({"format": 7, "length": 26, "data": bytes(4)}, "unknown card data format 7"),
    ({"length": 26, "data": bytes(4)}, "unknown card data format None"),
    ({"format": 1, "length": "26", "data": bytes(4)}, "card read without a bit count"),
    ({"format": 1, "length": True, "data": bytes(4)}, "card read without a bit count"),
    ({"format": 1, "length": 26, "data": "abcd"}, "card read without data bytes"),
    ({"format": 1, "length": 26}, "card read without data bytes"),
])
def test_events_of_the_wrong_shape_are_refused(event: dict[str, object], expected: str) -> None:
    assert decode_card_event(event) == CardRejected(expected)


def test_event_fields_decode_back() -> None:
    card = encode_card(4242, facility=7)
    event = {"event": osdp.Event.CardRead, "reader_no": 0, **card.event_fields()}
    assert decode_card_event(event) == CardNumber("4242", 7, "h10301", 26)


def test_auto_encoding_picks_raw_for_large_numbers_and_avoids_framed_lengths() -> None:
    big = encode_card(1 << 25)  # 26 bits as written: must not go out as 26 bits
    assert big.bits == 27 and big.osdp_format == OSDP_FORMAT_RAW_UNSPECIFIED
    assert decode_card(big.data, big.bits) == CardNumber(str(1 << 25), None, "raw", 27)
    assert encode_card(70000).bits == 17


@pytest.mark.parametrize(("kwargs", "message"), [
    ({"number": 1 << 16, "card_format": "h10301"}, "16-bit card number"),
    ({"number": 1, "card_format": "h10301", "facility": 256}, "8-bit facility"),
    ({"number": 1, "card_format": "wiegand34", "facility": 1 << 16}, "16-bit facility"),
    ({"number": 8, "card_format": "raw", "bits": 3}, "does not fit"),
    ({"number": -1}, "not negative"),
    ({"number": 1, "card_format": "h10301", "bits": 34}, "has 26 bits"),
])
def test_encoding_what_a_format_cannot_carry_raises(kwargs: dict[str, object],
                                                    message: str) -> None:
    with pytest.raises(ValueError, match=message):
        encode_card(**kwargs)  # type: ignore[arg-type]


# --- properties ---------------------------------------------------------------------

framed = st.one_of(
    st.tuples(st.just(CardFormat.H10301), st.integers(0, 0xFF), st.integers(0, 0xFFFF)),
    st.tuples(st.just(CardFormat.WIEGAND34), st.integers(0, 0xFFFF), st.integers(0, 0xFFFF)),
)


@given(framed, st.sampled_from([None, "same"]))
def test_framed_round_trip(card: tuple[CardFormat, int, int], setting: str | None) -> None:
    card_format, facility, number = card
    encoded = encode_card(number, card_format, facility=facility)
    read = decode_card(encoded.data, encoded.bits,
                       card_format if setting == "same" else CardFormat.AUTO)
    assert read == CardNumber(str(number), facility, card_format.value, encoded.bits)


@given(st.integers(1, MAX_CARD_BITS).flatmap(
    lambda bits: st.tuples(st.just(bits), st.integers(0, (1 << bits) - 1))))
def test_raw_round_trip(raw: tuple[int, int]) -> None:
    bits, number = raw
    encoded = encode_card(number, CardFormat.RAW, bits=bits)
    assert decode_card(encoded.data, bits, CardFormat.RAW) == CardNumber(str(number), None,
                                                                         "raw", bits)


@given(st.integers(0, 1 << 80))
def test_auto_round_trip(number: int) -> None:
    encoded = encode_card(number)
    read = decode_card(encoded.data, encoded.bits)
    assert isinstance(read, CardNumber) and read.number == str(number)


@given(framed, st.data())
def test_any_single_bit_flip_of_a_framed_card_is_refused(
    card: tuple[CardFormat, int, int], data: st.DataObject
) -> None:
    """Every bit of H10301 and 34-bit sits under exactly one parity bit (the
    parity bits under their own), so one flipped bit always breaks parity;
    a flip in the padding is garbled data."""
    card_format, facility, number = card
    encoded = encode_card(number, card_format, facility=facility)
    position = data.draw(st.integers(0, len(encoded.data) * 8 - 1))
    value = int.from_bytes(encoded.data, "big") ^ (1 << (len(encoded.data) * 8 - 1 - position))
    flipped = value.to_bytes(len(encoded.data), "big")
    for setting in (CardFormat.AUTO, card_format):
        assert isinstance(decode_card(flipped, encoded.bits, setting), CardRejected)


@given(st.integers(1, 64).flatmap(
    lambda bits: st.tuples(st.just(bits), st.integers(0, (1 << bits) - 1),
                           st.integers(0, bits - 1))))
def test_a_single_bit_flip_of_a_raw_card_is_another_card(raw: tuple[int, int, int]) -> None:
    bits, number, position = raw
    encoded = encode_card(number, CardFormat.RAW, bits=bits)
    value = int.from_bytes(encoded.data, "big") ^ (1 << (len(encoded.data) * 8 - 1 - position))
    read = decode_card(value.to_bytes(len(encoded.data), "big"), bits, CardFormat.RAW)
    assert isinstance(read, CardNumber) and read.number != str(number)


@given(st.binary(max_size=80), st.integers(-8, MAX_CARD_BITS + 16),
       st.sampled_from(list(CardFormat)), st.one_of(st.none(), st.integers(0, 0xFFFF)))
def test_decode_never_raises(data: bytes, bits: int, setting: CardFormat,
                             facility: int | None) -> None:
    assert isinstance(decode_card(data, bits, setting, facility=facility),
                      CardNumber | CardRejected)
