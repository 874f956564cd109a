"""Framing of one authentication message over GATT writes and notifications.

A GATT write or notification carries at most ``ATT_MTU - 3`` bytes, and the
minimum ATT MTU (23) leaves only 20. The Aliro-style messages that run over
this link (the same APDUs as over NFC) are up to a few hundred bytes, so each
message is cut into chunks and put back together on the other side.

Chunk layout (all integers big-endian)::

    first chunk:  flags(1) | total_length(2) | payload
    later chunks: flags(1) | payload

    flags: bit 7  FIRST   set on the first chunk of a message
           bit 6  LAST    set on the last chunk of a message
           bits 5-4       reserved, must be zero
           bits 3-0 SEQ   chunk counter: 0 on the first chunk, +1 mod 16

A message that fits in one chunk has FIRST and LAST both set. Parsing is
strict: any chunk that does not continue the current message exactly (wrong
counter, a FIRST in the middle, more bytes than announced, a LAST before the
announced length) is a protocol error and the session must be dropped, because
GATT delivers writes and notifications reliably and in order, so a gap means
a broken or hostile peer, never radio loss.

Sans-I/O: bytes in, bytes out; the BLE adapter and the simulated phone both
use it.
"""

from __future__ import annotations

from collections.abc import Iterator

from passbridge.errors import PassbridgeError

#: GATT service and characteristic UUIDs of the passbridge BLE service
#: (random 128-bit UUIDs, fixed for the protocol; see protocols/ble/README.md).
SERVICE_UUID = "bc6799d5-9dc9-4bd4-b431-6ff52cb0666b"
#: The reader (central) writes framed commands here, write with response.
REQUEST_CHAR_UUID = "bc6799d5-9dc9-4bd4-b431-6ff52cb0666c"
#: The phone (peripheral) notifies framed responses here.
RESPONSE_CHAR_UUID = "bc6799d5-9dc9-4bd4-b431-6ff52cb0666d"

FIRST = 0x80
LAST = 0x40
RESERVED = 0x30
SEQ_MASK = 0x0F

#: ATT's minimum MTU; every BLE link supports at least this.
MIN_ATT_MTU = 23
#: Bytes of an ATT PDU that are not attribute value (opcode + handle).
ATT_HEADER = 3
FIRST_HEADER = 3
NEXT_HEADER = 1

#: Default bound on one reassembled message. Extended APDUs could be larger,
#: but nothing in the authentication comes near this, and a bound keeps a
#: hostile peer from making the reader buffer without limit.
DEFAULT_MAX_MESSAGE = 2048
#: Hard ceiling from the 2-byte length field.
LENGTH_FIELD_MAX = 0xFFFF


class FramingError(PassbridgeError, ValueError):
    """A chunk or message that breaks the framing rules; drop the session."""


def chunk_capacity(att_mtu: int) -> int:
    """Largest GATT value (one chunk) that fits a link with this ATT MTU."""
    if att_mtu < MIN_ATT_MTU:
        raise FramingError(f"ATT MTU {att_mtu} is below the minimum {MIN_ATT_MTU}")
    return att_mtu - ATT_HEADER


def frame_message(
    message: bytes, att_mtu: int, *, max_message: int = DEFAULT_MAX_MESSAGE
) -> list[bytes]:
    """Cut one message into the GATT values to write or notify, in order."""
    return list(iter_frames(message, att_mtu, max_message=max_message))


def iter_frames(
    message: bytes, att_mtu: int, *, max_message: int = DEFAULT_MAX_MESSAGE
) -> Iterator[bytes]:
    capacity = chunk_capacity(att_mtu)
    size = len(message)
    if size == 0:
        raise FramingError("empty message: every command and response has at least one byte")
    if size > min(max_message, LENGTH_FIELD_MAX):
        raise FramingError(f"message of {size} bytes exceeds the limit of {max_message}")
    first_room = capacity - FIRST_HEADER
    next_room = capacity - NEXT_HEADER
    head = message[:first_room]
    rest = message[first_room:]
    flags = FIRST | (LAST if not rest else 0)
    yield bytes((flags,)) + size.to_bytes(2, "big") + head
    seq = 0
    offset = 0
    while offset < len(rest):
        seq = (seq + 1) & SEQ_MASK
        piece = rest[offset : offset + next_room]
        offset += len(piece)
        flags = seq | (LAST if offset >= len(rest) else 0)
        yield bytes((flags,)) + piece


class MessageAssembler:
    """Puts chunks back into messages, one message at a time.

    ``feed`` returns the whole message when its last chunk arrives and None
    while more are expected. After a FramingError the assembler is empty
    again, but the caller should end the session: the peer is not following
    the protocol.
    """

    def __init__(self, *, max_message: int = DEFAULT_MAX_MESSAGE) -> None:
        if not 0 < max_message <= LENGTH_FIELD_MAX:
            raise ValueError(f"max_message must be 1..{LENGTH_FIELD_MAX}")
        self._max = max_message
        self._buffer = bytearray()
        self._expected = 0
        self._seq = 0
        self._busy = False

    @property
    def in_progress(self) -> bool:
        """True between the first and the last chunk of a message."""
        return self._busy

    def reset(self) -> None:
        self._buffer.clear()
        self._expected = 0
        self._seq = 0
        self._busy = False

    def feed(self, chunk: bytes) -> bytes | None:
        try:
            return self._feed(chunk)
        except FramingError:
            self.reset()
            raise

    def _feed(self, chunk: bytes) -> bytes | None:
        if not chunk:
            raise FramingError("empty chunk")
        flags = chunk[0]
        if flags & RESERVED:
            raise FramingError(f"reserved flag bits set: 0x{flags:02x}")
        seq = flags & SEQ_MASK
        if flags & FIRST:
            if self._busy:
                raise FramingError("a new message started before the last one ended")
            if seq != 0:
                raise FramingError(f"first chunk has counter {seq}, expected 0")
            if len(chunk) < FIRST_HEADER:
                raise FramingError("first chunk shorter than its header")
            total = int.from_bytes(chunk[1:3], "big")
            if total == 0:
                raise FramingError("message length 0")
            if total > self._max:
                raise FramingError(f"message length {total} exceeds the limit of {self._max}")
            self._busy = True
            self._expected = total
            self._seq = 0
            payload = chunk[FIRST_HEADER:]
            if not payload:
                raise FramingError("first chunk without payload")
        else:
            if not self._busy:
                raise FramingError("continuation chunk without a first chunk")
            expected_seq = (self._seq + 1) & SEQ_MASK
            if seq != expected_seq:
                raise FramingError(f"chunk counter {seq}, expected {expected_seq}")
            self._seq = seq
            payload = chunk[NEXT_HEADER:]
            if not payload:
                raise FramingError("continuation chunk without payload")
        if len(self._buffer) + len(payload) > self._expected:
            raise FramingError("more bytes than the announced message length")
        self._buffer += payload
        complete = len(self._buffer) == self._expected
        if flags & LAST:
            if not complete:
                raise FramingError(
                    f"last chunk after {len(self._buffer)} of {self._expected} bytes"
                )
            message = bytes(self._buffer)
            self.reset()
            return message
        if complete:
            raise FramingError("message complete but its last chunk is not marked LAST")
        return None
