"""The OSDP Control Panel edge: libosdp's CP on one serial bus, bridged to asyncio.

One :class:`OsdpPanel` drives one RS-485 bus (a serial device such as
``/dev/ttyUSB0``, or a pty) and every reader (OSDP "PD") wired to it, each
at its own address with its own secure channel base key (SCBK). libosdp
(pinned 3.2.9, imported as ``osdp``) runs the protocol in its own thread,
polling each reader about every 20 ms; this module is the boundary:

- the bus is a :class:`SerialLink` (pyserial, non-blocking, the configured
  baud rate). A device that disappears (a USB adapter unplugged, a pty
  closed) is reopened by path at most every :data:`REOPEN_SECONDS`; the
  link never raises into libosdp's thread.
- what libosdp reports from its thread (card reads, keys, local status,
  link and secure-channel changes) becomes a :data:`PanelEvent` handed to
  the event loop with ``loop.call_soon_threadsafe``: the callback the
  caller gives runs in the loop, never in libosdp's thread.
- LED and buzzer commands go the other way (:meth:`OsdpPanel.submit_led`,
  :meth:`OsdpPanel.submit_buzzer`); they are queued by libosdp and sent on
  the next poll of that reader.
- the secure channel is required by default (``LibFlag.EnforceSecure``): a
  reader that does not prove its SCBK is never online, and nothing it
  sends is believed. A refused secure channel is reported
  (:class:`SecureChannelRefused`), as is a link going up or down.
- libosdp keeps a reader that stopped answering offline for 300 s. The
  panel probes an offline reader again sooner (:data:`REPROBE_SECONDS`,
  doubling to :data:`REPROBE_MAX_SECONDS`), and at once when the device
  comes back, so a reader that returns is picked up without a restart.
- :meth:`OsdpPanel.stop` tears libosdp down in all cases (a process that
  skipped ``teardown()`` was seen to hang at exit).

The adapter knows nothing of doors, cards or PINs: it moves OSDP events and
commands. ``passbridge.service.osdp`` gives them their meaning.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import threading
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from enum import Enum, auto
from typing import Any, Protocol

import osdp
import serial

from passbridge.errors import PassbridgeError

__all__ = [
    "DEFAULT_BAUD",
    "CardData",
    "KeysPressed",
    "LinkChanged",
    "LocalStatus",
    "OsdpPanel",
    "PanelEvent",
    "PanelReader",
    "PanelUnavailable",
    "SecureChannelRefused",
    "SerialLink",
]

log = logging.getLogger(__name__)

DEFAULT_BAUD = 9600
"""OSDP's usual rate; readers ship at 9600 and the standard names it first."""
BAUD_RATES = (9600, 19200, 38400, 57600, 115200, 230400)
"""The rates OSDP defines (osdp_COMSET)."""
REOPEN_SECONDS = 0.5
"""How often a lost device is tried again by path."""
REPROBE_SECONDS = 2.0
"""An offline reader is probed again after this long, then twice as long..."""
REPROBE_MAX_SECONDS = 30.0
"""... up to this, until it answers (libosdp alone would wait 300 s)."""
SUPERVISE_SECONDS = 0.2
"""How often the panel looks at its readers (reprobes, device comeback)."""
STOP_SECONDS = 5.0
"""At most this long for libosdp's thread to end at stop."""
SCBK_BYTES = 16
ADDRESS_MAX = 126
"""OSDP addresses are 0-126 (127 is broadcast)."""

_SOM = 0x53  # OSDP start of message
_REPLY_BIT = 0x80  # set in the address byte of a reader's reply

# libosdp's notification types (osdp_event_notification.type) and arguments.
_NOTIFY_SC_STATUS = osdp.EventNotification.SecureChannelStatus
_NOTIFY_PD_STATUS = osdp.EventNotification.PeripheralDeviceStatus
# osdp_LSTATR: byte 0 tamper, byte 1 power (0 normal, 1 tamper / power failure).
_LOCAL_STATUS = osdp.StatusReportType.Local


class PanelUnavailable(PassbridgeError, RuntimeError):
    """The bus device cannot be opened or libosdp refused the set-up."""


