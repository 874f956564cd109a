"""Card reads from a wired reader, sans-I/O: raw Wiegand bits -> a card number.

An OSDP reader reports a card as a bit image (osdp_RAW): a bit count and the
bits packed most significant bit first, left-justified (the first bit read is
bit 7 of the first byte), the last byte padded. libosdp 3.2.9 hands them over
unchanged as ``{'format': CardFormat.Wiegand | CardFormat.Unspecified,
'length': <bits>, 'data': <ceil(bits / 8) bytes>}`` (checked on this machine:
it sends exactly ceil(bits / 8) bytes, whatever padding they hold). This
module turns such a read into a :class:`CardNumber` or a
:class:`CardRejected`; :func:`decode_card` never raises on wire input.

Formats (the per-reader ``card_format`` setting, :class:`CardFormat`):

- ``h10301``: 26 bits. Even parity over the first 12 data bits, an 8-bit
  facility code, a 16-bit card number, odd parity over the last 12.
- ``wiegand34``: 34 bits. Even parity over the first 16 data bits, a 16-bit
  facility code, a 16-bit card number, odd parity over the last 16.
- ``raw``: any length; the number is the bits read as one unsigned binary
  number, in decimal (no facility code). A site names such a card by that
  decimal number. Readers whose formats passbridge does not parse (37-bit,
  Corporate 1000, ...) still work: the site file lists what the log shows.
- ``auto`` (the default): 26 bits as ``h10301``, 34 bits as ``wiegand34``,
  any other length as ``raw``. A 26- or 34-bit read with bad parity is
  refused, never read as raw bits instead (that would skip the check).

The number is what the site file's ``cards:`` list names: the card number
in decimal, without leading zeros (``"10001"``). The facility code is not part
of it; it is shown beside it (:meth:`CardNumber.describe`, the decision's
detail), and a reader may be told to accept only one facility code
(``facility=`` of :func:`decode_card`): two cards of different facilities
with the same number are otherwise the same credential to passbridge.

Refused, as :class:`CardRejected` with the reason (the caller audits it as
``unknown_credential`` with this detail): bad parity, a length the reader's
format does not take, fewer data bytes than the bit count needs, more bytes
than it needs, padding bits that are not zero, an ASCII read (deprecated in
OSDP; libosdp drops them anyway), an empty read, or one longer than OSDP can
carry. Nothing here holds or logs the number beyond the returned value.

:func:`encode_card` is the other direction, for the simulated readers: the
simulator presents a card with the very framing this module decodes, so the
two cannot drift apart, and the property tests pin them to each other.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from enum import StrEnum

__all__ = [
    "MAX_CARD_BITS",
    "OSDP_FORMAT_ASCII",
    "OSDP_FORMAT_RAW_UNSPECIFIED",
    "OSDP_FORMAT_RAW_WIEGAND",
    "CardFormat",
    "CardNumber",
    "CardRead",
    "CardRejected",
    "EncodedCard",
    "decode_card",
    "decode_card_event",
    "encode_card",
]

# The osdp_RAW format codes (OSDP 2.2, "Reader data - raw bit image"), the
# values libosdp's ``osdp.CardFormat`` carries (a test checks they agree).
OSDP_FORMAT_RAW_UNSPECIFIED = 0
OSDP_FORMAT_RAW_WIEGAND = 1
OSDP_FORMAT_ASCII = 2

#: The longest read libosdp carries (64 data bytes): anything longer is junk.
MAX_CARD_BITS = 64 * 8


class CardFormat(StrEnum):
    """How a reader's card bits are read (the per-reader setting)."""

    AUTO = "auto"
    H10301 = "h10301"
    WIEGAND34 = "wiegand34"
    RAW = "raw"


@dataclass(frozen=True, slots=True)
class CardNumber:
    """A card read that passed its format's checks.

    ``number`` is the decimal card number the site file names; ``facility``
    the facility code (None for raw reads); ``format`` the format used to read
    it (``h10301``, ``wiegand34`` or ``raw``); ``bits`` the bit count.
    """

    number: str
    facility: int | None
    format: str
    bits: int

    def describe(self) -> str:
        """The read for a decision's detail, without the card number (rules.md
        keeps full card numbers out of logs; the decision masks it)."""
        if self.facility is None:
            return f"{self.bits}-bit raw card"
        return f"{self.bits}-bit {self.format} card, facility {self.facility}"


