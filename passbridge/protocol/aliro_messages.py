"""The Aliro NFC messages: one encoder and one strict parser per message.

Reader and phone share these so that a change of layout cannot make the two
roles disagree silently. Parsers raise MalformedTLV / MalformedAPDU / ValueError;
the roles decide what that means for the transaction.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from cryptography.hazmat.primitives.asymmetric import ec

from passbridge.protocol import tlv
from passbridge.protocol.aliro_crypto import AID, load_public_key, same_bytes
from passbridge.protocol.apdu import CommandAPDU, encode_command
from passbridge.protocol.tlv import Field, MalformedTLV

CLA_ISO = 0x00
CLA_PROPRIETARY = 0x80
INS_SELECT = 0xA4
INS_AUTH0 = 0x80
INS_AUTH1 = 0x81
INS_EXCHANGE = 0xC9
INS_CONTROL_FLOW = 0x3C

TAG_FCI = 0x6F
TAG_AID = 0x84
TAG_PROPRIETARY = 0xA5
TAG_TYPE = 0x80
TAG_VERSIONS = 0x5C
TAG_COMMAND_PARAMETERS = 0x41
TAG_POLICY = 0x42
TAG_READER_EPHEMERAL = 0x87
TAG_TRANSACTION_ID = 0x4C
TAG_READER_ID = 0x4D
TAG_ENDPOINT_EPHEMERAL = 0x86
TAG_CRYPTOGRAM = 0x9D
TAG_SIGNATURE = 0x9E
TAG_CREDENTIAL_PUBLIC_KEY = 0x5A
TAG_KEY_SLOT = 0x4E
TAG_SIGNALING = 0x5E
TAG_CREDENTIAL_TIMESTAMP = 0x91
TAG_REVOCATION_TIMESTAMP = 0x92
TAG_MAILBOX = 0x4B
TAG_READER_STATUS = 0x97


# ---------------------------------------------------------------- SELECT


SELECT_COMMAND = CommandAPDU(CLA_ISO, INS_SELECT, 0x04, 0x00, AID, 0x00).encode()


def select_response_data(versions: tuple[bytes, ...] = (bytes.fromhex("0100"),),
                         applet_type: bytes = bytes(2)) -> bytes:
    proprietary = tlv.encode_all(((TAG_TYPE, applet_type), (TAG_VERSIONS, b"".join(versions))))
    return tlv.encode(TAG_FCI, tlv.encode(TAG_AID, AID) + tlv.encode(TAG_PROPRIETARY, proprietary))


@dataclass(frozen=True)
class SelectAnswer:
    versions: tuple[bytes, ...]
    a5_raw: bytes  # exact A5 TLV, an input to every salt


# Schemas are module constants: a message's shape does not change per call.
_SELECT_FCI_SCHEMA = (Field(TAG_FCI),)
_SELECT_INNER_SCHEMA = (Field(TAG_AID, (len(AID),)), Field(TAG_PROPRIETARY))
_SELECT_PROPRIETARY_SCHEMA = (Field(TAG_TYPE, (2,)), Field(TAG_VERSIONS, max_length=32))


def parse_select_response(data: bytes) -> SelectAnswer:
    outer = tlv.parse(data, _SELECT_FCI_SCHEMA)
    inner_bytes = outer[TAG_FCI]
    inner = tlv.parse(inner_bytes, _SELECT_INNER_SCHEMA)
    if not same_bytes(inner[TAG_AID], AID):
        raise MalformedTLV("SELECT answer names another application")
    # Newer phones may append fields (extended length info, BLE data) inside A5;
    # they are hashed into every salt, so accepting them cannot be abused.
    prop = tlv.parse(inner[TAG_PROPRIETARY],
                     _SELECT_PROPRIETARY_SCHEMA,
                     allow_unknown_tail=True)
    raw_versions = prop[TAG_VERSIONS]
    if not raw_versions or len(raw_versions) % 2:
        raise MalformedTLV("supported versions must be a non-empty list of 2-byte values")
    versions = tuple(raw_versions[i : i + 2] for i in range(0, len(raw_versions), 2))
    # The tokenizer admits minimal length encodings only, so encoding the value
    # again gives the A5 field exactly as received.
    return SelectAnswer(versions, tlv.encode(TAG_PROPRIETARY, inner[TAG_PROPRIETARY]))


class SelectAnswers:
    """A reader's last SELECT answer, kept with what it parsed to.

    Phones of one kind answer SELECT with the same bytes tap after tap, and
    the strict parse (three nested TLV lists, the A5 field encoded again)
    costs a tap about 3 us of reader CPU (scripts/bench_nfc.py). Only the
    very same bytes reuse the last parse, so a tap gets exactly what
    :func:`parse_select_response` gives for its answer. One entry, replaced
    whole: readers sharing it (the NFC reader thread, Bluetooth on the event
    loop) never see half of one.
    """

    def __init__(self) -> None:
        self._last: tuple[bytes, SelectAnswer] | None = None

    def parse(self, data: bytes) -> SelectAnswer:
        last = self._last
        if last is not None and last[0] == data:
            return last[1]
        answer = parse_select_response(data)  # raises on anything malformed: nothing kept
        self._last = (bytes(data), answer)
        return answer


# ---------------------------------------------------------------- AUTH0


@dataclass(frozen=True)
class Auth0Command:
    command_parameters: int
    authentication_policy: int
    version: bytes
    reader_ephemeral_public_key: bytes
    transaction_id: bytes
    reader_id: bytes

    def encode(self) -> bytes:
        return auth0_command(self.command_parameters, self.authentication_policy,
                             self.version, self.reader_ephemeral_public_key,
                             self.transaction_id, self.reader_id)


def auth0_command(command_parameters: int, authentication_policy: int, version: bytes,
                  reader_ephemeral_public_key: bytes, transaction_id: bytes,
                  reader_id: bytes) -> bytes:
    """The AUTH0 command APDU (what :meth:`Auth0Command.encode` sends)."""
    data = tlv.encode_all((
        (TAG_COMMAND_PARAMETERS, bytes([command_parameters])),
        (TAG_POLICY, bytes([authentication_policy])),
        (TAG_VERSIONS, version),
        (TAG_READER_EPHEMERAL, reader_ephemeral_public_key),
        (TAG_TRANSACTION_ID, transaction_id),
        (TAG_READER_ID, reader_id),
    ))
    return encode_command(CLA_PROPRIETARY, INS_AUTH0, 0, 0, data, 0x00)


@dataclass(frozen=True)
class Auth0Template:
    """One reader's AUTH0 command with the two values every tap changes left out.

    A reader sends the same AUTH0 tap after tap but for its fresh ephemeral
    key and transaction id, so the rest is encoded once per reader (by
    :func:`auth0_command` itself, there is no second encoder) and a tap only
    puts its two values in: about 1.5 us less reader CPU per tap, a
    twentieth of a FAST tap's protocol work (scripts/bench_nfc.py).
    """

    head: bytes  # APDU header, Lc, 41, 42, 5C, and 87's tag and length
    middle: bytes  # 4C's tag and length
    tail: bytes  # 4D with the reader id, and Le

    def command(self, reader_ephemeral_public_key: bytes, transaction_id: bytes) -> bytes:
        """The same bytes as :func:`auth0_command` with this reader's fixed fields."""
        if len(reader_ephemeral_public_key) != 65 or len(transaction_id) != 16:
            raise ValueError("AUTH0 takes a 65-byte ephemeral key and a 16-byte transaction id")
        return self.head + reader_ephemeral_public_key + self.middle + transaction_id + self.tail