@dataclass(frozen=True, slots=True)
class PanelReader:
    """One reader on the bus: its address and its secure channel base key.

    ``install``: take the reader's key from the default install key (SCBK-D)
    once (``passbridge osdp install``), with the secure channel still
    required afterwards to verify the new key. Without it (and with
    ``secure``) the reader must prove ``scbk`` or stay offline.
    """

    address: int
    scbk: bytes = field(repr=False)
    install: bool = False

    def __post_init__(self) -> None:
        if not 0 <= self.address <= ADDRESS_MAX:
            raise ValueError(f"OSDP address {self.address}: 0 to {ADDRESS_MAX}")
        if len(self.scbk) != SCBK_BYTES:
            raise ValueError(f"an SCBK is {SCBK_BYTES} bytes")


# --- events, in the event loop ---------------------------------------------------


@dataclass(frozen=True, slots=True)
class CardData:
    """A card read as the reader sent it: libosdp's event fields (``format``,
    ``length`` in bits, ``data``), unparsed (protocol.wiegand reads them)."""

    address: int
    fields: Mapping[str, object] = field(repr=False)


@dataclass(frozen=True, slots=True)
class KeysPressed:
    """Keys from the reader's keypad, as sent (protocol.keypad_entry buffers them)."""

    address: int
    keys: bytes = field(repr=False)


@dataclass(frozen=True, slots=True)
class LinkChanged:
    """The reader came online (secure channel up when required) or went offline."""

    address: int
    online: bool
    secure: bool


@dataclass(frozen=True, slots=True)
class SecureChannelRefused:
    """The reader answered but did not complete the secure channel (a wrong
    SCBK, or a reader still on its install key): it stays offline."""

    address: int


@dataclass(frozen=True, slots=True)
class LocalStatus:
    """The reader's own tamper switch and power state (osdp_LSTATR)."""

    address: int
    tamper: bool
    power_failure: bool


PanelEvent = CardData | KeysPressed | LinkChanged | SecureChannelRefused | LocalStatus


class CommandFields(Protocol):
    """An LED or buzzer command that knows its libosdp fields
    (bridge.reader_feedback's LedCommand and BuzzerCommand)."""

    def osdp_fields(self) -> Mapping[str, int | bool]: ...


# --- the bus ------------------------------------------------------------------------


class SerialLink(osdp.Channel):  # type: ignore[misc]  # libosdp ships no type hints
    """The bus as libosdp sees it: non-blocking reads and writes on a serial
    device, reopened by path when it goes away. Called from libosdp's thread
    only; never raises there (an exception inside libosdp's poll would kill
    its thread).

    It also notes, per address, when a reader last replied (the ``SOM`` byte
    followed by the address with the reply bit): that is the "last reply age"
    of /metrics, and how a refused secure channel is told from a silent
    reader.
    """

    def __init__(self, device: str, baud: int = DEFAULT_BAUD) -> None:
        super().__init__()
        self.device = device
        self.baud = baud
        self._port: serial.Serial | None = None
        # libosdp's thread reads and writes; the panel's supervisor reopens.
        self._lock = threading.Lock()
        self._retry_at = 0.0
        self._previous = -1  # the last byte of the previous read (a SOM split across reads)
        self.last_reply: dict[int, float] = {}
        """Address -> ``time.monotonic()`` of its last reply frame."""
        self.open()

    def open(self) -> None:
        """Open the device now; PanelUnavailable names it when that fails."""
        try:
            self._port = serial.Serial(self.device, self.baud, timeout=0, write_timeout=0,
                                       exclusive=True)
        except (serial.SerialException, OSError, ValueError) as error:
            raise PanelUnavailable(f"cannot open OSDP bus {self.device!r}: {error}") from None

    @property
    def is_open(self) -> bool:
        return self._port is not None

    def discard_input(self) -> None:
        """Drop what waits unread on the device. Called before a reader is
        probed again while no reader of the bus is online: bytes that came
        while nobody listened (line noise, a flood) answer no probe, and
        libosdp, reading them first, overflowed its receive buffer and gave
        the probe up, again and again (tests/service/test_osdp_fuzz.py)."""
        with self._lock:
            if self._port is not None:
                with contextlib.suppress(Exception):
                    self._port.reset_input_buffer()

    def reopen(self) -> bool:
        """Try to open a lost device again (at most every REOPEN_SECONDS);
        True when it is open now."""
        with self._lock:
            if self._port is None and time.monotonic() >= self._retry_at:
                self._retry_at = time.monotonic() + REOPEN_SECONDS
                with contextlib.suppress(PanelUnavailable):
                    self.open()
                    log.info("OSDP bus %s is back", self.device)
            return self._port is not None

    def _lost(self, error: Exception) -> None:
        if self._port is not None:
            log.warning("OSDP bus %s lost: %s", self.device, error)
            with contextlib.suppress(Exception):
                self._port.close()
        self._port = None
        self._retry_at = time.monotonic() + REOPEN_SECONDS

    def read(self, max_bytes: int) -> bytes:
        with self._lock:
            port = self._port
            if port is None:
                return b""
            try:
                data: bytes = port.read(max_bytes)
            except Exception as error:  # pyserial: SerialException, OSError, TypeError
                self._lost(error)
                return b""
        if data:
            self._note_replies(data)
        return data

    def _note_replies(self, data: bytes) -> None:
        now = time.monotonic()
        previous = self._previous
        for byte in data:
            if previous == _SOM and byte & _REPLY_BIT:
                self.last_reply[byte & ~_REPLY_BIT] = now
            previous = byte
        self._previous = previous

    def write(self, buf: bytes) -> int:
        with self._lock:
            port = self._port
            if port is None:
                return 0
            try:
                written = port.write(buf)
            except Exception as error:
                self._lost(error)
                return 0
        return int(written or 0)

    def flush(self) -> None:
        return None

    def close(self) -> None:
        with self._lock:
            port, self._port = self._port, None
        if port is not None:
            with contextlib.suppress(Exception):
                port.close()