@dataclass(frozen=True, slots=True)
class CardRejected:
    """A card read that is refused; ``detail`` says why (never the bits)."""

    detail: str


CardRead = CardNumber | CardRejected


@dataclass(frozen=True, slots=True)
class _Layout:
    """A parity-framed Wiegand layout: P, facility, card, P."""

    name: str
    bits: int
    facility_bits: int
    card_bits: int

    @property
    def half(self) -> int:
        """Data bits under each parity bit (the first half, the second half)."""
        return (self.bits - 2) // 2


_LAYOUTS = {
    CardFormat.H10301: _Layout("h10301", 26, 8, 16),
    CardFormat.WIEGAND34: _Layout("wiegand34", 34, 16, 16),
}
_AUTO_BY_LENGTH = {layout.bits: layout for layout in _LAYOUTS.values()}


def _byte_count(bits: int) -> int:
    return (bits + 7) // 8


def decode_card_event(event: Mapping[str, object], card_format: CardFormat | str = CardFormat.AUTO,
                      *, facility: int | None = None) -> CardRead:
    """A libosdp card-read event dict -> :class:`CardNumber` or :class:`CardRejected`.

    Reads ``format``, ``length`` and ``data`` and checks their types, so an
    event of any shape is refused with a reason instead of raising.
    """
    osdp_format, bits, data = event.get("format"), event.get("length"), event.get("data")
    if osdp_format == OSDP_FORMAT_ASCII:
        return CardRejected("ASCII card data (deprecated in OSDP; send raw bits)")
    if osdp_format not in (OSDP_FORMAT_RAW_UNSPECIFIED, OSDP_FORMAT_RAW_WIEGAND):
        return CardRejected(f"unknown card data format {osdp_format!r}")
    if not isinstance(bits, int) or isinstance(bits, bool):
        return CardRejected("card read without a bit count")
    if not isinstance(data, (bytes, bytearray)):
        return CardRejected("card read without data bytes")
    return decode_card(bytes(data), bits, card_format, facility=facility)


def decode_card(data: bytes, bits: int, card_format: CardFormat | str = CardFormat.AUTO,
                *, facility: int | None = None) -> CardRead:
    """``bits`` bits packed MSB first in ``data`` -> a card number or a refusal.

    ``card_format`` is the reader's setting; ``facility``, when given, is the
    only facility code the reader accepts (a parity-framed read of another
    facility is refused; raw reads have none and are refused too).
    """
    try:
        setting = CardFormat(card_format)
    except ValueError:
        return CardRejected(f"unknown card format setting {card_format!r}")
    if bits <= 0:
        return CardRejected("card read with no bits")
    if bits > MAX_CARD_BITS:
        return CardRejected(f"card read of {bits} bits (at most {MAX_CARD_BITS})")
    needed = _byte_count(bits)
    if len(data) < needed:
        return CardRejected(f"card data too short: {len(data)} bytes for {bits} bits")
    if len(data) > needed:
        return CardRejected(f"card data longer than its {bits} bits: {len(data)} bytes")
    padded = int.from_bytes(data, "big")
    padding = needed * 8 - bits
    if padded & ((1 << padding) - 1):
        return CardRejected(f"card data garbled: padding after bit {bits} is not zero")
    value = padded >> padding

    if setting is CardFormat.RAW:
        layout = None
    elif setting is CardFormat.AUTO:
        layout = _AUTO_BY_LENGTH.get(bits)
    else:
        layout = _LAYOUTS[setting]
        if bits != layout.bits:
            return CardRejected(f"{bits}-bit read on a reader set to {layout.name} "
                                f"({layout.bits} bits)")
    if layout is None:
        if facility is not None:
            return CardRejected(f"{bits}-bit raw read carries no facility code "
                                f"(the reader accepts facility {facility} only)")
        return CardNumber(number=str(value), facility=None, format=CardFormat.RAW.value,
                          bits=bits)
    return _decode_framed(value, layout, facility)


