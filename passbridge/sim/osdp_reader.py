"""Simulated OSDP readers with keypads: libosdp Peripheral Devices on a pty bus.

A :class:`SimulatedBus` is a pseudo-terminal pair standing in for an RS-485
bus: the panel opens the terminal side by path (a stable symlink,
:attr:`SimulatedBus.path`, like udev's ``/dev/serial/by-id`` names), so the
panel's real serial path runs (pyserial, the baud rate, reopening), and the
simulated readers share the other side. Every reader on the bus sees every
byte the panel sends, as on a real multi-drop bus, and answers only its own
address (libosdp does that).

A :class:`SimulatedReader` is one libosdp PD with a card reader, a keypad,
an LED and a buzzer. It presents cards (the framing of
``protocol.wiegand.encode_card``, or raw bits for bad reads), types keys,
reports tamper and power, and records every LED and buzzer command it
receives, so tests and ``sim`` can see the feedback a person at the door
would see. A KEYSET from the panel (install mode) replaces its key, as a
real reader's would.

:meth:`SimulatedBus.unplug` closes the pty (the panel sees the device go
away); :meth:`SimulatedBus.replug` makes a new one under the same path.
Testing and demos only: ``serve`` runs none unless ``--simulate``.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import threading
import time
import tty
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import osdp

from passbridge.protocol.wiegand import CardFormat, EncodedCard, encode_card

__all__ = ["ReceivedCommand", "SimulatedBus", "SimulatedReader"]

_CAPABILITIES = [
    (osdp.Capability.CommunicationSecurity, 1, 1),
    (osdp.Capability.CardDataFormat, 1, 1),
    (osdp.Capability.LEDControl, 1, 1),
    (osdp.Capability.AudibleControl, 1, 1),
    (osdp.Capability.Readers, 1, 1),
    (osdp.Capability.ContactStatusMonitoring, 1, 1),
]
_READ_CHUNK = 4096


class SimulatedBus:
    """A pty pair as an OSDP bus; the panel opens :attr:`path`."""

    def __init__(self, folder: Path, name: str) -> None:
        folder.mkdir(parents=True, exist_ok=True)
        self.path = folder / name
        self._lock = threading.Lock()
        self._fd: int | None = None
        self._inboxes: list[bytearray] = []
        self.replug()

    def replug(self) -> None:
        """A new pty under :attr:`path` (the first one, or after an unplug)."""
        master, slave = os.openpty()
        tty.setraw(master)
        tty.setraw(slave)
        os.set_blocking(master, False)
        terminal = os.ttyname(slave)
        # The panel opens the terminal by path; holding it open here too
        # would keep the pty alive after the panel lets go.
        os.close(slave)
        with self._lock:
            self._fd = master
            for inbox in self._inboxes:
                inbox.clear()
        with contextlib.suppress(FileNotFoundError):
            self.path.unlink()
        self.path.symlink_to(terminal)

    def unplug(self) -> None:
        """Close the pty and remove the path: the panel loses the device."""
        with self._lock:
            fd, self._fd = self._fd, None
        with contextlib.suppress(FileNotFoundError):
            self.path.unlink()
        if fd is not None:
            os.close(fd)

    def close(self) -> None:
        self.unplug()

    def channel(self) -> _BusChannel:
        """One reader's view of the bus (its own copy of every byte)."""
        inbox = bytearray()
        with self._lock:
            self._inboxes.append(inbox)
        return _BusChannel(self, inbox)

    def _pump(self) -> None:
        """Move what the panel sent into every reader's inbox (lock held)."""
        fd = self._fd
        if fd is None:
            return
        while True:
            try:
                data = os.read(fd, _READ_CHUNK)
            except (BlockingIOError, OSError):  # nothing yet, or no panel has it open
                return
            if not data:
                return
            for inbox in self._inboxes:
                inbox.extend(data)

    def _release(self, inbox: bytearray) -> None:
        """A reader left the bus: stop copying the bus's bytes for it."""
        with self._lock:
            self._inboxes = [i for i in self._inboxes if i is not inbox]

    def _read(self, inbox: bytearray, max_bytes: int) -> bytes:
        with self._lock:
            self._pump()
            size = min(max_bytes, _first_frame(inbox))
            data = bytes(inbox[:size])
            del inbox[:size]
            return data

    def _write(self, data: bytes) -> int:
        with self._lock:
            fd = self._fd
            if fd is None:
                return 0
            try:
                return os.write(fd, data)
            except OSError:
                return 0


_SOM = 0x53
_HEADER = 4  # SOM, address, length (2 bytes, little-endian, the whole frame)


def _first_frame(inbox: bytearray) -> int:
    """How many bytes of ``inbox`` to hand a reader at once: up to the end of
    the first whole frame. libosdp's reader drops the rest of what it read
    with a frame for another address, so a poll for it that came in the same
    read went unanswered (the panel then waited 200 ms and probed again);
    a UART hands bytes over as they come, one frame is the closer match."""
    start = inbox.find(_SOM)
    if start < 0 or len(inbox) < start + _HEADER:
        return len(inbox)
    length = inbox[start + 2] | inbox[start + 3] << 8
    return start + length if length >= _HEADER else len(inbox)


class _BusChannel(osdp.Channel):  # type: ignore[misc]  # libosdp ships no type hints
    def __init__(self, bus: SimulatedBus, inbox: bytearray) -> None:
        super().__init__()
        self._bus = bus
        self._inbox = inbox

    def read(self, max_bytes: int) -> bytes:
        return self._bus._read(self._inbox, max_bytes)

    def write(self, buf: bytes) -> int:
        return self._bus._write(bytes(buf))

    def flush(self) -> None:
        return None

    def release(self) -> None:
        self._bus._release(self._inbox)


