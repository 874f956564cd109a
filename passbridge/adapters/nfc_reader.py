"""The NFC reader edge: nfcpy's blocking reader loop, bridged to asyncio.

nfcpy is blocking and owns the reader for as long as a card is in the field,
so it runs in one worker thread. The adapter knows nothing about Aliro: once
per tap it calls a :class:`TapHandler` in that thread with an ``exchange``
function (command APDU in, response APDU out, bounded by a per-APDU timeout)
and a ``decide`` function that blocks the tap until the event loop has made
a decision (the door decision is async; the phone is still in the field
waiting for the door status).

One tap is one transaction: after the handler returns the reader waits for
the card to leave the field (nfcpy's presence check) before it looks for the
next one, and an optional hold-off on the injectable clock ignores a card
that comes straight back (a phone bouncing on the edge of the field; phones
randomise their UID, so "the same card" cannot be recognised by UID).

No card holds the reader: the wait for departure lasts at most
``field_hold`` seconds (or what ``hold_for`` says for that tap, e.g. longer
for a phone that authenticated), then the reader switches its field off and polls
again (a card still there is activated again as a new tap) and reports the
held field through ``on_field_held``. The frame waiting time a card asks for
in its ATS is capped at ``fwi_max``, so a card that goes silent costs one
short presence check, not ISO 14443's 5 s maximum.

Nothing here is specific to the ``udp`` driver: the device string goes to
``nfc.ContactlessFrontend`` unchanged (``usb:...``, ``tty:...``,
``udp:127.0.0.1:PORT``).
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import errno
import logging
import os
import threading
import time
from collections.abc import Callable, Coroutine, Sequence
from dataclasses import dataclass
from datetime import datetime
from types import TracebackType
from typing import Any, Generic, Protocol, TypeVar

import nfc
import nfc.clf
import nfc.tag
import nfc.tag.tt4

from passbridge.clock import Clock, SystemClock
from passbridge.errors import PassbridgeError

__all__ = [
    "ApduTimeout",
    "Decide",
    "Decider",
    "Exchange",
    "FieldHeld",
    "FieldLost",
    "NfcReader",
    "ReaderUnavailable",
    "TapError",
    "TapHandler",
    "TapHandlerError",
    "TapOutcome",
]

log = logging.getLogger(__name__)

T = TypeVar("T")
T_co = TypeVar("T_co", covariant=True)

Exchange = Callable[[bytes], bytes]
"""Send one command APDU to the card in the field; return its response APDU."""
Decide = Callable[[object], bool]
"""Ask the event loop for a decision mid-tap; False on timeout or error (fail closed)."""
Decider = Callable[[object], Coroutine[Any, Any, bool]]
"""The async side of :data:`Decide`, run on the event loop."""

_OUTCOME_BACKLOG = 64
_ERROR_BACKOFF = 0.5
_PRESENCE_INTERVAL = 0.1  # nfcpy's own pause between two presence checks

DEFAULT_FIELD_HOLD = 1.0
"""Seconds a card may stay in the field after its transaction (see docs/decisions.md)."""
DEFAULT_FWI_MAX = 10
"""Largest frame waiting integer accepted from a card: FWT 4096/fc * 2**10 = 309 ms
(room for a phone's secure element to sign without asking for S(WTX))."""


def frame_waiting_time(fwi: int) -> float:
    """ISO 14443-4 FWT in seconds for a frame waiting integer."""
    return 4096 / 13.56e6 * (1 << fwi)


class TapError(PassbridgeError):
    """A tap ended without a result from the handler."""


class FieldLost(TapError):
    """The card left the field or the link broke mid-exchange."""


class ApduTimeout(TapError):
    """The card did not answer one APDU within the per-APDU timeout."""


class TapHandlerError(TapError):
    """The tap handler raised (for instance on a malformed response APDU)."""


class ReaderUnavailable(PassbridgeError, RuntimeError):
    """The NFC reader device could not be opened."""


class TapHandler(Protocol[T_co]):
    """One tap's application protocol, run in the reader thread.

    ``exchange`` raises :class:`FieldLost` or :class:`ApduTimeout`; let them
    propagate (the tap is then reported as failed with that error).
    """

    def run(self, exchange: Exchange, decide: Decide) -> T_co: ...


@dataclass(frozen=True, slots=True)
class FieldHeld:
    """A card stayed in the field past the limit after its transaction."""

    seconds: float
    """How long the card had been in the field after its transaction."""
    at: datetime


@dataclass(frozen=True, slots=True)
class TapOutcome(Generic[T]):
    """What one tap came to, with the figures the benchmark and metrics need."""

    result: T | None
    error: TapError | None
    apdus: int
    bytes_sent: int
    bytes_received: int
    started_at: datetime
    duration: float
    """Seconds on the reader's clock from activation to the handler's return."""
    cpu_seconds: float
    """Reader-thread CPU time spent on this tap (handler, ISO-DEP, driver)."""
    decided: bool = False
    """The handler asked for a decision during this tap (whatever happened after)."""

    @property
    def ok(self) -> bool:
        return self.error is None


class _DeadlineFrontend(nfc.ContactlessFrontend):  # type: ignore[misc]
    """A frontend whose frame exchanges never outlive the current APDU's deadline.

    nfcpy retries a silent card with R(NAK) and waits indefinitely while the
    card keeps asking for S(WTX); capping every frame at the APDU's deadline
    turns both into one bounded per-APDU timeout, on any driver.
    """

    def __init__(self, path: str) -> None:
        self.deadline: float | None = None
        super().__init__(path)

    def exchange(self, send_data: Any, timeout: float) -> Any:
        deadline = self.deadline
        if deadline is not None:
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                raise nfc.clf.TimeoutError("per-APDU deadline passed")
            timeout = remaining if timeout is None else min(timeout, remaining)
        return super().exchange(send_data, timeout)


class _Link:
    """The ``exchange`` a handler gets for one tap, with its counters."""

    def __init__(self, clf: _DeadlineFrontend, tag: Any, apdu_timeout: float,
                 stopping: threading.Event) -> None:
        self._clf = clf
        self._tag = tag
        self._apdu_timeout = apdu_timeout
        self._stopping = stopping
        self.apdus = 0
        self.bytes_sent = 0
        self.bytes_received = 0
        self.error: TapError | None = None

    def _fail(self, error: TapError) -> TapError:
        self.error = error
        return error

    def exchange(self, apdu: bytes) -> bytes:
        if self.error is not None:
            # The link is gone for the rest of this tap; say so again.
            raise type(self.error)(str(self.error))
        if self._stopping.is_set():
            raise self._fail(FieldLost("the reader is stopping"))
        what = f"APDU INS {apdu[1]:02X}" if len(apdu) >= 2 else "APDU"
        self._clf.deadline = time.monotonic() + self._apdu_timeout
        try:
            response = self._tag.transceive(bytes(apdu))
        except nfc.tag.TagCommandError as error:
            if error.errno == nfc.tag.TIMEOUT_ERROR:
                raise self._fail(ApduTimeout(
                    f"no answer to {what} within {self._apdu_timeout:.3f}s")) from None
            raise self._fail(FieldLost(f"link lost during {what}: {error}")) from None
        except nfc.clf.TimeoutError:
            raise self._fail(ApduTimeout(
                f"no answer to {what} within {self._apdu_timeout:.3f}s")) from None
        except nfc.clf.CommunicationError as error:
            raise self._fail(FieldLost(
                f"link lost during {what}: {type(error).__name__} {error}")) from None
        except OSError as error:
            raise self._fail(FieldLost(f"reader I/O error during {what}: {error}")) from None
        finally:
            self._clf.deadline = None
        if response is None:
            raise self._fail(FieldLost(f"no link for {what}"))
        response = bytes(response)
        self.apdus += 1
        self.bytes_sent += len(apdu)
        self.bytes_received += len(response)
        return response


class NfcReader(Generic[T]):
    """An NFC reader running taps through fresh handlers, reporting to asyncio.

    Outcomes go to ``on_tap`` (an async callback, for the service) and to a
    small backlog that :meth:`tap_once` reads (for tests and scenarios).
    ``decider`` answers the handler's ``decide(request)`` calls; without one,
    every decision is False.
    """

    def __init__(
        self,
        device: str,
        handler_factory: Callable[[], TapHandler[T]],
        *,
        on_tap: Callable[[TapOutcome[T]], Coroutine[Any, Any, None]] | None = None,
        decider: Decider | None = None,
        apdu_timeout: float = 0.5,
        decide_timeout: float = 1.0,
        holdoff: float = 0.0,
        clock: Clock | None = None,
        targets: Sequence[str] = ("106A",),
        loop: asyncio.AbstractEventLoop | None = None,
        field_hold: float = DEFAULT_FIELD_HOLD,
        fwi_max: int = DEFAULT_FWI_MAX,
        on_field_held: Callable[[FieldHeld], Coroutine[Any, Any, None]] | None = None,
        pace: Callable[[TapOutcome[T]], float] | None = None,
        hold_for: Callable[[TapOutcome[T]], float] | None = None,
    ) -> None:
        if apdu_timeout <= 0 or decide_timeout <= 0 or holdoff < 0 or field_hold <= 0:
            raise ValueError("timeouts must be positive and the hold-off not negative")
        if not 0 <= fwi_max <= 14:
            raise ValueError("fwi_max must be 0..14 (ISO 14443-4)")
        self._device = device
        self._handler_factory = handler_factory
        self._on_tap = on_tap
        self._decider = decider
        self._apdu_timeout = apdu_timeout
        self._decide_timeout = decide_timeout
        self._holdoff = holdoff
        self._clock: Clock = clock or SystemClock()
        self._targets = list(targets)
        self._loop = loop
        self._outcomes: asyncio.Queue[TapOutcome[T]] = asyncio.Queue()
        self._stopping = threading.Event()
        self._thread: threading.Thread | None = None
        self._clf: _DeadlineFrontend | None = None
        self._last_release: float | None = None
        self._taps = 0
        self._field_hold = field_hold
        self._hold_for = hold_for
        self._fwt_max = frame_waiting_time(fwi_max)
        self._on_field_held = on_field_held
        self._pace = pace
        # on_tap / on_field_held calls still running; stop() waits for them.
        self._callbacks: set[concurrent.futures.Future[None]] = set()
        self._callbacks_lock = threading.Lock()

    @property
    def device(self) -> str:
        return self._device

    @property
    def running(self) -> bool:
        return self._thread is not None and self._thread.is_alive()

    @property
    def taps(self) -> int:
        """Taps that ran a transaction (ignored hold-off taps not counted)."""
        return self._taps

    async def start(self) -> None:
        """Open the device (ReaderUnavailable if that fails) and start polling."""
        if self._thread is not None:
            raise RuntimeError("NFC reader already started")
        if self._loop is None:
            self._loop = asyncio.get_running_loop()
        self._clf = await asyncio.to_thread(self._open)
        self._stopping.clear()
        self._thread = threading.Thread(
            target=self._run, name=f"nfc-reader {self._device}", daemon=True
        )
        self._thread.start()

    async def stop(self, timeout: float = 5.0) -> None:
        """Stop polling, let a tap in progress end, and close the device."""
        self._stopping.set()
        thread, self._thread = self._thread, None
        if thread is not None:
            await asyncio.to_thread(thread.join, timeout)
            if thread.is_alive():
                log.warning("NFC reader %s did not stop within %.1fs", self._device, timeout)
                return
        # The last taps' callbacks (an audit write, a summary count) finish
        # before stop returns: whoever stops the reader next closes the audit log.
        with self._callbacks_lock:
            running = [asyncio.wrap_future(future) for future in self._callbacks]
        if running:
            _, late = await asyncio.wait(running, timeout=timeout)
            if late:
                log.warning("NFC reader %s: %d tap callbacks still running after %.1fs",
                            self._device, len(late), timeout)
        clf, self._clf = self._clf, None
        if clf is not None:
            await asyncio.to_thread(clf.close)

    async def __aenter__(self) -> NfcReader[T]:
        await self.start()
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.stop()

    async def tap_once(self, timeout: float) -> TapOutcome[T]:
        """The next tap's outcome (oldest unread first); TimeoutError if none comes."""
        if self._thread is None:
            raise RuntimeError("NFC reader is not started")
        return await asyncio.wait_for(self._outcomes.get(), timeout)

    # -- reader thread -----------------------------------------------------------------

    def _open(self) -> _DeadlineFrontend:
        try:
            return _DeadlineFrontend(self._device)
        except OSError as error:
            reason = error.strerror or (os.strerror(error.errno) if error.errno else str(error))
            hint = " (no such reader)" if error.errno == errno.ENODEV else ""
            raise ReaderUnavailable(
                f"cannot open NFC reader {self._device!r}: {reason}{hint}") from None
        except (ValueError, TypeError) as error:
            raise ReaderUnavailable(f"bad NFC reader path {self._device!r}: {error}") from None

    def _run(self) -> None:
        clf = self._clf
        assert clf is not None
        options = {
            "targets": self._targets,
            "on-discover": self._on_discover,
            "on-connect": self._on_connect,
            "iterations": 1,
        }
        while not self._stopping.is_set():
            try:
                result = clf.connect(rdwr=options, terminate=self._stopping.is_set)
            except Exception as error:  # garbage from a card: one line, no traceback
                log.warning("NFC reader %s: polling failed: %s: %s", self._device,
                            type(error).__name__, error)
                result = False
            if result is False and not self._stopping.is_set():
                # nfcpy reports device errors as False: do not spin on a dead reader.
                self._stopping.wait(_ERROR_BACKOFF)

    @staticmethod
    def _on_discover(target: Any) -> bool:
        # Phones answer SAK 20h (ISO-DEP) or 60h (ISO-DEP and NFC-DEP); nfcpy's
        # default would skip the latter as a peer-to-peer device.
        if target.sel_res is not None and len(target.sel_res):
            return bool(target.sel_res[0] & 0x20)
        return True

    def _report_held(self, held: FieldHeld) -> None:
        log.debug("NFC reader %s: card held the field %.1fs, releasing it",
                  self._device, held.seconds)
        loop, callback = self._loop, self._on_field_held
        if loop is None or callback is None or loop.is_closed():
            return
        try:
            future = asyncio.run_coroutine_threadsafe(callback(held), loop)
            self._track(future)
        except RuntimeError:
            log.warning("NFC reader %s: event loop gone, held field not reported", self._device)

    def _on_connect(self, tag: Any) -> bool:
        """Run one tap, then wait (bounded) for the card to leave.

        Returns False: nfcpy's own wait for departure has no bound, so this
        method does it, and nfcpy hands the tag back to :meth:`_run`, whose
        next poll switches the field off.
        """
        if self._stopping.is_set():
            return False
        if not isinstance(tag, nfc.tag.tt4.Type4Tag):
            log.info("NFC reader %s: ignoring a non ISO-DEP card (%s)", self._device, tag)
            self._wait_for_departure(tag, self._field_hold)
            return False
        self._cap_frame_waiting_time(tag)
        if (
            self._holdoff > 0
            and self._last_release is not None
            and self._clock.elapsed() - self._last_release < self._holdoff
        ):
            log.debug("NFC reader %s: card back within the hold-off, ignored", self._device)
            self._wait_for_departure(tag, self._field_hold)
            return False
        outcome = self._run_tap(tag)
        self._taps += 1
        self._deliver(outcome)
        pause = self._pace(outcome) if self._pace is not None else 0.0
        hold = self._hold_for(outcome) if self._hold_for is not None else self._field_hold
        self._wait_for_departure(tag, hold)
        if pause > 0:
            log.debug("NFC reader %s: pacing failed authentications, %.2fs", self._device, pause)
            self._stopping.wait(pause)
        return False

    def _cap_frame_waiting_time(self, tag: Any) -> None:
        """Never wait longer for one frame than ``fwi_max`` allows, whatever the ATS says.

        A slow phone still gets its time through S(WTX), within the per-APDU
        deadline; what the cap removes is the long wait on a silent card.
        """
        dep: Any = getattr(tag, "_dep", None)  # nfcpy's ISO-DEP initiator for this tag
        fwt = getattr(dep, "fwt", None)
        if dep is not None and isinstance(fwt, float) and fwt > self._fwt_max:
            log.debug("NFC reader %s: card asks FWT %.3fs, capped at %.3fs",
                      self._device, fwt, self._fwt_max)
            dep.fwt = self._fwt_max

    def _wait_for_departure(self, tag: Any, limit: float) -> None:
        """Presence checks until the card leaves, for at most ``limit`` seconds."""
        started = time.monotonic()
        while not self._stopping.is_set():
            try:
                present = bool(tag.is_present)
            except Exception as error:  # a garbage answer means "gone"
                log.debug("NFC reader %s: presence check failed: %s", self._device,
                          type(error).__name__)
                present = False
            if not present:
                self._last_release = self._clock.elapsed()
                return
            held = time.monotonic() - started
            if held >= limit:
                self._last_release = self._clock.elapsed()
                self._report_held(FieldHeld(seconds=held, at=self._clock.now()))
                return
            self._stopping.wait(_PRESENCE_INTERVAL)

    def _run_tap(self, tag: Any) -> TapOutcome[T]:
        clf = self._clf
        assert clf is not None
        link = _Link(clf, tag, self._apdu_timeout, self._stopping)
        started_at = self._clock.now()
        started = self._clock.elapsed()
        cpu_started = time.thread_time()
        result: T | None = None
        error: TapError | None = None
        asked: list[object] = []

        def decide(request: object) -> bool:
            asked.append(request)
            return self._decide(request)

        try:
            handler = self._handler_factory()
            result = handler.run(link.exchange, decide)
        except TapError as raised:
            error = link.error or raised
        except Exception as raised:
            error = link.error or TapHandlerError(
                f"tap handler failed: {type(raised).__name__}: {raised}")
        else:
            error = link.error
        cpu = time.thread_time() - cpu_started
        if error is not None:
            log.info("NFC reader %s: tap failed: %s", self._device, error)
        return TapOutcome(
            result=result,
            error=error,
            apdus=link.apdus,
            bytes_sent=link.bytes_sent,
            bytes_received=link.bytes_received,
            started_at=started_at,
            duration=self._clock.elapsed() - started,
            cpu_seconds=cpu,
            decided=bool(asked),
        )

    def _decide(self, request: object) -> bool:
        loop, decider = self._loop, self._decider
        if decider is None or loop is None:
            log.warning("NFC reader %s: no decider configured, denying", self._device)
            return False
        try:
            future = asyncio.run_coroutine_threadsafe(decider(request), loop)
        except RuntimeError:  # the loop is closed or closing
            return False
        try:
            return future.result(timeout=self._decide_timeout) is True
        except concurrent.futures.TimeoutError:
            future.cancel()
            log.warning("NFC reader %s: no decision within %.2fs, denying",
                        self._device, self._decide_timeout)
            return False
        except Exception:
            log.exception("NFC reader %s: decider failed, denying", self._device)
            return False

    def _deliver(self, outcome: TapOutcome[T]) -> None:
        loop = self._loop
        if loop is None or loop.is_closed():
            return
        try:
            loop.call_soon_threadsafe(self._enqueue, outcome)
            if self._on_tap is not None:
                future = asyncio.run_coroutine_threadsafe(self._on_tap(outcome), loop)
                self._track(future)
        except RuntimeError:
            log.warning("NFC reader %s: event loop gone, tap outcome dropped", self._device)

    def _enqueue(self, outcome: TapOutcome[T]) -> None:
        if self._outcomes.qsize() >= _OUTCOME_BACKLOG:
            self._outcomes.get_nowait()  # nobody reads the backlog: keep the newest
        self._outcomes.put_nowait(outcome)

    def _track(self, future: concurrent.futures.Future[None]) -> None:
        with self._callbacks_lock:
            self._callbacks.add(future)
        future.add_done_callback(self._log_callback_failure)

    def _log_callback_failure(self, future: concurrent.futures.Future[None]) -> None:
        with self._callbacks_lock:
            self._callbacks.discard(future)
        if future.cancelled():
            return
        error = future.exception()
        if error is not None:
            log.error("NFC reader %s: on_tap callback failed: %r", self._device, error)
