"""Reader role of the Aliro-style NFC flow, sans-I/O.

One :class:`ReaderTransaction` is one tap. The caller (the bridge's reader
driver, a test) sends the bytes it is handed and feeds back the phone's
answer; the transaction answers with an event saying what to do next. Every
malformed, out-of-order or unauthenticated answer ends the transaction with
:class:`Failed`; ``receive`` never raises on wire input.

It does no I/O and calls nothing that may (the style of h11 and wsproto):
where the tap needs the key store it returns an event the caller answers.
:class:`NeedFastKeys` (the phone sent a FAST cryptogram) is answered with
:meth:`ReaderTransaction.fast_keys_found` and the persistent keys, likeliest
first (at most ``fast_trials`` are tried, taken one by one from the caller's
iterable in that call); :class:`NeedCredential` (is this key enrolled?) with
:meth:`ReaderTransaction.credential_found`. A STANDARD tap's new Kpersistent
comes out in :class:`Authenticated` for the caller to keep.

Flows:
  STANDARD: SELECT, AUTH0 (41=00), AUTH1, then EXCHANGE with the door status.
  FAST:     SELECT, AUTH0 (41=01) answered with a cryptogram the reader can
            open with a persistent key it holds, then EXCHANGE.
  FAST attempt that does not match (no cryptogram, or none of the reader's
  persistent keys opens it): the same tap continues with AUTH1 as in STANDARD,
  the key schedule salted with the 41=01 actually sent.
"""

from __future__ import annotations

import secrets
from collections.abc import Iterable
from dataclasses import dataclass, field
from enum import StrEnum, auto
from functools import cached_property
from itertools import islice
from typing import Literal

from cryptography.hazmat.primitives.asymmetric import ec

from passbridge.errors import PassbridgeError
from passbridge.protocol import aliro_messages as msg
from passbridge.protocol.aliro_crypto import (
    COMMAND_FAST,
    COMMAND_STANDARD,
    ENDPOINT_CONTEXT,
    POLICY_USER_DEVICE,
    PROTOCOL_VERSION,
    READER_CONTEXT,
    CryptoFailure,
    EphemeralKeyPool,
    FastKeys,
    Interface,
    SaltInputs,
    SecureChannel,
    VolatileKeys,
    authentication_data,
    decrypt_cryptogram,
    derive_fast_keys,
    derive_kdh,
    derive_kpersistent,
    derive_volatile_keys,
    generate_ephemeral_pair,
    public_key_bytes,
    same_bytes,
    sign_raw,
    verify_raw,
    x_coordinate,
)
from passbridge.protocol.apdu import SW, MalformedAPDU, parse_response
from passbridge.protocol.tlv import MalformedTLV

__all__ = [
    "Authenticated",
    "Failed",
    "FastKey",
    "Finished",
    "Interface",
    "NeedCredential",
    "NeedFastKeys",
    "ReaderIdentity",
    "ReaderTransaction",
    "SendCommand",
    "State",
    "TRANSITIONS",
]


@dataclass(frozen=True)
class ReaderIdentity:
    """The site's reader key and identifiers, shared by its readers."""

    private_key: ec.EllipticCurvePrivateKey
    group_id: bytes
    sub_id: bytes
    select_answers: msg.SelectAnswers = field(
        default_factory=msg.SelectAnswers, init=False, repr=False, compare=False)
    """The last SELECT answer its readers parsed (:class:`~.aliro_messages.SelectAnswers`)."""

    def __post_init__(self) -> None:
        if len(self.group_id) != 16 or len(self.sub_id) != 16:
            raise ValueError("reader group id and sub id are 16 bytes each")

    # Derived once per identity, not per tap: encoding the public key means an
    # OpenSSL call, and every tap needs the key's x coordinate for its salts.
    @cached_property
    def reader_id(self) -> bytes:
        return self.group_id + self.sub_id

    @cached_property
    def public_key(self) -> bytes:
        return public_key_bytes(self.private_key)

    @cached_property
    def public_x(self) -> bytes:
        return x_coordinate(self.public_key)

    @cached_property
    def auth0_templates(self) -> dict[int, msg.Auth0Template]:
        """AUTH0 as these readers send it, by command parameters (FAST or
        STANDARD preferred): only the ephemeral key and transaction id change
        from tap to tap."""
        return {parameters: msg.auth0_template(parameters, POLICY_USER_DEVICE,
                                               PROTOCOL_VERSION, self.reader_id)
                for parameters in (COMMAND_FAST, COMMAND_STANDARD)}

