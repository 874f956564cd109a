"""ISO 7816-4 short APDUs, the envelope of every Aliro NFC message.

Only short APDUs are used: the largest Aliro command (AUTH0, 129 data bytes)
and response (the encrypted AUTH1 answer, about 160 bytes) fit, and phones'
host card emulation caps APDUs near 265 bytes. Extended length is rejected
rather than half supported.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import IntEnum

from passbridge.errors import PassbridgeError


class MalformedAPDU(PassbridgeError, ValueError):
    """The bytes are not a well-formed short APDU."""


class SW(IntEnum):
    """Status words the phone role answers and the reader role recognises."""

    OK = 0x9000
    WRONG_LENGTH = 0x6700
    COMMAND_NOT_COMPLIANT = 0x6701
    SECURITY_STATUS_NOT_SATISFIED = 0x6982
    CONDITIONS_NOT_SATISFIED = 0x6985
    WRONG_DATA = 0x6A80
    FILE_NOT_FOUND = 0x6A82
    INCORRECT_P1P2 = 0x6A86
    INS_NOT_SUPPORTED = 0x6D00
    CLA_NOT_SUPPORTED = 0x6E00
    UNKNOWN = 0x6F00


@dataclass(frozen=True)
class CommandAPDU:
    cla: int
    ins: int
    p1: int
    p2: int
    data: bytes = b""
    le: int | None = None  # None = no Le byte; 0 encodes as 00 (up to 256)

    def encode(self) -> bytes:
        return encode_command(self.cla, self.ins, self.p1, self.p2, self.data, self.le)


def encode_command(cla: int, ins: int, p1: int, p2: int, data: bytes = b"",
                   le: int | None = None) -> bytes:
    """A short command APDU's bytes (what :meth:`CommandAPDU.encode` gives),
    for encoders that have no use for the object."""
    if len(data) > 255:
        raise ValueError("short APDU data is limited to 255 bytes")
    header = bytes((cla, ins, p1, p2))
    body = bytes((len(data),)) + data if data else b""
    trailer = bytes((le & 0xFF,)) if le is not None else b""
    return header + body + trailer


def parse_command(raw: bytes) -> CommandAPDU:
    """Parse a short command APDU (cases 1 to 4); extended length is refused."""
    if len(raw) < 4:
        raise MalformedAPDU(f"command APDU of {len(raw)} bytes is shorter than its header")
    cla, ins, p1, p2 = raw[0], raw[1], raw[2], raw[3]
    body = raw[4:]
    if not body:
        return CommandAPDU(cla, ins, p1, p2)
    if len(body) == 1:
        return CommandAPDU(cla, ins, p1, p2, b"", body[0])
    lc = body[0]
    if lc == 0:
        raise MalformedAPDU("extended-length APDUs are not supported")
    if len(body) == 1 + lc:
        return CommandAPDU(cla, ins, p1, p2, bytes(body[1:]))
    if len(body) == 2 + lc:
        return CommandAPDU(cla, ins, p1, p2, bytes(body[1 : 1 + lc]), body[1 + lc])
    raise MalformedAPDU(f"Lc says {lc} data bytes but {len(body) - 1} follow")


@dataclass(frozen=True)
class ResponseAPDU:
    data: bytes
    sw: int

    def encode(self) -> bytes:
        return self.data + self.sw.to_bytes(2, "big")

    @property
    def ok(self) -> bool:
        return self.sw == SW.OK


def parse_response(raw: bytes) -> ResponseAPDU:
    """A short response APDU: data and a status word, at most 258 bytes in all."""
    n = len(raw)
    if n < 2:
        raise MalformedAPDU(f"response APDU of {n} bytes has no status word")
    if n > 258:
        raise MalformedAPDU(f"response APDU of {n} bytes exceeds a short response")
    return ResponseAPDU(bytes(raw[:-2]), (raw[-2] << 8) | raw[-1])


def response(data: bytes = b"", sw: int = SW.OK) -> bytes:
    return ResponseAPDU(data, sw).encode()


def status(sw: int) -> bytes:
    return int(sw).to_bytes(2, "big")
