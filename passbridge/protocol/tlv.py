"""Strict BER-TLV for the Aliro messages.

The NFC messages are short lists of tagged fields whose order and sizes are
fixed by the protocol, so parsing is schema-driven: a message is accepted only
if every field is well formed, appears in the expected order, at most once, and
has a permitted length. Anything else raises :class:`MalformedTLV`, which the
roles turn into a failed transaction (reader) or an error status word (phone).
Being permissive here would let an attacker probe parsers for differences in
interpretation between the reader and phone.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass

from passbridge.errors import PassbridgeError


class MalformedTLV(PassbridgeError, ValueError):
    """The bytes are not the TLV structure the protocol expects."""


@dataclass(frozen=True, slots=True)
class Field:
    """One expected field of a message schema.

    ``lengths`` lists the permitted value lengths; ``None`` permits any length
    within ``max_length``.
    """

    tag: int
    lengths: tuple[int, ...] | None = None
    required: bool = True
    max_length: int = 255


def _tag_bytes(tag: int) -> bytes:
    return tag.to_bytes(1 if tag <= 0xFF else 2, "big")


def encode_length(length: int) -> bytes:
    """BER definite length, short or long form (up to 65535)."""
    if length < 0 or length > 0xFFFF:
        raise ValueError(f"TLV length {length} out of range")
    if length < 0x80:
        return bytes([length])
    if length <= 0xFF:
        return bytes([0x81, length])
    return bytes([0x82]) + length.to_bytes(2, "big")


def encode(tag: int, value: bytes) -> bytes:
    """One TLV: tag (1 or 2 bytes), BER length, value."""
    length = len(value)
    if tag <= 0xFF and length < 0x80:  # every Aliro field but the long ones
        return bytes((tag, length)) + value
    return _tag_bytes(tag) + encode_length(length) + value


def encode_all(fields: Iterable[tuple[int, bytes]]) -> bytes:
    return b"".join([encode(tag, value) for tag, value in fields])


def _scan(data: bytes) -> list[tuple[int, int, int, int]]:
    """``(tag, start, value_start, end)`` of each TLV; the one strict tokenizer.

    Offsets instead of slices so callers copy only what they keep (a tap
    parses a handful of messages, and on a reader this is per-tap CPU).
    """
    out: list[tuple[int, int, int, int]] = []
    i = 0
    n = len(data)
    while i < n:
        start = i
        tag = data[i]
        i += 1
        if tag == 0x00 or tag == 0xFF:
            raise MalformedTLV(f"padding or invalid tag byte {tag:02X} at offset {start}")
        if tag & 0x1F == 0x1F:
            if i >= n:
                raise MalformedTLV("truncated two-byte tag")
            second = data[i]
            i += 1
            if second & 0x80:
                raise MalformedTLV("tags longer than two bytes are not used")
            tag = (tag << 8) | second
        if i >= n:
            raise MalformedTLV(f"tag {tag:02X} has no length")
        length = data[i]
        i += 1
        if length >= 0x80:
            if length == 0x81:
                if i + 1 > n:
                    raise MalformedTLV("truncated length")
                length = data[i]
                i += 1
                if length < 0x80:
                    raise MalformedTLV("non-minimal length encoding")
            elif length == 0x82:
                if i + 2 > n:
                    raise MalformedTLV("truncated length")
                length = (data[i] << 8) | data[i + 1]
                i += 2
                if length <= 0xFF:
                    raise MalformedTLV("non-minimal length encoding")
            else:
                raise MalformedTLV(f"unsupported length byte {length:02X}")
        if i + length > n:
            raise MalformedTLV(f"tag {tag:02X} value truncated ({n - i} of {length} bytes)")
        out.append((tag, start, i, i + length))
        i += length
    return out


def split(data: bytes) -> list[tuple[int, bytes, bytes]]:
    """Split a byte string into ``(tag, value, raw_tlv)`` triples.

    Accepts one- and two-byte tags (first byte with low five bits all set
    introduces a second byte, which must not announce a third) and definite
    lengths in short or 0x81/0x82 long form, minimally encoded. Raises
    :class:`MalformedTLV` on truncation, indefinite or non-minimal lengths,
    and on empty input left over as a lone tag.
    """
    data = bytes(data)
    return [(tag, data[vstart:end], data[start:end]) for tag, start, vstart, end in _scan(data)]


def parse(data: bytes, schema: Sequence[Field], *, allow_unknown_tail: bool = False
          ) -> dict[int, bytes]:
    """Parse ``data`` against an ordered schema and return ``{tag: value}``.

    Every field must appear in schema order, at most once, with a permitted
    length; required fields must be present. ``allow_unknown_tail`` lets
    well-formed fields with tags outside the schema follow the known ones
    (used only where a future protocol version may append data that is
    covered by a MAC or key schedule anyway).
    """
    data = bytes(data)
    result: dict[int, bytes] = {}
    pos = 0
    count = len(schema)
    for tag, _start, vstart, end in _scan(data):
        while pos < count and schema[pos].tag != tag:
            if schema[pos].required:
                if any(f.tag == tag for f in schema):
                    raise MalformedTLV(
                        f"tag {tag:02X} out of order (expected {schema[pos].tag:02X})")
                raise MalformedTLV(
                    f"unexpected tag {tag:02X} (expected {schema[pos].tag:02X})")
            pos += 1
        if pos == count:
            if tag in result or any(f.tag == tag for f in schema):
                raise MalformedTLV(f"tag {tag:02X} duplicated or out of order")
            if allow_unknown_tail:
                continue
            raise MalformedTLV(f"unexpected tag {tag:02X}")
        spec = schema[pos]
        length = end - vstart
        if spec.lengths is not None and length not in spec.lengths:
            raise MalformedTLV(
                f"tag {tag:02X} has length {length}, expected one of {spec.lengths}")
        if length > spec.max_length:
            raise MalformedTLV(f"tag {tag:02X} too long ({length} bytes)")
        result[tag] = data[vstart:end]
        pos += 1
    if len(result) < count:
        for spec in schema:
            if spec.required and spec.tag not in result:
                raise MalformedTLV(f"missing tag {spec.tag:02X}")
    return result