FastKey = tuple[str, bytes, bytes]
"""(credential id, credential public key, Kpersistent): one FAST candidate."""


@dataclass(frozen=True)
class SendCommand:
    """Send ``apdu`` to the phone and feed its answer to :meth:`ReaderTransaction.receive`."""

    apdu: bytes


@dataclass(frozen=True)
class Authenticated:
    """The phone proved it holds an enrolled credential key; the door decides next."""

    credential_id: str
    public_key: bytes
    flow: Literal["standard", "fast"]
    transaction_id: bytes
    kpersistent: bytes | None = field(default=None, repr=False, compare=False)
    """The persistent key a STANDARD tap derived, for the caller to keep
    (the phone's next tap can then be FAST); None after a FAST tap."""


@dataclass(frozen=True)
class NeedFastKeys:
    """The phone sent a FAST cryptogram: answer with
    :meth:`ReaderTransaction.fast_keys_found` and the persistent keys to try."""


@dataclass(frozen=True)
class NeedCredential:
    """Is this 65-byte key enrolled and unrevoked? Answer with
    :meth:`ReaderTransaction.credential_found` (the credential id, or None)."""

    public_key: bytes
    flow: Literal["standard", "fast"]


@dataclass(frozen=True)
class Finished:
    pass


@dataclass(frozen=True)
class Failed:
    reason: str
    detail: str


Event = SendCommand | NeedFastKeys | NeedCredential | Authenticated | Finished | Failed

class State(StrEnum):
    """Where a tap is; the reader's flow is the table :data:`TRANSITIONS`."""

    NEW = auto()
    SELECT_SENT = auto()
    AUTH0_SENT = auto()
    FAST_KEYS_ASKED = auto()
    AUTH1_SENT = auto()
    CREDENTIAL_ASKED = auto()
    AUTHENTICATED = auto()
    EXCHANGE_SENT = auto()
    FINISHED = auto()
    FAILED = auto()


class Input(StrEnum):
    """What moves a tap: a call of the caller, or what the phone's answer came to."""

    START = auto()  # start(): SELECT goes out
    SELECT_OK = auto()  # the phone offers version 0100: AUTH0 goes out
    CRYPTOGRAM = auto()  # AUTH0 answer with a FAST cryptogram (9D)
    NO_CRYPTOGRAM = auto()  # AUTH0 answer without one: AUTH1 goes out
    FAST_MATCH = auto()  # fast_keys_found(): one candidate opens the cryptogram
    NO_FAST_MATCH = auto()  # fast_keys_found(): none does (fall-back): AUTH1 goes out
    AUTH1_OK = auto()  # the AUTH1 answer decrypts and the phone's signature verifies
    CREDENTIAL_FOUND = auto()  # credential_found() with an enrolled credential id
    DOOR_STATUS = auto()  # door_status(): EXCHANGE goes out
    EXCHANGE_OK = auto()  # the phone acknowledged the door status
    FAIL = auto()  # any refusal, malformed answer or failed check


TRANSITIONS: dict[tuple[State, Input], State] = {
    (State.NEW, Input.START): State.SELECT_SENT,
    (State.SELECT_SENT, Input.SELECT_OK): State.AUTH0_SENT,
    (State.AUTH0_SENT, Input.CRYPTOGRAM): State.FAST_KEYS_ASKED,
    (State.AUTH0_SENT, Input.NO_CRYPTOGRAM): State.AUTH1_SENT,
    (State.FAST_KEYS_ASKED, Input.FAST_MATCH): State.CREDENTIAL_ASKED,
    (State.FAST_KEYS_ASKED, Input.NO_FAST_MATCH): State.AUTH1_SENT,
    (State.AUTH1_SENT, Input.AUTH1_OK): State.CREDENTIAL_ASKED,
    (State.CREDENTIAL_ASKED, Input.CREDENTIAL_FOUND): State.AUTHENTICATED,
    (State.AUTHENTICATED, Input.DOOR_STATUS): State.EXCHANGE_SENT,
    (State.EXCHANGE_SENT, Input.EXCHANGE_OK): State.FINISHED,
    (State.SELECT_SENT, Input.FAIL): State.FAILED,
    (State.AUTH0_SENT, Input.FAIL): State.FAILED,
    (State.FAST_KEYS_ASKED, Input.FAIL): State.FAILED,
    (State.AUTH1_SENT, Input.FAIL): State.FAILED,
    (State.CREDENTIAL_ASKED, Input.FAIL): State.FAILED,
    (State.EXCHANGE_SENT, Input.FAIL): State.FAILED,
}
"""The reader's side of the Aliro flow (protocols/nfc/README.md, "Reader states"),
held as data so it can be read against the flow: (state, input) -> next state.
Anything not in the table is refused: a phone's answer with no command
outstanding fails the tap (``out_of_order``); a caller's call out of turn
raises RuntimeError. FINISHED and FAILED have no way out."""