@dataclass(frozen=True, slots=True)
class ReceivedCommand:
    """A command the panel sent, as libosdp gave it to the reader, and when
    (``time.monotonic()``). ``kind`` is ``led``, ``buzzer``, ``keyset`` or ``other``."""

    kind: str
    fields: dict[str, Any] = field(repr=False)
    at: float

    def __repr__(self) -> str:
        shown = {k: v for k, v in self.fields.items() if k not in ("command", "data")}
        return f"ReceivedCommand({self.kind}, {shown})"


_KINDS = {osdp.Command.LED: "led", osdp.Command.Buzzer: "buzzer", osdp.Command.Keyset: "keyset"}


class SimulatedReader:
    """One simulated reader with keypad at ``address`` on ``bus``.

    ``scbk`` None: a reader fresh from the factory, in install mode (it
    accepts the default install key once and takes the key the panel sets).
    """

    def __init__(self, bus: SimulatedBus, address: int, scbk: bytes | None, *,
                 log_level: int = osdp.LogLevel.Error) -> None:
        self.bus = bus
        self.address = address
        self.scbk = scbk
        self.commands: list[ReceivedCommand] = []
        self._changed = threading.Condition()
        flags = [osdp.LibFlag.InstallMode] if scbk is None else [osdp.LibFlag.EnforceSecure]
        self._channel = bus.channel()
        info = osdp.PDInfo(address, self._channel, scbk=scbk, flags=flags,
                           name=f"sim-pd-{address}")
        self._pd = osdp.PeripheralDevice(info, osdp.PDCapabilities(_CAPABILITIES),
                                         log_level=log_level)
        # Straight to us: the wrapper's own handler also queues every command
        # for get_command(), which nothing reads.
        self._pd.ctx.set_command_callback(self._command)
        self._running = False

    def start(self) -> None:
        self._pd.start()
        self._running = True

    def stop(self) -> None:
        """Stop and tear the PD down (always: a PD left running hangs the process)."""
        if self._running:
            self._running = False
            self._pd.teardown()
        self._channel.release()

    # -- what the panel sees ----------------------------------------------------------

    @property
    def secure(self) -> bool:
        """The secure channel is up with the panel."""
        return bool(self._pd.is_sc_active())

    @property
    def online(self) -> bool:
        return bool(self._pd.is_online())

    def present_card(self, number: int, card_format: CardFormat | str = CardFormat.AUTO, *,
                     facility: int = 0) -> None:
        """A card at the reader, framed as ``card_format`` (parity and all)."""
        self.present_bits(encode_card(number, card_format, facility=facility))

    def present_bits(self, card: EncodedCard) -> None:
        """Raw bits at the reader, as given (bad parity, odd lengths, garbage)."""
        self._submit({"event": osdp.Event.CardRead, "reader_no": 0, "direction": 0,
                      **card.event_fields()})

    def type_keys(self, keys: str | bytes) -> None:
        """Keys pressed on the keypad (``1234#``; ``*`` clears), in one report."""
        data = keys.encode("ascii") if isinstance(keys, str) else keys
        self._submit({"event": osdp.Event.KeyPress, "reader_no": 0, "data": data})

    def report_status(self, *, tamper: bool = False, power_failure: bool = False) -> None:
        """The reader's tamper switch and power state (osdp_LSTATR)."""
        self._submit({"event": osdp.Event.Status, "type": osdp.StatusReportType.Local,
                      "nr_entries": 2, "report": bytes([int(tamper), int(power_failure)])})

    def _submit(self, event: dict[str, Any]) -> None:
        if not self._pd.submit_event(event):
            raise RuntimeError(f"simulated reader {self.address}: event not queued")

    # -- what the reader received ---------------------------------------------------

    def _command(self, command: dict[str, Any]) -> tuple[int, None]:
        """libosdp's thread: record the command (a KEYSET changes our key)."""
        kind = _KINDS.get(command.get("command", -1), "other")
        if kind == "keyset":
            data = command.get("data")
            if isinstance(data, (bytes, bytearray)):
                self.scbk = bytes(data)
        with self._changed:
            self.commands.append(ReceivedCommand(kind, dict(command), time.monotonic()))
            self._changed.notify_all()
        return 0, None

    def received(self, kind: str) -> list[ReceivedCommand]:
        with self._changed:
            return [c for c in self.commands if c.kind == kind]

    def wait_for(self, predicate: Callable[[ReceivedCommand], bool], *, after: int = 0,
                 timeout: float = 10.0) -> ReceivedCommand:
        """The first command from index ``after`` on that matches (blocking)."""
        deadline = time.monotonic() + timeout
        with self._changed:
            while True:
                for command in self.commands[after:]:
                    if predicate(command):
                        return command
                left = deadline - time.monotonic()
                if left <= 0:
                    raise TimeoutError(f"simulated reader {self.address}: no such command "
                                       f"within {timeout:g}s; got {self.commands[after:]}")
                self._changed.wait(left)

    async def next_command(self, kind: str, *, after: int = 0,
                           timeout: float = 10.0) -> ReceivedCommand:
        """:meth:`wait_for` a command of ``kind`` without blocking the event loop."""
        return await asyncio.to_thread(self.wait_for, lambda c: c.kind == kind, after=after,
                                       timeout=timeout)

    def wait_secure(self, timeout: float = 10.0) -> bool:
        """Block until the secure channel is up (True) or ``timeout`` (False)."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.secure and self.online:
                return True
            time.sleep(0.05)
        return False
