"""The one driver of a reader transaction, for NFC and Bluetooth alike.

A :class:`~passbridge.protocol.aliro_reader.ReaderTransaction` does no I/O;
this module gives it what it asks for. The steps of one tap are written once,
as a generator (:func:`reader_steps`) that yields what the tap needs from the
outside world, a command to send (:class:`Transmit`) or a verdict to report
(:class:`Report`), and is sent back the answer. The key store is consulted
here, never inside the transaction: :class:`NeedFastKeys` and
:class:`NeedCredential` are answered from the directory, and a STANDARD
tap's new Kpersistent is stored.

Two pumps run the steps: :func:`run_reader` for the NFC reader thread
(blocking ``exchange`` and ``decide``) and :func:`run_reader_async` for a
Bluetooth link (awaitable ones). The adapters under them only move bytes.
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable, Generator, Iterable
from dataclasses import dataclass
from typing import Protocol

from cryptography.hazmat.primitives.asymmetric import ec

from passbridge.protocol.aliro_crypto import Interface
from passbridge.protocol.aliro_reader import (
    Authenticated,
    Event,
    Failed,
    FastKey,
    Finished,
    NeedCredential,
    NeedFastKeys,
    ReaderIdentity,
    ReaderTransaction,
    SendCommand,
)

__all__ = [
    "CredentialDirectory",
    "InMemoryCredentials",
    "ReaderKeyMaterial",
    "ReaderOutcome",
    "Report",
    "Transmit",
    "new_transaction",
    "reader_identity",
    "reader_steps",
    "run_reader",
    "run_reader_async",
    "settle",
]

log = logging.getLogger(__name__)

MAX_COMMANDS_PER_TAP = 8
"""A STANDARD tap is 4 round trips; the transaction never asks for more, and
the driver stops a tap that would."""


class CredentialDirectory(Protocol):
    """How the driver resolves a phone; backed by enrolment storage (the key
    store, or a door's FastKeyOrder in front of it)."""

    def credential_for_public_key(self, public_key: bytes) -> str | None:
        """Credential id of an enrolled, unrevoked 65-byte key, else None."""

    def persistent_keys(self) -> Iterable[FastKey]:
        """(credential id, credential public key, Kpersistent) candidates for
        FAST, likeliest first (the reader takes only the first MAX_FAST_TRIALS)."""

    def remember_persistent_key(self, credential_id: str, public_key: bytes,
                                kpersistent: bytes) -> None:
        """Store the key a STANDARD tap yielded so the next tap can be FAST."""


class ReaderKeyMaterial(Protocol):
    """The reader key as the key store keeps it (adapters.keystore.ReaderKey)."""

    @property
    def private_key(self) -> ec.EllipticCurvePrivateKey: ...
    @property
    def group_id(self) -> bytes: ...
    @property
    def sub_id(self) -> bytes: ...


def reader_identity(key: ReaderKeyMaterial) -> ReaderIdentity:
    """The Aliro reader's identity from the key store's plain key material:
    the bridge builds protocol objects, the key store only keeps keys."""
    return ReaderIdentity(key.private_key, key.group_id, key.sub_id)


def new_transaction(identity: ReaderIdentity, *,
                    interface: Interface = Interface.NFC) -> ReaderTransaction:
    """A transaction for one tap as the bridge runs it (FAST preferred)."""
    return ReaderTransaction(identity, interface=interface)


def settle(transaction: ReaderTransaction, event: Event,
           directory: CredentialDirectory) -> Event:
    """Answer what the transaction asks of the key store: :class:`NeedFastKeys`
    with the directory's persistent keys (likeliest first; the transaction
    takes at most MAX_FAST_TRIALS), :class:`NeedCredential` with the
    enrolment, and keep the Kpersistent a STANDARD tap yields so the phone's
    next tap can be FAST. Other events pass through unchanged."""
    if isinstance(event, NeedFastKeys):
        event = transaction.fast_keys_found(directory.persistent_keys())
    if not isinstance(event, NeedCredential):
        return event
    answered = transaction.credential_found(
        directory.credential_for_public_key(event.public_key))
    if isinstance(answered, Authenticated) and answered.kpersistent is not None:
        directory.remember_persistent_key(answered.credential_id, answered.public_key,
                                          answered.kpersistent)
    return answered


# Steps are made and consumed within one tap; plain (not frozen) slotted
# dataclasses are built without per-field setattr calls.
@dataclass(slots=True)
class Transmit:
    """Send ``apdu`` and send the phone's answer back into the steps.

    ``courtesy``: the closing CONTROL FLOW after a failure; the tap's result
    is settled, so a phone that has gone (an error here) changes nothing.
    """

    apdu: bytes
    courtesy: bool = False


@dataclass(slots=True)
class Report:
    """How authentication ended. For :class:`Authenticated` the answer sent
    back is the reader status (protocol.exchange_status) EXCHANGE tells the
    phone; for :class:`Failed` the answer is ignored (CONTROL FLOW follows)."""

    event: Authenticated | Failed


Step = Transmit | Report


@dataclass(frozen=True, slots=True)
class ReaderOutcome:
    """What one run of a transaction came to."""

    authenticated: Authenticated | None
    failure: Failed | None = None
    """Why authentication failed, or why the EXCHANGE step failed after it."""
    status: int | None = None
    """The reader status EXCHANGE carried (None: no EXCHANGE was sent)."""
    finished: bool = False
    """The phone acknowledged the door status."""
    refusal: int | None = None
    """The status word of a phone that refused the door status."""


def reader_steps(transaction: ReaderTransaction, directory: CredentialDirectory
                 ) -> Generator[Step, bytes | int | None, ReaderOutcome]:
    """The steps of one tap; the pumps below carry them out."""
    answer = yield Transmit(transaction.start())
    assert isinstance(answer, bytes)
    event = transaction.receive(answer)
    for _ in range(MAX_COMMANDS_PER_TAP):
        if isinstance(event, SendCommand):
            answer = yield Transmit(event.apdu)
            assert isinstance(answer, bytes)
            event = transaction.receive(answer)
        elif isinstance(event, NeedFastKeys | NeedCredential):
            event = settle(transaction, event, directory)
        else:
            break
    else:
        event = Failed("out_of_order", "tap did not finish")
    if not isinstance(event, Authenticated):
        failure = event if isinstance(event, Failed) else Failed(
            "out_of_order", f"unexpected {type(event).__name__}")
        yield Report(failure)
        yield Transmit(transaction.control_flow(success=False), courtesy=True)
        return ReaderOutcome(None, failure)
    status = yield Report(event)
    assert isinstance(status, int)
    answer = yield Transmit(transaction.door_status(status))
    assert isinstance(answer, bytes)
    final = transaction.receive(answer)
    if isinstance(final, Failed):
        refusal = (answer[-2] << 8) | answer[-1] if final.reason == "status_word" else None
        return ReaderOutcome(event, final, status, refusal=refusal)
    return ReaderOutcome(event, None, status, finished=isinstance(final, Finished))


def run_reader(steps: Generator[Step, bytes | int | None, ReaderOutcome],
               exchange: Callable[[bytes], bytes],
               report: Callable[[Authenticated | Failed], int | None]) -> ReaderOutcome:
    """Carry the steps out with a blocking ``exchange`` (the NFC reader thread).

    ``exchange`` errors propagate (the tap ends with that error), except on
    the courtesy CONTROL FLOW.
    """
    try:
        step = next(steps)
        while True:
            if isinstance(step, Report):
                step = steps.send(report(step.event))
            elif step.courtesy:
                try:
                    exchange(step.apdu)
                except Exception:  # the result is settled; this is courtesy
                    log.debug("phone did not take the closing command", exc_info=True)
                step = steps.send(None)
            else:
                step = steps.send(exchange(step.apdu))
    except StopIteration as done:
        return done.value  # type: ignore[no-any-return]


async def run_reader_async(steps: Generator[Step, bytes | int | None, ReaderOutcome],
                           exchange: Callable[[bytes], Awaitable[bytes]],
                           report: Callable[[Authenticated | Failed], Awaitable[int | None]]
                           ) -> ReaderOutcome:
    """The same as :func:`run_reader` over awaitable I/O (a Bluetooth link)."""
    try:
        step = next(steps)
        while True:
            if isinstance(step, Report):
                step = steps.send(await report(step.event))
            elif step.courtesy:
                try:
                    await exchange(step.apdu)
                except Exception:  # the result is settled; this is courtesy
                    log.debug("phone did not take the closing command", exc_info=True)
                step = steps.send(None)
            else:
                step = steps.send(await exchange(step.apdu))
    except StopIteration as done:
        return done.value  # type: ignore[no-any-return]


class InMemoryCredentials:
    """A CredentialDirectory held in dicts, for simulators, tests and benchmarks.

    Production resolves credentials from the key store; this one is the
    reference behaviour: revoking drops the persistent key too, so a revoked
    phone can never complete a FAST tap.
    """

    def __init__(self, enrolled: dict[bytes, str] | None = None) -> None:
        self._by_key: dict[bytes, str] = dict(enrolled or {})
        self._persistent: dict[str, FastKey] = {}

    def enrol(self, credential_id: str, public_key: bytes) -> None:
        self._by_key[public_key] = credential_id

    def revoke(self, credential_id: str) -> None:
        self._by_key = {k: c for k, c in self._by_key.items() if c != credential_id}
        self._persistent.pop(credential_id, None)

    def forget_persistent_keys(self) -> None:
        self._persistent.clear()

    def credential_for_public_key(self, public_key: bytes) -> str | None:
        return self._by_key.get(public_key)

    def persistent_keys(self) -> Iterable[FastKey]:
        return tuple(self._persistent.values())

    def remember_persistent_key(self, credential_id: str, public_key: bytes,
                                kpersistent: bytes) -> None:
        self._persistent[credential_id] = (credential_id, public_key, kpersistent)
