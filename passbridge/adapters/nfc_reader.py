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

__all__ = [
    "ApduTimeout",
    "Decide",
    "Decider",
    "Exchange",
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


class TapError(Exception):
    """A tap ended without a result from the handler."""


class FieldLost(TapError):
    """The card left the field or the link broke mid-exchange."""


class ApduTimeout(TapError):
    """The card did not answer one APDU within the per-APDU timeout."""


class TapHandlerError(TapError):
    """The tap handler raised (for instance on a malformed response APDU)."""


class ReaderUnavailable(RuntimeError):
    """The NFC reader device could not be opened."""


class TapHandler(Protocol[T_co]):
    """One tap's application protocol, run in the reader thread.

    ``exchange`` raises :class:`FieldLost` or :class:`ApduTimeout`; let them
    propagate (the tap is then reported as failed with that error).
    """

    def run(self, exchange: Exchange, decide: Decide) -> T_co: ...


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
    ) -> None:
        if apdu_timeout <= 0 or decide_timeout <= 0 or holdoff < 0:
            raise ValueError("timeouts must be positive and the hold-off not negative")
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
            "on-release": self._on_release,
            "iterations": 1,
            "beep-on-connect": True,
        }
        while not self._stopping.is_set():
            try:
                result = clf.connect(rdwr=options, terminate=self._stopping.is_set)
            except Exception:
                log.exception("NFC reader %s: polling failed", self._device)
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

    def _on_release(self, tag: Any) -> bool:
        self._last_release = self._clock.elapsed()
        return True

    def _on_connect(self, tag: Any) -> bool:
        """Run one tap; True makes nfcpy wait for the card to leave (the debounce)."""
        if self._stopping.is_set():
            return True
        if not isinstance(tag, nfc.tag.tt4.Type4Tag):
            log.info("NFC reader %s: ignoring a non ISO-DEP card (%s)", self._device, tag)
            return True
        if (
            self._holdoff > 0
            and self._last_release is not None
            and self._clock.elapsed() - self._last_release < self._holdoff
        ):
            log.debug("NFC reader %s: card back within the hold-off, ignored", self._device)
            return True
        outcome = self._run_tap(tag)
        self._taps += 1
        self._deliver(outcome)
        return True

    def _run_tap(self, tag: Any) -> TapOutcome[T]:
        clf = self._clf
        assert clf is not None
        link = _Link(clf, tag, self._apdu_timeout, self._stopping)
        started_at = self._clock.now()
        started = self._clock.elapsed()
        cpu_started = time.thread_time()
        result: T | None = None
        error: TapError | None = None
        try:
            handler = self._handler_factory()
            result = handler.run(link.exchange, self._decide)
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
                future.add_done_callback(self._log_callback_failure)
        except RuntimeError:
            log.warning("NFC reader %s: event loop gone, tap outcome dropped", self._device)

    def _enqueue(self, outcome: TapOutcome[T]) -> None:
        if self._outcomes.qsize() >= _OUTCOME_BACKLOG:
            self._outcomes.get_nowait()  # nobody reads the backlog: keep the newest
        self._outcomes.put_nowait(outcome)

    def _log_callback_failure(self, future: concurrent.futures.Future[None]) -> None:
        if future.cancelled():
            return
        error = future.exception()
        if error is not None:
            log.error("NFC reader %s: on_tap callback failed: %r", self._device, error)