# --- the panel ------------------------------------------------------------------------


class _Phase(Enum):
    """Where the panel's view of one reader is (loop side)."""

    PROBING = auto()  # libosdp is trying to bring it online
    ONLINE = auto()
    WAITING = auto()  # offline; libosdp would wait 300 s, the panel probes sooner
    RESTARTING = auto()  # disabled by the panel, to be enabled (a fresh attempt)


@dataclass
class _ReaderState:
    """What the panel knows of one reader (loop side only)."""

    reader: PanelReader
    phase: _Phase = _Phase.PROBING
    secure: bool = False
    attempt_started: float = 0.0
    waiting_since: float = 0.0
    reprobe_after: float = REPROBE_SECONDS
    refused_reported: bool = False


class OsdpPanel:
    """libosdp's Control Panel for one bus and the readers on it.

    ``on_event`` runs in the event loop with each :data:`PanelEvent`.
    ``secure=False`` (tests of the refusal, and sites that knowingly run
    plaintext) lets a reader without the secure channel online; the
    default requires it.
    """

    def __init__(
        self,
        device: str,
        readers: Sequence[PanelReader],
        on_event: Callable[[PanelEvent], None],
        *,
        baud: int = DEFAULT_BAUD,
        secure: bool = True,
        log_level: int = osdp.LogLevel.Error,
    ) -> None:
        if not readers:
            raise ValueError("an OSDP bus needs at least one reader")
        addresses = [r.address for r in readers]
        if len(set(addresses)) != len(addresses):
            raise ValueError(f"OSDP bus {device}: two readers at one address")
        if baud not in BAUD_RATES:
            raise ValueError(f"OSDP baud rate {baud}: one of {', '.join(map(str, BAUD_RATES))}")
        self.device = device
        self.baud = baud
        self.secure = secure
        self._readers = list(readers)
        self._on_event = on_event
        self._log_level = log_level
        self._states = {r.address: _ReaderState(r) for r in readers}
        self._link: SerialLink | None = None
        self._cp: Any = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._supervisor: asyncio.Task[None] | None = None
        self._stopping = threading.Event()

    @property
    def addresses(self) -> list[int]:
        return [r.address for r in self._readers]

    def is_online(self, address: int) -> bool:
        return self._states[address].phase is _Phase.ONLINE

    def is_secure(self, address: int) -> bool:
        return self._states[address].secure

    def last_reply_age(self, address: int) -> float | None:
        """Seconds since the reader at ``address`` last replied; None if never."""
        if self._link is None:
            return None
        at = self._link.last_reply.get(address)
        return None if at is None else max(0.0, time.monotonic() - at)

    def _flags(self, reader: PanelReader) -> list[int]:
        flags = [osdp.LibFlag.EnableNotification]
        if reader.install:
            # libosdp falls back to SCBK-D only without EnforceSecure; the
            # caller checks that the new key took (secure, not on SCBK-D).
            flags.append(osdp.LibFlag.InstallMode)
        elif self.secure:
            flags.append(osdp.LibFlag.EnforceSecure)
        return flags

    async def start(self) -> None:
        """Open the bus and start polling; PanelUnavailable if the device is missing."""
        self._loop = asyncio.get_running_loop()
        self._link = SerialLink(self.device, self.baud)
        infos = [osdp.PDInfo(r.address, self._link, scbk=r.scbk, flags=self._flags(r),
                             name=f"pd-{r.address}") for r in self._readers]
        try:
            cp = osdp.ControlPanel(infos, log_level=self._log_level)
        except Exception as error:
            self._link.close()
            raise PanelUnavailable(f"OSDP bus {self.device}: libosdp refused the set-up: "
                                   f"{error}") from None
        # Events straight to us: the wrapper's own handler also queues every
        # event for get_event(), which nothing here reads (it would grow forever).
        cp.ctx.set_event_callback(self._from_library)
        now = time.monotonic()
        for state in self._states.values():
            state.attempt_started = now
        self._cp = cp
        cp.start()
        self._supervisor = asyncio.create_task(self._supervise(), name=f"osdp {self.device}")
        log.info("OSDP bus %s at %d baud: readers %s", self.device, self.baud,
                 ", ".join(str(a) for a in self.addresses))

    # -- libosdp's thread ---------------------------------------------------------------

    def _from_library(self, index: int, event: dict[str, Any]) -> int:
        """libosdp's thread: turn the event into ours and hand it to the loop."""
        try:
            address = self._readers[index].address
            ours = _translate(address, event)
            loop = self._loop
            if ours is not None and loop is not None and not self._stopping.is_set():
                loop.call_soon_threadsafe(self._deliver, ours)
        except RuntimeError:  # the loop closed under us: shutting down
            pass
        except Exception:
            log.exception("OSDP bus %s: event dropped", self.device)
        return 0

    # -- the loop ----------------------------------------------------------------------------

    def _deliver(self, event: PanelEvent | _Notification) -> None:
        if isinstance(event, _Notification):
            for out in self._notified(event):
                self._emit(out)
            return
        self._emit(event)

    def _emit(self, event: PanelEvent) -> None:
        try:
            self._on_event(event)
        except Exception:
            log.exception("OSDP bus %s: handling %s failed", self.device, type(event).__name__)

    def _notified(self, note: _Notification) -> list[PanelEvent]:
        state = self._states.get(note.address)
        if state is None:
            return []
        if note.kind == _NOTIFY_SC_STATUS:
            state.secure = note.active and not note.default_key
            return []
        if note.kind != _NOTIFY_PD_STATUS:
            return []
        if note.active:
            state.phase = _Phase.ONLINE
            state.reprobe_after = REPROBE_SECONDS
            state.refused_reported = False
            return [LinkChanged(note.address, True, state.secure)]
        state.secure = False
        phase = state.phase
        if phase in (_Phase.WAITING, _Phase.RESTARTING):
            return []  # the panel's own restart, or already known offline
        state.phase = _Phase.WAITING
        state.waiting_since = time.monotonic()
        if phase is _Phase.ONLINE:
            return [LinkChanged(note.address, False, False)]
        # An attempt failed: a reader that answered it refused the secure channel.
        replied = self._link.last_reply.get(note.address) if self._link else None
        if (replied is not None and replied >= state.attempt_started
                and not state.refused_reported):
            state.refused_reported = True
            return [SecureChannelRefused(note.address)]
        return []

    async def _supervise(self) -> None:
        """Probe offline readers again: at once when a lost device comes back,
        else after REPROBE_SECONDS, doubling to REPROBE_MAX_SECONDS (libosdp
        alone would wait 300 s)."""
        while True:
            await asyncio.sleep(SUPERVISE_SECONDS)
            link, cp = self._link, self._cp
            if link is None or cp is None:
                continue
            came_back = False
            if not link.is_open:
                # Nothing to probe through until the device is back.
                came_back = await asyncio.to_thread(link.reopen)
                if not came_back:
                    continue
            now = time.monotonic()
            for state in self._states.values():
                self._restart_step(cp, state, now, came_back=came_back)

    def _restart_step(self, cp: Any, state: _ReaderState, now: float, *,
                      came_back: bool) -> None:
        """Disable, then (once libosdp took that) enable a waiting reader: a
        fresh attempt from libosdp's 300 s offline wait."""
        address = state.reader.address
        try:
            if state.phase is _Phase.WAITING:
                if came_back:
                    state.reprobe_after = REPROBE_SECONDS
                elif now - state.waiting_since < state.reprobe_after:
                    return
                else:
                    state.reprobe_after = min(state.reprobe_after * 2, REPROBE_MAX_SECONDS)
                state.phase = _Phase.RESTARTING
                cp.disable_pd(address)
            elif state.phase is _Phase.RESTARTING and not cp.is_pd_enabled(address):
                if not any(other.phase in (_Phase.ONLINE, _Phase.PROBING)
                           for other in self._states.values()) and self._link is not None:
                    self._link.discard_input()
                cp.enable_pd(address)
                loop = asyncio.get_running_loop()
                # After the disable's own notifications, which may still be queued.
                loop.call_soon(self._probing, state)
        except Exception:
            log.exception("OSDP bus %s: cannot restart reader %d", self.device, address)

    def _probing(self, state: _ReaderState) -> None:
        if state.phase is _Phase.RESTARTING:
            state.phase = _Phase.PROBING
            state.attempt_started = time.monotonic()
            log.debug("OSDP bus %s: probing reader %d again", self.device, state.reader.address)

    # -- commands --------------------------------------------------------------------------

    def submit_led(self, address: int, command: CommandFields) -> bool:
        """Queue an LED command for the reader; False if it is offline (nothing sent)."""
        return self._submit(address, {"command": osdp.Command.LED, **command.osdp_fields()})

    def submit_buzzer(self, address: int, command: CommandFields) -> bool:
        """Queue a buzzer command for the reader; False if it is offline."""
        return self._submit(address, {"command": osdp.Command.Buzzer, **command.osdp_fields()})

    def _submit(self, address: int, command: dict[str, Any]) -> bool:
        cp = self._cp
        if cp is None or self._states[address].phase is not _Phase.ONLINE:
            return False
        try:
            return bool(cp.submit_command(address, command))
        except Exception as error:
            log.warning("OSDP bus %s: command to reader %d refused: %s", self.device,
                        address, error)
            return False

    async def stop(self) -> None:
        """Stop polling and tear libosdp down (also after a failed start)."""
        self._stopping.set()
        if self._supervisor is not None:
            self._supervisor.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._supervisor
            self._supervisor = None
        cp, self._cp = self._cp, None
        if cp is not None:
            try:
                await asyncio.wait_for(asyncio.to_thread(_teardown, cp), STOP_SECONDS)
            except TimeoutError:  # the rest of the service still stops
                log.error("OSDP bus %s: libosdp did not stop within %gs", self.device,
                          STOP_SECONDS)
        if self._link is not None:
            self._link.close()
        for state in self._states.values():
            state.phase, state.secure = _Phase.WAITING, False