def auth0_template(command_parameters: int, authentication_policy: int, version: bytes,
                   reader_id: bytes) -> Auth0Template:
    """The :class:`Auth0Template` of one reader.

    The command is encoded twice by :func:`auth0_command`, with the per-tap
    values all 00 and then all FF: the bytes that differ are where those
    values go, whatever the reader id holds.
    """
    zeros = auth0_command(command_parameters, authentication_policy, version,
                          bytes(65), bytes(16), reader_id)
    ones = auth0_command(command_parameters, authentication_policy, version,
                         b"\xff" * 65, b"\xff" * 16, reader_id)
    varying = [i for i, (a, b) in enumerate(zip(zeros, ones, strict=True)) if a != b]
    key_at, id_at = varying[0], varying[65]
    if varying != [*range(key_at, key_at + 65), *range(id_at, id_at + 16)]:
        raise AssertionError("AUTH0 layout: the ephemeral key, then the transaction id")
    return Auth0Template(zeros[:key_at], zeros[key_at + 65:id_at], zeros[id_at + 16:])


_AUTH0_SCHEMA = (
    Field(TAG_COMMAND_PARAMETERS, (1,)),
    Field(TAG_POLICY, (1,)),
    Field(TAG_VERSIONS, (2,)),
    Field(TAG_READER_EPHEMERAL, (65,)),
    Field(TAG_TRANSACTION_ID, (16,)),
    Field(TAG_READER_ID, (32,)),
)


