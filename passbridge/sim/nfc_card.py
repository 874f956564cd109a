"""A simulated ISO 14443-4 (Type 4A) card on nfcpy's ``udp`` driver.

nfcpy only emulates Type 3 cards, but a phone doing Aliro is an ISO-DEP card
that answers APDUs. This module plays that card with nfcpy's own target API
(``listen`` then ``exchange``), so the reader code under test is nfcpy's
unchanged reader stack talking to something that behaves like a phone on a
real field: an ATS, ISO-DEP blocks with chaining both ways, R(ACK)/R(NAK),
S(WTX) while the applet is busy and S(DESELECT).

The applet is a plain ``bytes -> bytes`` callable (the phone role), so the
same card serves a trivial echo applet in tests and the Aliro phone applet in
scenarios. A card can misbehave on purpose (see :class:`CardFaults`) to prove
that the reader side recovers.

The card listens on 127.0.0.1 only: nfcpy's udp driver would bind every
interface, which a test rig must never do, so the socket is made and bound
here. Binding happens in the constructor, so a busy port is a clear
:class:`CardPortBusy` instead of nfcpy's silent ``None`` from ``listen()``.
"""

from __future__ import annotations

import concurrent.futures
import errno
import logging
import platform
import secrets
import select
import socket
import threading
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from types import TracebackType
from typing import Any, Literal

import nfc.clf
import nfc.clf.udp

from passbridge.errors import PassbridgeError

__all__ = [
    "Applet",
    "CardError",
    "CardFaults",
    "CardPortBusy",
    "SimulatedCard",
    "bind_loopback_udp",
    "nfcpy_can_use_port",
]

log = logging.getLogger(__name__)

Applet = Callable[[bytes], bytes]

LOOPBACK = "127.0.0.1"

# ISO 14443-4 frame size table, indexed by FSCI/FSDI.
_FRAME_SIZES = (16, 24, 32, 40, 48, 64, 96, 128, 256)
# How long one blocking nfcpy call may wait before the card looks at its flags.
_TICK = 0.05
_SW_APPLET_CRASHED = b"\x6f\x00"


class CardError(PassbridgeError, RuntimeError):
    """The simulated card could not be set up."""


class CardPortBusy(CardError):
    """The UDP port asked for is taken: each simulated card needs its own."""


@dataclass(frozen=True, slots=True)
class CardFaults:
    """Deliberate misbehaviour for one presence of the card in the field.

    APDU indexes count command APDUs from 0 within that presence (one tap).
    """

    delay: Mapping[int, float] = field(default_factory=dict)
    """Seconds the applet takes before answering the APDU at that index."""
    truncate: Mapping[int, int] = field(default_factory=dict)
    """Keep only the first n bytes of the response APDU at that index."""
    garbage: Mapping[int, bytes] = field(default_factory=dict)
    """Answer these bytes instead of the applet's response at that index."""
    drop_after: int | None = None
    """Answer this many APDUs, then lose the field on the next one."""
    drop_mode: Literal["rfoff", "silent"] = "rfoff"
    """How the field is lost: the link breaks at once (``rfoff``, what the udp
    driver uses for a dropped field) or the card just stops answering."""
    hold: bool = False
    """Hostile: stay in the field and answer every presence check at once
    with a junk frame (nfcpy counts any answer as "still here")."""
    mute_after: int | None = None
    """Answer this many APDUs, then stay in the field answering nothing at
    all, presence checks included (with a long FWI, each check waits it out)."""
    bounce: bool = False
    """Hostile: after the tap, break the link at the first presence check
    and present itself again at once, as fast as the reader polls."""


def nfcpy_can_use_port(port: int) -> bool:
    """Whether nfcpy's udp driver can open ``udp:127.0.0.1:PORT``.

    The driver turns the path's port back into a number through
    ``getnameinfo`` without ``NI_NUMERICSERV``, so a port that /etc/services
    names (57000 is ``dircproxy``) comes back as that name and the reader
    fails to open (``int('dircproxy')``).
    """
    _host, service = socket.getnameinfo((LOOPBACK, port), socket.NI_NUMERICHOST)
    return service.isdigit()