def _teardown(cp: Any) -> None:
    try:
        cp.teardown()
    except Exception:
        log.exception("OSDP: libosdp teardown failed")


@dataclass(frozen=True, slots=True)
class _Notification:
    """A libosdp status notification, before the panel reads it in the loop."""

    address: int
    kind: int
    active: bool
    default_key: bool


def _translate(address: int, event: Mapping[str, Any]) -> PanelEvent | _Notification | None:
    """libosdp's event dict -> ours (libosdp's thread; no state touched)."""
    kind = event.get("event")
    if kind == osdp.Event.CardRead:
        return CardData(address, {k: event.get(k) for k in ("format", "length", "data")})
    if kind == osdp.Event.KeyPress:
        data = event.get("data")
        return KeysPressed(address, bytes(data) if isinstance(data, (bytes, bytearray)) else b"")
    if kind == osdp.Event.Status and event.get("type") == _LOCAL_STATUS:
        report = event.get("report")
        report = bytes(report) if isinstance(report, (bytes, bytearray)) else b""
        return LocalStatus(address, tamper=report[:1] not in (b"", b"\x00"),
                           power_failure=report[1:2] not in (b"", b"\x00"))
    if kind == osdp.Event.Notification:
        return _Notification(address, int(event.get("type", -1)), bool(event.get("arg0")),
                             bool(event.get("arg1")))
    return None