def parse_auth0_command(data: bytes) -> Auth0Command:
    f = tlv.parse(data, _AUTH0_SCHEMA)
    params = f[TAG_COMMAND_PARAMETERS][0]
    if params not in (0x00, 0x01):
        raise MalformedTLV(f"unknown command parameters {params:02X}")
    load_public_key(f[TAG_READER_EPHEMERAL])  # ValueError if not a point on P-256
    return Auth0Command(params, f[TAG_POLICY][0], f[TAG_VERSIONS],
                        f[TAG_READER_EPHEMERAL], f[TAG_TRANSACTION_ID], f[TAG_READER_ID])


@dataclass(frozen=True)
class Auth0Response:
    endpoint_ephemeral_public_key: bytes
    cryptogram: bytes | None

    def encode(self) -> bytes:
        fields = [(TAG_ENDPOINT_EPHEMERAL, self.endpoint_ephemeral_public_key)]
        if self.cryptogram is not None:
            fields.append((TAG_CRYPTOGRAM, self.cryptogram))
        return tlv.encode_all(fields)


_AUTH0_RESPONSE_SCHEMA = (Field(TAG_ENDPOINT_EPHEMERAL, (65,)),
                          Field(TAG_CRYPTOGRAM, (64,), required=False))


def parse_auth0_response(data: bytes) -> Auth0Response:
    point, cryptogram, _key = read_auth0_response(data)
    return Auth0Response(point, cryptogram)


def read_auth0_response(data: bytes
                        ) -> tuple[bytes, bytes | None, ec.EllipticCurvePublicKey]:
    """(phone ephemeral point, cryptogram or None, the point as a checked key).

    The key object is kept so ECDH does not decode the point a second time.
    """
    f = tlv.parse(data, _AUTH0_RESPONSE_SCHEMA)
    point, cryptogram = f[TAG_ENDPOINT_EPHEMERAL], f.get(TAG_CRYPTOGRAM)
    return point, cryptogram, load_public_key(point)


# ---------------------------------------------------------------- cryptogram


@dataclass(frozen=True)
class CryptogramContent:
    signaling_bitmap: bytes
    credential_signed_timestamp: bytes
    revocation_signed_timestamp: bytes

    def encode(self) -> bytes:
        return tlv.encode_all((
            (TAG_SIGNALING, self.signaling_bitmap),
            (TAG_CREDENTIAL_TIMESTAMP, self.credential_signed_timestamp),
            (TAG_REVOCATION_TIMESTAMP, self.revocation_signed_timestamp),
        ))


_CRYPTOGRAM_SCHEMA = (Field(TAG_SIGNALING, (2,)), Field(TAG_CREDENTIAL_TIMESTAMP, (20,)),
                      Field(TAG_REVOCATION_TIMESTAMP, (20,)))


def parse_cryptogram_content(plaintext: bytes) -> CryptogramContent:
    f = tlv.parse(plaintext, _CRYPTOGRAM_SCHEMA)
    return CryptogramContent(f[TAG_SIGNALING], f[TAG_CREDENTIAL_TIMESTAMP],
                             f[TAG_REVOCATION_TIMESTAMP])


# ---------------------------------------------------------------- AUTH1

AUTH1_RETURN_KEY_SLOT = 0x00
AUTH1_RETURN_PUBLIC_KEY = 0x01


@dataclass(frozen=True)
class Auth1Command:
    return_public_key: bool
    reader_signature: bytes

    def encode(self) -> bytes:
        return auth1_command(self.return_public_key, self.reader_signature)


def auth1_command(return_public_key: bool, reader_signature: bytes) -> bytes:
    """The AUTH1 command APDU (what :meth:`Auth1Command.encode` sends)."""
    flag = bytes((AUTH1_RETURN_PUBLIC_KEY if return_public_key else AUTH1_RETURN_KEY_SLOT,))
    data = tlv.encode_all(((TAG_COMMAND_PARAMETERS, flag), (TAG_SIGNATURE, reader_signature)))
    return encode_command(CLA_PROPRIETARY, INS_AUTH1, 0, 0, data, 0x00)


_AUTH1_SCHEMA = (Field(TAG_COMMAND_PARAMETERS, (1,)), Field(TAG_SIGNATURE, (64,)))


def parse_auth1_command(data: bytes) -> Auth1Command:
    f = tlv.parse(data, _AUTH1_SCHEMA)
    flag = f[TAG_COMMAND_PARAMETERS][0]
    if flag not in (AUTH1_RETURN_KEY_SLOT, AUTH1_RETURN_PUBLIC_KEY):
        raise MalformedTLV(f"unknown AUTH1 parameters {flag:02X}")
    return Auth1Command(flag == AUTH1_RETURN_PUBLIC_KEY, f[TAG_SIGNATURE])