# How many unusable (named) ports in a row the OS may offer before giving up.
_PORT_TRIES = 20


def bind_loopback_udp(port: int) -> socket.socket:
    """A UDP socket bound to ``LOOPBACK:port``; for port 0 one nfcpy's udp
    driver can reach (``nfcpy_can_use_port``): a free port the OS picks is
    otherwise now and then a named one, and the tap then fails at random.
    OSError as ``socket.bind`` raises it."""
    refused: list[socket.socket] = []  # held while picking, so the OS offers others
    try:
        for _ in range(_PORT_TRIES):
            sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
            try:
                sock.bind((LOOPBACK, port))
            except OSError:
                sock.close()
                raise
            if port != 0 or nfcpy_can_use_port(sock.getsockname()[1]):
                return sock
            refused.append(sock)
        raise CardError(f"no UDP port on {LOOPBACK} that nfcpy's udp driver can use "
                        f"in {_PORT_TRIES} tries (each one named in /etc/services)")
    finally:
        for sock in refused:
            sock.close()


class _LoopbackCardDevice(nfc.clf.udp.Device):  # type: ignore[misc]
    """nfcpy's udp device, bound to loopback once and kept bound.

    nfcpy's own device rebinds (to 0.0.0.0) on every ``listen()``; keeping one
    loopback socket for the card's lifetime also means the port can never be
    lost to someone else between two taps.
    """

    def __init__(self, port: int) -> None:
        try:
            sock = bind_loopback_udp(port)
        except OSError as error:
            if error.errno == errno.EADDRINUSE:
                raise CardPortBusy(
                    f"UDP port {LOOPBACK}:{port} is already in use; give each simulated card "
                    "its own free port (port=0 picks one)"
                ) from None
            raise CardError(f"cannot bind {LOOPBACK}:{port}: {error.strerror}") from None
        self.socket: socket.socket | None = sock
        self.addr = sock.getsockname()
        self._path = f"{LOOPBACK}:{self.addr[1]}"
        self.sent_data = self.rcvd_data = 0
        self._vendor_name = platform.uname()[0]
        self._device_name = "IP-Stack"
        self._chipset_name = "UDP (simulated card)"

    def _create_socket(self) -> None:
        if self.socket is None:
            raise nfc.clf.BrokenLinkError("simulated card is closed")

    def _bind_socket(self, time_to_return: float) -> bool:
        return self.socket is not None

    def mute(self) -> None:
        """Keep the socket: nfcpy calls this before every listen()."""

    def close(self) -> None:
        if self.socket is not None:
            self.socket.close()
            self.socket = None

    def discard_pending(self, timeout: float) -> None:
        """Drop whatever the reader sends while the card is out of the field."""
        sock = self.socket
        if sock is None:
            return
        readable, _, _ = select.select([sock], [], [], timeout)
        while readable:
            sock.recvfrom(2048)
            readable, _, _ = select.select([sock], [], [], 0)

    def break_link(self, addr: Any) -> None:
        """Tell the reader at *addr* the field is gone, the udp driver's way."""
        if self.socket is not None and addr is not None:
            self.socket.sendto(b"RFOFF", addr)


@dataclass(slots=True)
class _Presence:
    """What the card knows about its current stay in the field."""

    faults: CardFaults
    apdus: int = 0


@dataclass(slots=True)
class _Occupant:
    """A further card in the same field (see :meth:`SimulatedCard.join_field`)."""

    applet: Applet
    presence: _Presence