def _decode_framed(value: int, layout: _Layout, facility: int | None) -> CardRead:
    half = layout.half
    data_bits = (value >> 1) & ((1 << (2 * half)) - 1)
    first, second = data_bits >> half, data_bits & ((1 << half) - 1)
    leading, trailing = value >> (layout.bits - 1), value & 1
    # Even parity: the leading bit makes the ones of the first half even.
    if (first.bit_count() + leading) % 2 != 0:
        return CardRejected(f"{layout.name}: bad leading (even) parity")
    # Odd parity: the trailing bit makes the ones of the second half odd.
    if (second.bit_count() + trailing) % 2 != 1:
        return CardRejected(f"{layout.name}: bad trailing (odd) parity")
    read_facility = data_bits >> layout.card_bits
    number = data_bits & ((1 << layout.card_bits) - 1)
    if facility is not None and read_facility != facility:
        return CardRejected(f"{layout.name}: facility {read_facility}, the reader accepts "
                            f"facility {facility} only")
    return CardNumber(number=str(number), facility=read_facility, format=layout.name,
                      bits=layout.bits)


@dataclass(frozen=True, slots=True)
class EncodedCard:
    """A card as a reader reports it: the fields of a libosdp card-read event."""

    data: bytes
    bits: int
    osdp_format: int = OSDP_FORMAT_RAW_WIEGAND

    def event_fields(self) -> dict[str, object]:
        """``format``, ``length`` and ``data`` for libosdp's event dict (the
        caller adds ``event``, ``reader_no`` and ``direction``)."""
        return {"format": self.osdp_format, "length": self.bits, "data": self.data}


def _pack(value: int, bits: int) -> bytes:
    """``bits`` bits of ``value``, MSB first, left-justified, zero padded."""
    size = _byte_count(bits)
    return (value << (size * 8 - bits)).to_bytes(size, "big")


def encode_card(number: int, card_format: CardFormat | str = CardFormat.AUTO, *,
                facility: int = 0, bits: int | None = None) -> EncodedCard:
    """The reader-side framing of a card, for the simulated readers.

    ``h10301`` and ``wiegand34`` frame ``facility`` and ``number`` with their
    parity bits. ``raw`` sends ``number`` as ``bits`` bits (default: as few
    as hold it). ``auto`` picks what a reader set to ``auto`` reads back as
    the same number: H10301 for numbers that fit 16 bits and a facility that
    fits 8, otherwise raw bits of a length that is neither 26 nor 34. Raises
    ValueError for a number or facility code the format cannot carry (a
    programming error of the caller, not wire input).
    """
    setting = CardFormat(card_format)
    if number < 0 or facility < 0:
        raise ValueError("card numbers and facility codes are not negative")
    if setting is CardFormat.AUTO:
        if number < 1 << 16 and facility < 1 << 8 and bits is None:
            setting = CardFormat.H10301
        else:
            setting = CardFormat.RAW
            if bits is None:
                bits = max(number.bit_length(), 1)
                if bits in _AUTO_BY_LENGTH:
                    bits += 1  # a leading zero: not read as a framed format
    if setting is CardFormat.RAW:
        length = bits if bits is not None else max(number.bit_length(), 1)
        if not 0 < length <= MAX_CARD_BITS or number >= 1 << length:
            raise ValueError(f"{number} does not fit a raw read of {length} bits")
        return EncodedCard(_pack(number, length), length, OSDP_FORMAT_RAW_UNSPECIFIED)
    layout = _LAYOUTS[setting]
    if bits is not None and bits != layout.bits:
        raise ValueError(f"{layout.name} has {layout.bits} bits, not {bits}")
    if number >= 1 << layout.card_bits or facility >= 1 << layout.facility_bits:
        raise ValueError(f"{layout.name} carries a {layout.facility_bits}-bit facility code "
                         f"and a {layout.card_bits}-bit card number")
    half = layout.half
    data_bits = (facility << layout.card_bits) | number
    first, second = data_bits >> half, data_bits & ((1 << half) - 1)
    leading = first.bit_count() % 2  # even parity
    trailing = 1 - second.bit_count() % 2  # odd parity
    value = (leading << (layout.bits - 1)) | (data_bits << 1) | trailing
    return EncodedCard(_pack(value, layout.bits), layout.bits, OSDP_FORMAT_RAW_WIEGAND)