AWAITING_ANSWER = frozenset((State.SELECT_SENT, State.AUTH0_SENT, State.AUTH1_SENT,
                             State.EXCHANGE_SENT))
"""States in which a command is outstanding, so an answer is expected."""


class _Abort(PassbridgeError):
    def __init__(self, reason: str, detail: str) -> None:
        super().__init__(detail)
        self.reason = reason
        self.detail = detail


@dataclass
class DerivedKeys:
    """What the tap derived, exposed for conformance tests and BLE hand-over."""

    kdh: bytes | None = None
    volatile: VolatileKeys | None = None
    fast: FastKeys | None = None
    kpersistent: bytes | None = None
    salt_inputs: SaltInputs | None = None
    extra: dict[str, bytes] = field(default_factory=dict)


MAX_FAST_TRIALS = 64
"""Persistent keys one FAST cryptogram is tried against before the tap falls
back to STANDARD (protocols/nfc/README.md, "FAST and its fall-back"). The
caller hands the likeliest keys first; without a bound the trial is linear
in the number of phones holding a key (about 10-20 us each)."""


class ReaderTransaction:
    """One tap, reader side. Not thread-safe: one caller drives one tap."""

    def __init__(
        self,
        identity: ReaderIdentity,
        *,
        interface: Interface = Interface.NFC,
        prefer_fast: bool = True,
        ephemeral_private_key: ec.EllipticCurvePrivateKey | None = None,
        transaction_id: bytes | None = None,
        key_pool: EphemeralKeyPool | None = None,
        deterministic_signatures: bool = False,
        fast_trials: int = MAX_FAST_TRIALS,
    ) -> None:
        if transaction_id is not None and len(transaction_id) != 16:
            raise ValueError("transaction id is 16 bytes")
        if fast_trials < 0:
            raise ValueError("fast_trials must not be negative")
        self._fast_trials = fast_trials
        self.fast_keys_tried = 0
        """Persistent keys this tap tried on the cryptogram (benchmarks, tests)."""
        self._identity = identity
        self._interface = interface
        self._command_parameters = COMMAND_FAST if prefer_fast else COMMAND_STANDARD
        if ephemeral_private_key is not None:
            self._ephemeral = ephemeral_private_key
            self._ephemeral_public = public_key_bytes(ephemeral_private_key)
        elif key_pool is not None:
            self._ephemeral, self._ephemeral_public = key_pool.take_pair()
        else:
            self._ephemeral, self._ephemeral_public = generate_ephemeral_pair()
        self._ephemeral_x = x_coordinate(self._ephemeral_public)
        self.transaction_id = transaction_id or secrets.token_bytes(16)
        self._deterministic = deterministic_signatures
        self.state = State.NEW
        self._salt_inputs: SaltInputs | None = None
        self._endpoint_key: ec.EllipticCurvePublicKey | None = None
        self._endpoint_x = b""
        self._channel: SecureChannel | None = None
        self._kdh: bytes | None = None
        self._volatile: VolatileKeys | None = None
        self._fast: FastKeys | None = None
        self._kpersistent: bytes | None = None
        self._candidate: tuple[bytes, Literal["standard", "fast"]] | None = None
        self._cryptogram = b""
        self.authenticated: Authenticated | None = None

    # ------------------------------------------------------------ public API

    def start(self) -> bytes:
        """The SELECT command that opens the tap."""
        self._move(Input.START)
        return msg.SELECT_COMMAND

    def receive(self, response_apdu: bytes) -> Event:
        """Feed the phone's answer to the last command; never raises on wire input."""
        try:
            state = self.state
            if state not in AWAITING_ANSWER:
                raise _Abort("out_of_order", f"no command outstanding (state {state.name})")
            answer = parse_response(bytes(response_apdu))
            if answer.sw != SW.OK:
                raise _Abort("status_word", f"{state.name} answered {answer.sw:04X}")
            if state is State.SELECT_SENT:
                return self._on_select(answer.data)
            if state is State.AUTH0_SENT:
                return self._on_auth0(answer.data)
            if state is State.AUTH1_SENT:
                return self._on_auth1(answer.data)
            return self._on_exchange(answer.data)
        except Exception as exc:  # never a traceback, never a grant
            return self._failure(exc)

    def fast_keys_found(self, candidates: Iterable[FastKey]) -> Event:
        """The caller's answer to :class:`NeedFastKeys`: persistent keys,
        likeliest first. At most ``fast_trials`` of them are taken from the
        iterable, one by one, until one opens the cryptogram
        (:class:`NeedCredential` follows); when none does, the same tap falls
        back to STANDARD (AUTH1 goes out)."""
        self._move_or_raise(State.FAST_KEYS_ASKED, "fast_keys_found()")
        try:
            found = self._match_cryptogram(islice(candidates, self._fast_trials))
            return found if found is not None else self._send_auth1(Input.NO_FAST_MATCH)
        except Exception as exc:  # never a traceback, never a grant
            return self._failure(exc)

    def _failure(self, exc: Exception) -> Failed:
        """What an exception on the tap path means for the tap."""
        if isinstance(exc, _Abort):
            return self._fail(exc.reason, exc.detail)
        if isinstance(exc, MalformedTLV | MalformedAPDU):
            return self._fail("malformed", str(exc))
        if isinstance(exc, CryptoFailure):
            return self._fail("decrypt_failed", str(exc))
        if isinstance(exc, ValueError):  # invalid points and the like
            return self._fail("malformed", str(exc))
        return self._fail("internal", f"{type(exc).__name__}: {exc}")

    def credential_found(self, credential_id: str | None) -> Authenticated | Failed:
        """The caller's answer to :class:`NeedCredential`: the credential id
        the key is enrolled under, or None (unknown or revoked: the tap fails
        with ``unknown_credential``)."""
        self._move_or_raise(State.CREDENTIAL_ASKED, "credential_found()")
        assert self._candidate is not None
        public_key, flow = self._candidate
        self._candidate = None
        if credential_id is None:
            why = ("persistent key of a revoked credential" if flow == "fast"
                   else "no enrolled credential for this key")
            return self._fail("unknown_credential", why)
        self._move(Input.CREDENTIAL_FOUND)
        self.authenticated = Authenticated(
            credential_id, public_key, flow, self.transaction_id,
            self._kpersistent if flow == "standard" else None)
        return self.authenticated

    def door_status(self, status: int) -> bytes:
        """The EXCHANGE command telling the phone the door's decision.

        ``status`` is a reader status value; the caller picks it from the
        decision with :func:`passbridge.protocol.exchange_status.exchange_status`
        (a phone refuses values outside the public lists).
        """
        self._move(Input.DOOR_STATUS)
        assert self._channel is not None  # AUTHENTICATED always has one
        return msg.exchange_command(self._channel.encrypt(msg.reader_status_plaintext(status)))

    def control_flow(self, success: bool = False) -> bytes:
        """CONTROL FLOW that ends the phone's transaction without EXCHANGE.

        For the adapter to send after a Failed event, so the phone shows a
        clear result instead of waiting for its timeout.
        """
        return msg.control_flow_command(0x01 if success else 0x00, 0x00)

    @property
    def keys(self) -> DerivedKeys:
        """What the tap has derived so far (conformance tests, vector scripts)."""
        return DerivedKeys(kdh=self._kdh, volatile=self._volatile, fast=self._fast,
                           kpersistent=self._kpersistent, salt_inputs=self._salt_inputs)

    @property
    def done(self) -> bool:
        return self.state in (State.FINISHED, State.FAILED)

    # ------------------------------------------------------------ steps

    def _move_or_raise(self, expected: State, call: str) -> None:
        if self.state is not expected:
            raise RuntimeError(f"{call} is not allowed in state {self.state.name}")

    def _move(self, event: Input) -> None:
        """Take the transition the table has for ``event``; refuse anything else."""
        after = TRANSITIONS.get((self.state, event))
        if after is None:
            raise RuntimeError(f"{event.name} is not allowed in state {self.state.name}")
        self.state = after

    def _fail(self, reason: str, detail: str) -> Failed:
        if (self.state, Input.FAIL) in TRANSITIONS:
            self._move(Input.FAIL)
        else:  # an answer out of order: nothing was outstanding, the tap ends here
            self.state = State.FAILED
        self._channel = None
        return Failed(reason, detail)

    def _on_select(self, data: bytes) -> Event:
        answer = self._identity.select_answers.parse(data)
        if PROTOCOL_VERSION not in answer.versions:
            raise _Abort("unsupported_version",
                         "phone offers " + ",".join(v.hex() for v in answer.versions))
        identity = self._identity
        self._salt_inputs = SaltInputs(
            identity.public_x, identity.reader_id, self._interface, PROTOCOL_VERSION,
            self._ephemeral_x, self.transaction_id, self._command_parameters,
            POLICY_USER_DEVICE, answer.a5_raw)
        self._move(Input.SELECT_OK)
        auth0 = identity.auth0_templates[self._command_parameters]
        return SendCommand(auth0.command(self._ephemeral_public, self.transaction_id))

    def _on_auth0(self, data: bytes) -> Event:
        point, cryptogram, key = msg.read_auth0_response(data)
        if cryptogram is not None and self._command_parameters != COMMAND_FAST:
            raise MalformedTLV("cryptogram in answer to a STANDARD AUTH0")
        self._endpoint_key = key
        self._endpoint_x = x_coordinate(point)
        if same_bytes(point, self._ephemeral_public):
            raise _Abort("malformed", "phone echoed the reader's ephemeral key")
        if cryptogram is not None:
            self._cryptogram = cryptogram
            self._move(Input.CRYPTOGRAM)
            return NeedFastKeys()
        return self._send_auth1(Input.NO_CRYPTOGRAM)

    def _send_auth1(self, event: Input) -> SendCommand:
        signed = authentication_data(self._identity.reader_id, self._endpoint_x,
                                     self._ephemeral_x, self.transaction_id, READER_CONTEXT)
        signature = sign_raw(self._identity.private_key, signed,
                             deterministic=self._deterministic)
        self._move(event)
        return SendCommand(msg.auth1_command(True, signature))

    def _match_cryptogram(self, candidates: Iterable[FastKey]) -> Event | None:
        """Try the FAST candidates in the caller's order; the first whose keys
        open the cryptogram wins (if its credential is still enrolled: the
        caller says so next).

        A mismatch is not an error: the phone may hold a key the reader has
        forgotten (or the reverse), or one past the trial bound, and the tap
        then continues with AUTH1.
        """
        assert self._salt_inputs is not None
        for _cred, public_key, kpersistent in candidates:
            self.fast_keys_tried += 1
            try:
                fast = derive_fast_keys(kpersistent, self._salt_inputs, self._endpoint_x,
                                        public_key)
                content = decrypt_cryptogram(fast.cryptogram_sk, self._cryptogram)
            except (CryptoFailure, ValueError):
                continue
            try:
                msg.parse_cryptogram_content(content)
            except MalformedTLV as exc:
                # It authenticated under our key, so the phone is known but broken.
                raise _Abort("malformed", f"cryptogram content: {exc}") from None
            self._fast = fast
            self._kpersistent = kpersistent
            self._channel = SecureChannel(send_key=fast.exchange_sk_reader,
                                          receive_key=fast.exchange_sk_device, is_reader=True)
            return self._ask_credential(Input.FAST_MATCH, public_key, "fast")
        return None

    def _on_auth1(self, data: bytes) -> Event:
        assert self._salt_inputs is not None and self._endpoint_key is not None
        if not data:
            raise MalformedTLV("empty AUTH1 answer")
        kdh = derive_kdh(self._ephemeral, self._endpoint_key, self.transaction_id)
        volatile = derive_volatile_keys(kdh, self._salt_inputs, self._endpoint_x)
        self._kdh = kdh
        self._volatile = volatile
        channel = SecureChannel(send_key=volatile.exchange_sk_reader,
                                receive_key=volatile.exchange_sk_device, is_reader=True)
        answer = msg.parse_auth1_answer(channel.decrypt(data))
        public_key = answer.credential_public_key
        if public_key is None:
            raise _Abort("malformed", "phone answered a key slot; the reader asked for its key")
        signed = authentication_data(self._identity.reader_id, self._endpoint_x,
                                     self._ephemeral_x, self.transaction_id, ENDPOINT_CONTEXT)
        if not verify_raw(answer.credential_key or public_key, answer.endpoint_signature,
                          signed):
            raise _Abort("bad_signature", "phone signature does not verify")
        self._kpersistent = derive_kpersistent(kdh, self._salt_inputs, self._endpoint_x,
                                               public_key)
        self._channel = channel
        return self._ask_credential(Input.AUTH1_OK, public_key, "standard")

    def _ask_credential(self, event: Input, public_key: bytes,
                        flow: Literal["standard", "fast"]) -> NeedCredential:
        self._move(event)
        self._candidate = (public_key, flow)
        return NeedCredential(public_key, flow)

    def _on_exchange(self, data: bytes) -> Event:
        assert self._channel is not None
        if data:
            self._channel.decrypt(data)  # authenticated; content is not used
        self._move(Input.EXCHANGE_OK)
        self._channel = None
        return Finished()