@dataclass(frozen=True)
class Auth1Answer:
    """The decrypted AUTH1 response."""

    credential_public_key: bytes | None
    key_slot: bytes | None
    endpoint_signature: bytes
    signaling_bitmap: bytes
    credential_signed_timestamp: bytes | None = None
    revocation_signed_timestamp: bytes | None = None
    # ``credential_public_key`` as a key object, set by the parser that checked
    # the point, so the reader verifies the signature without decoding it again.
    credential_key: ec.EllipticCurvePublicKey | None = field(
        default=None, compare=False, repr=False)

    def encode(self) -> bytes:
        fields: list[tuple[int, bytes]] = []
        if self.credential_public_key is not None:
            fields.append((TAG_CREDENTIAL_PUBLIC_KEY, self.credential_public_key))
        if self.key_slot is not None:
            fields.append((TAG_KEY_SLOT, self.key_slot))
        fields.append((TAG_SIGNATURE, self.endpoint_signature))
        fields.append((TAG_SIGNALING, self.signaling_bitmap))
        if self.credential_signed_timestamp is not None:
            fields.append((TAG_CREDENTIAL_TIMESTAMP, self.credential_signed_timestamp))
        if self.revocation_signed_timestamp is not None:
            fields.append((TAG_REVOCATION_TIMESTAMP, self.revocation_signed_timestamp))
        return tlv.encode_all(fields)


_AUTH1_ANSWER_SCHEMA = (
    Field(TAG_CREDENTIAL_PUBLIC_KEY, (65,), required=False),
    Field(TAG_KEY_SLOT, (8,), required=False),
    Field(TAG_SIGNATURE, (64,)),
    Field(TAG_SIGNALING, (1, 2)),  # 1 byte in pre-1.0 phones, 2 bytes in Aliro 1.0
    Field(TAG_CREDENTIAL_TIMESTAMP, (20,), required=False),
    Field(TAG_REVOCATION_TIMESTAMP, (20,), required=False),
    Field(TAG_MAILBOX, required=False),
)


def parse_auth1_answer(plaintext: bytes) -> Auth1Answer:
    f = tlv.parse(plaintext, _AUTH1_ANSWER_SCHEMA)
    pub = f.get(TAG_CREDENTIAL_PUBLIC_KEY)
    slot = f.get(TAG_KEY_SLOT)
    if (pub is None) == (slot is None):
        raise MalformedTLV("AUTH1 answer needs exactly one of public key (5A) or key slot (4E)")
    key = load_public_key(pub) if pub is not None else None
    return Auth1Answer(pub, slot, f[TAG_SIGNATURE], f[TAG_SIGNALING],
                       f.get(TAG_CREDENTIAL_TIMESTAMP), f.get(TAG_REVOCATION_TIMESTAMP), key)


# ---------------------------------------------------------------- EXCHANGE, CONTROL FLOW


def exchange_command(ciphertext: bytes) -> bytes:
    return encode_command(CLA_PROPRIETARY, INS_EXCHANGE, 0, 0, ciphertext, 0x00)


def reader_status_plaintext(status: int) -> bytes:
    """``97 02 <status>``: the door's answer (values: protocol.exchange_status)."""
    if isinstance(status, bool):  # True == 1 would silently send 0001
        raise TypeError("reader status is a two-byte value, not a granted flag")
    if not 0 <= status <= 0xFFFF:
        raise ValueError(f"reader status is a two-byte value, not {status!r}")
    return tlv.encode(TAG_READER_STATUS, status.to_bytes(2, "big"))


_READER_STATUS_SCHEMA = (Field(TAG_READER_STATUS, (2,)),)


def parse_reader_status(plaintext: bytes) -> bytes:
    return tlv.parse(plaintext, _READER_STATUS_SCHEMA)[TAG_READER_STATUS]


def control_flow_command(s1: int, s2: int) -> bytes:
    data = tlv.encode_all(((TAG_COMMAND_PARAMETERS, bytes([s1])), (TAG_POLICY, bytes([s2]))))
    return encode_command(CLA_PROPRIETARY, INS_CONTROL_FLOW, 0, 0, data)


_CONTROL_FLOW_SCHEMA = (Field(TAG_COMMAND_PARAMETERS, (1,)), Field(TAG_POLICY, (1,)))


def parse_control_flow(data: bytes) -> tuple[int, int]:
    f = tlv.parse(data, _CONTROL_FLOW_SCHEMA)
    return f[TAG_COMMAND_PARAMETERS][0], f[TAG_POLICY][0]