class SimulatedCard:
    """A phone-like Type 4A card that answers APDUs with *applet* over nfcpy udp.

    Use as a context manager (or ``start()``/``stop()``); point a reader at
    :attr:`device`. The card starts in the field unless ``in_field=False``;
    :meth:`leave_field` and :meth:`enter_field` model taking the phone away
    and tapping again.
    """

    def __init__(
        self,
        applet: Applet,
        *,
        port: int = 0,
        uid: bytes | None = None,
        fwi: int = 9,
        wtx: bool = True,
        in_field: bool = True,
        faults: CardFaults | None = None,
        ats: bytes | None = None,
    ) -> None:
        """``ats``: answer RATS with these bytes instead of a well-formed ATS
        (a hostile or broken card; the default is built from ``fwi``)."""
        if not 0 <= fwi <= 14:
            raise ValueError("fwi must be 0..14 (ISO 14443-4)")
        if uid is not None and len(uid) != 4:
            raise ValueError("uid must be 4 bytes (single size NFCID1)")
        self._applet = applet
        # Phones use a random single-size UID (first byte 08h): no identity in it.
        self._uid = uid if uid is not None else b"\x08" + secrets.token_bytes(3)
        self._fwi = fwi
        self._ats_override = ats
        self._fwt = 4096 / 13.56e6 * (1 << fwi)
        self._wtx = wtx
        self._device = _LoopbackCardDevice(port)
        self._clf: Any = nfc.ContactlessFrontend()
        self._clf.device = self._device
        self._lock = threading.Lock()
        self._stopping = threading.Event()
        self._interrupt = threading.Event()
        self._in_field = in_field
        self._presence = _Presence(faults or CardFaults())
        self._others: list[_Occupant] = []
        self._turn = 0
        self._current: _Occupant | None = None  # None: this card itself
        self._received: list[bytes] = []
        self._activations = 0
        self._serving = False
        self._thread: threading.Thread | None = None
        self._applet_pool = concurrent.futures.ThreadPoolExecutor(
            max_workers=1, thread_name_prefix="sim-card-applet"
        )

    # -- what tests and scenarios see -------------------------------------------------

    @property
    def port(self) -> int:
        return int(self._device.addr[1])

    @property
    def address(self) -> tuple[str, int]:
        """The address the card's socket is actually bound to (loopback)."""
        host, port = self._device.addr
        return str(host), int(port)

    @property
    def device(self) -> str:
        """The nfcpy device path a reader uses to reach this card."""
        return f"udp:{LOOPBACK}:{self.port}"

    @property
    def uid(self) -> bytes:
        return self._uid

    @property
    def in_field(self) -> bool:
        with self._lock:
            return self._in_field

    @property
    def activations(self) -> int:
        """How many times a reader activated the card (RATS answered)."""
        with self._lock:
            return self._activations

    @property
    def in_session(self) -> bool:
        """A reader's activation of this card (or a card in its field) is going on."""
        with self._lock:
            return self._serving

    def received_apdus(self) -> list[bytes]:
        """Every command APDU the card got, reassembled from chained blocks."""
        with self._lock:
            return list(self._received)

    def enter_field(self, faults: CardFaults | None = None) -> None:
        """Bring the card (back) into the field; *faults* apply to this stay only."""
        with self._lock:
            self._presence = _Presence(faults or CardFaults())
            self._in_field = True
            self._interrupt.clear()

    def leave_field(self, joined: Applet | None = None) -> None:
        """Take the card away: it stops answering mid-exchange if need be.

        ``joined``: take away instead the card that joined the field with
        this applet (see :meth:`join_field`).
        """
        with self._lock:
            if joined is None:
                self._in_field = False
                self._interrupt.set()
            else:
                self._others = [other for other in self._others if other.applet is not joined]
        self._wake()

    def join_field(self, applet: Applet, faults: CardFaults | None = None) -> None:
        """Another card comes into the same field and stays (until :meth:`stop`
        or ``leave_field(applet)``).

        The udp driver has no anticollision: the cards in the field simply
        take turns, one per activation (after the reader switched its field
        off and polled again), this card first.
        """
        with self._lock:
            self._others.append(_Occupant(applet, _Presence(faults or CardFaults())))

    def start(self) -> SimulatedCard:
        if self._thread is not None:
            raise CardError("simulated card already started")
        self._thread = threading.Thread(
            target=self._run, name=f"sim-card-{self.port}", daemon=True
        )
        self._thread.start()
        return self

    def stop(self, timeout: float = 5.0) -> None:
        """Stop the card thread and release the port."""
        self._stopping.set()
        self._interrupt.set()
        thread = self._thread
        if thread is not None:
            self._wake()
            thread.join(timeout)
            if thread.is_alive():
                log.warning("simulated card on port %d did not stop in %.1fs", self.port, timeout)
                return
        self._applet_pool.shutdown(wait=False, cancel_futures=True)
        self._clf.close()

    def __enter__(self) -> SimulatedCard:
        return self.start()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()

    # -- the card thread --------------------------------------------------------------

    def _wake(self) -> None:
        """Nudge the card thread out of a blocking nfcpy call with a no-op frame."""
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as nudge:
            nudge.sendto(b"106A 00", (LOOPBACK, self.port))

    def _present(self) -> bool:
        if self._stopping.is_set():
            return False
        with self._lock:
            current = self._current
            if current is None:
                return self._in_field
            return current in self._others

    def _field_occupied(self) -> bool:
        with self._lock:
            return self._in_field or bool(self._others)

    def _next_occupant(self) -> None:
        """Pick the card the reader activates this time (turns, this card first)."""
        with self._lock:
            cards: list[_Occupant | None] = [None] if self._in_field else []
            cards += self._others
            self._current = cards[self._turn % len(cards)] if cards else None
            self._turn += 1
            self._activations += 1
            self._serving = True

    def _local_target(self) -> Any:
        return nfc.clf.LocalTarget(
            "106A",
            sens_res=bytearray(b"\x04\x00"),
            sdd_res=bytearray(self._uid),
            sel_res=bytearray(b"\x20"),  # ISO 14443-4 compliant, no NFC-DEP
        )

    def _run(self) -> None:
        while not self._stopping.is_set():
            try:
                if not self._field_occupied():
                    self._device.discard_pending(_TICK)
                    continue
                target = self._clf.listen(self._local_target(), 0.5)
                if target is None or not self._field_occupied():
                    continue
                rats = target.tt4_cmd
                if not rats or len(rats) < 2 or rats[0] != 0xE0:
                    continue  # a stray frame, not an activation
                self._next_occupant()
                try:
                    self._serve(bytes(rats), target)
                finally:
                    with self._lock:
                        self._serving = False
            except Exception:  # the card must outlive any one bad exchange
                if self._stopping.is_set():
                    return
                log.exception("simulated card session failed")

    def _occupant(self) -> tuple[_Presence, Applet]:
        """The presence and applet of the card the reader activated last."""
        with self._lock:
            current = self._current
            if current is None:
                return self._presence, self._applet
            return current.presence, current.applet

    def _ats(self) -> bytes:
        if self._ats_override is not None:
            return self._ats_override
        # TL, T0 (TA/TB/TC present, FSCI 8 = 256 bytes), TA (106 kbit/s only),
        # TB (FWI, SFGI 0), TC (no CID, no NAD).
        return bytes([0x05, 0x78, 0x80, self._fwi << 4, 0x00])

    def _serve(self, rats: bytes, target: Any) -> None:
        """One activation: ISO-DEP blocks until the reader or the field goes away."""
        fsd = _FRAME_SIZES[min(rats[1] >> 4, 8)]
        max_inf = fsd - 3  # PCB + 2 CRC bytes on a real field
        reply: bytes | None = self._ats()
        last_sent = reply
        block_number = 1  # the PICC block number starts at 1 after activation
        command = bytearray()
        pending: list[bytes] = []
        while True:
            try:
                frame = self._clf.exchange(reply, _TICK)
            except nfc.clf.TimeoutError:
                reply = None
                if not self._present():
                    return
                continue
            except nfc.clf.BrokenLinkError:
                return  # the reader switched its field off
            except nfc.clf.CommunicationError:
                reply = None
                continue
            reply = None
            if not self._present() or frame is None:
                return
            if not frame:
                continue
            pcb = frame[0]
            presence, _ = self._occupant()
            faults = presence.faults
            if faults.mute_after is not None and presence.apdus >= faults.mute_after:
                continue  # in the field, answering nothing
            presence_check = pcb & 0xF6 == 0xB2  # R(NAK)
            if presence_check and presence.apdus and (faults.hold or faults.bounce):
                if faults.bounce:  # gone, and straight back for the next activation
                    self._device.break_link(getattr(target, "_addr", None))
                    return
                reply = b"\x00"  # junk: any answer keeps nfcpy's presence check true
                continue
            if pcb & 0xE2 == 0x02:  # I-block
                number = pcb & 0x01
                header = 1 + bool(pcb & 0x08) + bool(pcb & 0x04)
                command += frame[header:]
                block_number = number
                if pcb & 0x10:  # the reader chains: acknowledge and wait for more
                    reply = last_sent = bytes([0xA2 | number])
                    continue
                apdu, command = bytes(command), bytearray()
                answer = self._answer(apdu, target)
                if answer is None:
                    return
                chunks = [answer[i : i + max_inf] for i in range(0, len(answer), max_inf)]
                first, pending = (chunks[0], chunks[1:]) if chunks else (b"", [])
                reply = last_sent = bytes([(0x12 if pending else 0x02) | number]) + first
            elif pcb & 0xF6 == 0xA2:  # R(ACK)
                number = pcb & 0x01
                if number != block_number and pending:
                    chunk = pending.pop(0)
                    block_number = number
                    reply = last_sent = bytes([(0x12 if pending else 0x02) | number]) + chunk
                else:
                    reply = last_sent
            elif pcb & 0xF6 == 0xB2:  # R(NAK): resend, or say "still here"
                number = pcb & 0x01
                reply = last_sent if number == block_number else bytes([0xA2 | block_number])
            elif pcb & 0xF7 == 0xC2:  # S(DESELECT)
                self._clf.exchange(b"\xc2", 0)
                return
            # anything else (a late S(WTX) response, junk): stay silent

    def _answer(self, apdu: bytes, target: Any) -> bytes | None:
        """Run the applet for one APDU, applying this presence's faults.

        None means the field is gone and the session ends.
        """
        presence, applet = self._occupant()
        with self._lock:
            index = presence.apdus
            presence.apdus += 1
            self._received.append(apdu)
        faults = presence.faults
        if faults.drop_after is not None and index >= faults.drop_after:
            log.debug("simulated card drops the field at APDU %d (%s)", index, faults.drop_mode)
            with self._lock:
                self._in_field = False
            if faults.drop_mode == "rfoff":
                self._device.break_link(getattr(target, "_addr", None))
            return None
        pending = self._applet_pool.submit(
            self._run_applet, applet, apdu, faults.delay.get(index, 0.0))
        if not self._wait_for_applet(pending):
            return None
        answer = pending.result()
        if index in faults.garbage:
            answer = faults.garbage[index]
        if index in faults.truncate:
            answer = answer[: faults.truncate[index]]
        return answer

    def _run_applet(self, applet: Applet, apdu: bytes, delay: float) -> bytes:
        if delay > 0 and self._interrupt.wait(delay):
            return b""
        try:
            return bytes(applet(apdu))
        except Exception:
            log.exception("applet raised on a command APDU; answering 6F00")
            return _SW_APPLET_CRASHED

    def _wait_for_applet(self, pending: concurrent.futures.Future[bytes]) -> bool:
        """Wait for the applet, asking the reader for more time as a phone does."""
        interval = self._fwt / 3
        while True:
            try:
                pending.result(timeout=interval)
                return True
            except concurrent.futures.TimeoutError:
                pass
            if not self._present():
                return False
            if not self._wtx:
                continue
            try:
                # S(WTX) with WTXM 1; nfcpy echoes it and waits one more FWT.
                self._clf.exchange(b"\xf2\x01", self._fwt)
            except nfc.clf.BrokenLinkError:
                return False
            except nfc.clf.CommunicationError:
                continue
