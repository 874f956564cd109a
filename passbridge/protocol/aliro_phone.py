"""Phone role of the Aliro-style NFC flow (the applet), sans-I/O.

The simulator wraps this; it is the reference a phone developer can diff an
app against. The applet never reveals a stable identifier before the reader
has proven it holds the trusted reader key: AUTH0 answers only an ephemeral
key (and, for FAST, a cryptogram only a holder of the shared persistent key
can open), and the credential key and signature travel encrypted in the AUTH1
answer, after the reader's signature has verified.

``process`` never raises on bad input; it answers an ISO 7816 status word.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from enum import Enum, auto

from cryptography.hazmat.primitives.asymmetric import ec

from passbridge.errors import PassbridgeError
from passbridge.protocol import aliro_messages as msg
from passbridge.protocol.aliro_crypto import (
    AID,
    COMMAND_FAST,
    ENDPOINT_CONTEXT,
    PROTOCOL_VERSION,
    READER_CONTEXT,
    CryptoFailure,
    FastKeys,
    Interface,
    SaltInputs,
    SecureChannel,
    authentication_data,
    derive_fast_keys,
    derive_kdh,
    derive_kpersistent,
    derive_volatile_keys,
    encrypt_cryptogram,
    generate_ephemeral,
    key_slot,
    load_public_key,
    public_key_bytes,
    same_bytes,
    sign_raw,
    verify_raw,
    x_coordinate,
)
from passbridge.protocol.apdu import SW, CommandAPDU, MalformedAPDU, parse_command, response
from passbridge.protocol.exchange_status import PUBLIC_STATUSES, is_success
from passbridge.protocol.tlv import MalformedTLV

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class PhoneMisbehaviour:
    """Ways a test phone can break the protocol, each cheap to switch on.

    bad_signature: flip a bit of the phone's AUTH1 signature.
    truncate_responses: cut every answer's data in half (status word kept).
    wrong_credential_key: sign with, and reveal, a key nobody enrolled.
    trust_wrong_reader_key: trust another reader key, so AUTH1 is refused (6982).
    corrupt_cryptogram: flip a bit of the FAST cryptogram (reader falls back).
    wrong_transaction_id: sign over another transaction id.
    wrong_counter: encrypt the AUTH1 answer with device counter 2 instead of 1.
    extra_tag: append an unknown TLV inside the encrypted AUTH1 answer.
    error_status: answer AUTH1 with 6F00.
    key_slot_only: answer a key slot even when the reader asks for the key.
    """

    bad_signature: bool = False
    truncate_responses: bool = False
    wrong_credential_key: bool = False
    trust_wrong_reader_key: bool = False
    corrupt_cryptogram: bool = False
    wrong_transaction_id: bool = False
    wrong_counter: bool = False
    extra_tag: bool = False
    error_status: bool = False
    key_slot_only: bool = False


class _State(Enum):
    IDLE = auto()
    SELECTED = auto()
    AUTH0_DONE = auto()
    AUTHENTICATED = auto()


class _Refuse(PassbridgeError):
    def __init__(self, sw: SW, why: str) -> None:
        super().__init__(why)
        self.sw = sw


@dataclass
class _Tap:
    """Per-tap state, dropped on SELECT, CONTROL FLOW or any refusal."""

    auth0: msg.Auth0Command | None = None
    salt_inputs: SaltInputs | None = None
    ephemeral: ec.EllipticCurvePrivateKey | None = None
    ephemeral_public: bytes = b""
    fast: FastKeys | None = None
    channel: SecureChannel | None = None


class PhoneApplet:
    """The phone's Aliro applet: one C-APDU in, one R-APDU out.

    ``ephemeral_private_key`` (tests, vectors, a precomputed key) serves the
    next tap only; later taps generate fresh keys. ``kpersistent_store`` maps a
    reader group id to Kpersistent and may be shared between applet instances
    to model one phone across taps.
    """

    SELECT_DATA = msg.select_response_data()

    def __init__(
        self,
        credential_private_key: ec.EllipticCurvePrivateKey,
        trusted_reader_public_key: bytes,
        *,
        interface: Interface = Interface.NFC,
        ephemeral_private_key: ec.EllipticCurvePrivateKey | None = None,
        kpersistent_store: dict[bytes, bytes] | None = None,
        signaling_bitmap: bytes = bytes(2),
        credential_signed_timestamp: bytes = bytes(20),
        revocation_signed_timestamp: bytes = bytes(20),
        deterministic_signatures: bool = False,
        misbehaviour: PhoneMisbehaviour | None = None,
    ) -> None:
        load_public_key(trusted_reader_public_key)
        self._misbehaviour = misbehaviour or PhoneMisbehaviour()
        if self._misbehaviour.wrong_credential_key:
            credential_private_key = generate_ephemeral()
        if self._misbehaviour.trust_wrong_reader_key:
            trusted_reader_public_key = public_key_bytes(generate_ephemeral())
        self._credential = credential_private_key
        self.credential_public_key = public_key_bytes(credential_private_key)
        self._trusted_reader = trusted_reader_public_key
        self._interface = interface
        self._next_ephemeral = ephemeral_private_key
        # Kpersistent per reader group id: the salt of each FAST tap binds the
        # key to the reader's full identity, so one key serves a whole group.
        self.kpersistent_store: dict[bytes, bytes] = (
            kpersistent_store if kpersistent_store is not None else {})
        if len(signaling_bitmap) not in (1, 2):
            raise ValueError("signaling bitmap is 1 or 2 bytes")
        self._bitmap = signaling_bitmap
        self._credential_ts = credential_signed_timestamp
        self._revocation_ts = revocation_signed_timestamp
        self._deterministic = deterministic_signatures
        self._state = _State.IDLE
        self._tap = _Tap()
        # What the reader's EXCHANGE said: the value as received, and whether
        # the phone showed it as an accepted credential (True), a refusal
        # (False) or nothing (None: no EXCHANGE, or one the phone refused).
        self.last_reader_status: int | None = None
        self.last_door_status: bool | None = None
        self.last_flow: str | None = None

    # ------------------------------------------------------------ entry point

    def process(self, command_apdu: bytes) -> bytes:
        try:
            answer = self._dispatch(parse_command(bytes(command_apdu)))
        except _Refuse as refusal:
            log.debug("phone refuses: %s", refusal)
            answer = response(b"", refusal.sw)
        except MalformedAPDU:
            self._reset_tap()
            answer = response(b"", SW.WRONG_LENGTH)
        except (MalformedTLV, ValueError):
            self._reset_tap()
            answer = response(b"", SW.WRONG_DATA)
        except Exception:  # an applet answers, it does not crash
            log.exception("phone applet error")
            self._reset_tap()
            answer = response(b"", SW.UNKNOWN)
        if self._misbehaviour.truncate_responses and len(answer) > 2:
            answer = answer[: (len(answer) - 2) // 2] + answer[-2:]
        return answer

    # ------------------------------------------------------------ dispatch

    def _reset_tap(self) -> None:
        if self._state is not _State.IDLE:
            self._state = _State.SELECTED
        self._tap = _Tap()

    def _refuse(self, sw: SW, why: str) -> _Refuse:
        self._reset_tap()
        return _Refuse(sw, why)

    def _dispatch(self, cmd: CommandAPDU) -> bytes:
        if cmd.cla == msg.CLA_ISO and cmd.ins == msg.INS_SELECT:
            return self._select(cmd)
        if cmd.cla != msg.CLA_PROPRIETARY:
            raise _Refuse(SW.CLA_NOT_SUPPORTED, f"class {cmd.cla:02X}")
        if cmd.ins not in (msg.INS_AUTH0, msg.INS_AUTH1, msg.INS_EXCHANGE, msg.INS_CONTROL_FLOW):
            raise _Refuse(SW.INS_NOT_SUPPORTED, f"instruction {cmd.ins:02X}")
        if self._state is _State.IDLE:
            raise _Refuse(SW.CONDITIONS_NOT_SATISFIED, "applet not selected")
        if cmd.p1 or cmd.p2:
            raise self._refuse(SW.INCORRECT_P1P2, "P1/P2 must be 00 00")
        if cmd.ins == msg.INS_AUTH0:
            return self._auth0(cmd.data)
        if cmd.ins == msg.INS_AUTH1:
            return self._auth1(cmd.data)
        if cmd.ins == msg.INS_EXCHANGE:
            return self._exchange(cmd.data)
        msg.parse_control_flow(cmd.data)
        self._reset_tap()
        return response()

    def _select(self, cmd: CommandAPDU) -> bytes:
        if cmd.p1 != 0x04 or cmd.p2 != 0x00:
            raise _Refuse(SW.INCORRECT_P1P2, "SELECT by name only")
        if not same_bytes(cmd.data, AID):
            self._state = _State.IDLE
            self._tap = _Tap()
            raise _Refuse(SW.FILE_NOT_FOUND, "other application")
        self._state = _State.SELECTED
        self._tap = _Tap()
        self.last_reader_status = None
        self.last_door_status = None
        self.last_flow = None
        return response(self.SELECT_DATA)

    def _take_ephemeral(self) -> ec.EllipticCurvePrivateKey:
        key, self._next_ephemeral = self._next_ephemeral, None
        return key if key is not None else generate_ephemeral()

    def _auth0(self, data: bytes) -> bytes:
        if self._state is not _State.SELECTED:
            raise self._refuse(SW.CONDITIONS_NOT_SATISFIED, "AUTH0 out of order")
        auth0 = msg.parse_auth0_command(data)
        if auth0.version != PROTOCOL_VERSION:
            raise self._refuse(SW.WRONG_DATA, "unsupported protocol version")
        tap = self._tap
        tap.auth0 = auth0
        tap.ephemeral = self._take_ephemeral()
        tap.ephemeral_public = public_key_bytes(tap.ephemeral)
        tap.salt_inputs = SaltInputs(
            reader_public_x=x_coordinate(self._trusted_reader),
            reader_id=auth0.reader_id,
            interface=self._interface,
            version=auth0.version,
            reader_ephemeral_x=x_coordinate(auth0.reader_ephemeral_public_key),
            transaction_id=auth0.transaction_id,
            command_parameters=auth0.command_parameters,
            authentication_policy=auth0.authentication_policy,
            select_a5=_SELECT_A5,
        )
        cryptogram = None
        kpersistent = self.kpersistent_store.get(auth0.reader_id[:16])
        if auth0.command_parameters == COMMAND_FAST and kpersistent is not None:
            tap.fast = derive_fast_keys(kpersistent, tap.salt_inputs,
                                        x_coordinate(tap.ephemeral_public),
                                        self.credential_public_key)
            content = msg.CryptogramContent(
                self._bitmap if len(self._bitmap) == 2 else bytes(1) + self._bitmap,
                self._credential_ts, self._revocation_ts).encode()
            cryptogram = encrypt_cryptogram(tap.fast.cryptogram_sk, content)
            if self._misbehaviour.corrupt_cryptogram:
                cryptogram = bytes([cryptogram[0] ^ 0x01]) + cryptogram[1:]
        self._state = _State.AUTH0_DONE
        return response(msg.Auth0Response(tap.ephemeral_public, cryptogram).encode())

    def _auth1(self, data: bytes) -> bytes:
        tap = self._tap
        if self._state is not _State.AUTH0_DONE or tap.auth0 is None or tap.ephemeral is None:
            raise self._refuse(SW.CONDITIONS_NOT_SATISFIED, "AUTH1 out of order")
        if self._misbehaviour.error_status:
            raise self._refuse(SW.UNKNOWN, "misbehaving: error status")
        auth1 = msg.parse_auth1_command(data)
        assert tap.salt_inputs is not None
        endpoint_x = x_coordinate(tap.ephemeral_public)
        reader_x = x_coordinate(tap.auth0.reader_ephemeral_public_key)
        reader_signed = authentication_data(tap.auth0.reader_id, endpoint_x, reader_x,
                                            tap.auth0.transaction_id, READER_CONTEXT)
        if not verify_raw(self._trusted_reader, auth1.reader_signature, reader_signed):
            # Nothing about the credential has left the phone at this point.
            raise self._refuse(SW.SECURITY_STATUS_NOT_SATISFIED, "reader signature rejected")
        txid = tap.auth0.transaction_id
        if self._misbehaviour.wrong_transaction_id:
            txid = bytes(b ^ 0xFF for b in txid)
        own_signed = authentication_data(tap.auth0.reader_id, endpoint_x, reader_x, txid,
                                         ENDPOINT_CONTEXT)
        signature = sign_raw(self._credential, own_signed, deterministic=self._deterministic)
        if self._misbehaviour.bad_signature:
            signature = signature[:-1] + bytes([signature[-1] ^ 0x01])
        kdh = derive_kdh(tap.ephemeral, tap.auth0.reader_ephemeral_public_key,
                         tap.auth0.transaction_id)
        volatile = derive_volatile_keys(kdh, tap.salt_inputs, endpoint_x)
        channel = SecureChannel(send_key=volatile.exchange_sk_device,
                                receive_key=volatile.exchange_sk_reader, is_reader=False)
        give_key = auth1.return_public_key and not self._misbehaviour.key_slot_only
        plaintext = msg.Auth1Answer(
            credential_public_key=self.credential_public_key if give_key else None,
            key_slot=None if give_key else key_slot(self.credential_public_key),
            endpoint_signature=signature,
            signaling_bitmap=self._bitmap,
        ).encode()
        if self._misbehaviour.extra_tag:
            plaintext += bytes.fromhex("990100")
        if self._misbehaviour.wrong_counter:
            channel.send_counter += 1
        ciphertext = channel.encrypt(plaintext)
        self.kpersistent_store[tap.auth0.reader_id[:16]] = derive_kpersistent(
            kdh, tap.salt_inputs, endpoint_x, self.credential_public_key)
        tap.channel = channel
        tap.fast = None
        self.last_flow = "standard"
        self._state = _State.AUTHENTICATED
        return response(ciphertext)

    def _exchange(self, data: bytes) -> bytes:
        tap = self._tap
        if self._state is _State.AUTH0_DONE and tap.fast is not None:
            # The reader skipped AUTH1: it opened our cryptogram, this is FAST.
            tap.channel = SecureChannel(send_key=tap.fast.exchange_sk_device,
                                        receive_key=tap.fast.exchange_sk_reader, is_reader=False)
            self.last_flow = "fast"
            self._state = _State.AUTHENTICATED
        if self._state is not _State.AUTHENTICATED or tap.channel is None:
            raise self._refuse(SW.CONDITIONS_NOT_SATISFIED, "EXCHANGE before authentication")
        try:
            plaintext = tap.channel.decrypt(data)
        except CryptoFailure:
            raise self._refuse(SW.SECURITY_STATUS_NOT_SATISFIED, "EXCHANGE does not decrypt"
                               ) from None
        status = int.from_bytes(msg.parse_reader_status(plaintext), "big")
        self.last_reader_status = status
        if status not in PUBLIC_STATUSES:
            # As a phone following the public lists does (NXP's user device):
            # "command not compliant", and the session ends; nothing is shown.
            self._state = _State.IDLE
            self._tap = _Tap()
            raise _Refuse(SW.COMMAND_NOT_COMPLIANT, f"reader status {status:04X} is not listed")
        self.last_door_status = is_success(status)
        return response()


_SELECT_A5 = msg.parse_select_response(PhoneApplet.SELECT_DATA).a5_raw
