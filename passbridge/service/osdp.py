"""Wired OSDP readers for ``passbridge serve --osdp PORT:ADDRESS=DOOR[:SIDE][,OPTION=VALUE...]``.

One :class:`OsdpBus` (a Radio) per serial port runs the Control Panel
(adapters.osdp_panel) for every reader placed on that port, each at its
address and door side:

- card reads and keys go to that reader's ``bridge.wired_reader.WiredReader``
  and from there to the core;
- every decision at a door side with an OSDP reader, whatever path made it
  (the reader's own card, a keypad PIN over HTTP, an NFC tap at the same
  side), is shown at that reader: ``bridge.reader_feedback`` gives the LED
  and buzzer commands (the one mapping), the panel sends them;
- supervision: a reader coming online or going offline, a refused secure
  channel, tamper and power reports are ``device`` records in the audit log
  (and so on the live event stream), counted in ``/metrics``
  (``passbridge_radio_events_total{radio="osdp"}``), and the readers online
  and the age of each reader's last reply are gauges there too. A reader
  offline makes /healthz degraded, naming it.

Options per reader (after the placement, comma separated): ``format=`` the
card format (``auto`` default, ``h10301``, ``wiegand34``, ``raw``),
``facility=`` the only facility code accepted, ``keys=`` the keypad's
inter-key timeout in seconds (default 5), ``baud=`` the bus speed (9600
default; all readers of a port agree). The secure channel is always
required: each reader's key (SCBK) comes from the key store, set once by
``passbridge osdp install``.
"""

from __future__ import annotations

import asyncio
import logging
import math
import time
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field

from passbridge.adapters.osdp_panel import (
    ADDRESS_MAX,
    BAUD_RATES,
    DEFAULT_BAUD,
    CardData,
    KeysPressed,
    LinkChanged,
    LocalStatus,
    OsdpPanel,
    PanelEvent,
    PanelReader,
    PanelUnavailable,
    SecureChannelRefused,
)
from passbridge.bridge.reader_feedback import feedback_for
from passbridge.bridge.wired_reader import ReaderSettings, WiredReader
from passbridge.core.decision import Decision
from passbridge.core.model import Side
from passbridge.protocol.wiegand import CardFormat
from passbridge.service.runtime import Services
from passbridge.service.storage import StartupError

__all__ = ["OsdpBus", "OsdpPlacement", "ReaderStatus", "buses_for", "osdp_buses"]

log = logging.getLogger(__name__)

RADIO = "osdp"
"""The ``radio`` of this path in ``device`` records and metrics."""
MAX_INTER_KEY_SECONDS = 60.0


@dataclass(frozen=True, slots=True)
class OsdpPlacement:
    """One reader from ``--osdp PORT:ADDRESS=DOOR[:SIDE][,OPTION=VALUE...]``."""

    port: str
    address: int
    door: str
    side: Side
    settings: ReaderSettings = field(default_factory=ReaderSettings)
    baud: int = DEFAULT_BAUD

    @property
    def device(self) -> str:
        """How logs, records and reload refusals name the reader."""
        return f"{self.port}:{self.address}"

    @classmethod
    def parse(cls, text: str, doors: Iterable[str], option: str = "--osdp") -> OsdpPlacement:
        """StartupError naming the flag and the part at fault."""
        head, *options = text.split(",")
        where_from, sep, where = head.rpartition("=")
        port, colon, address_text = where_from.rpartition(":")
        if not sep or not colon or not port or not where:
            raise StartupError(f"{option} {text}: expected PORT:ADDRESS=DOOR[:SIDE], e.g. "
                               "/dev/ttyUSB0:1=front")
        if not address_text.isdigit() or int(address_text) > ADDRESS_MAX:
            raise StartupError(f"{option} {text}: the address must be 0-{ADDRESS_MAX}, "
                               f"not {address_text!r}")
        door, _, side = where.partition(":")
        if door not in set(doors):
            raise StartupError(f"{option} {text}: no door {door!r} on this site")
        if side not in ("", "in", "out"):
            raise StartupError(f"{option} {text}: side must be 'in' or 'out'")
        settings, baud = _options(option, text, options)
        return cls(port, int(address_text), door, Side(side or "in"), settings, baud)


def _options(option: str, text: str, options: list[str]) -> tuple[ReaderSettings, int]:
    card_format, facility = CardFormat.AUTO, None
    keys, baud = ReaderSettings().inter_key_timeout, DEFAULT_BAUD
    for item in options:
        name, eq, value = item.partition("=")
        where = f"{option} {text}: {name}="
        if not eq:
            raise StartupError(f"{option} {text}: expected OPTION=VALUE, not {item!r} "
                               "(options: format, facility, keys, baud)")
        if name == "format":
            try:
                card_format = CardFormat(value)
            except ValueError:
                choices = ", ".join(f.value for f in CardFormat)
                raise StartupError(f"{where} one of {choices}") from None
        elif name == "facility":
            if not value.isdigit() or int(value) >= 1 << 16:
                raise StartupError(f"{where} a facility code 0-65535")
            facility = int(value)
        elif name == "keys":
            try:
                keys = float(value)
            except ValueError:
                keys = math.nan
            if not 0 < keys <= MAX_INTER_KEY_SECONDS:
                raise StartupError(f"{where} seconds between keys, over 0 and at most "
                                   f"{MAX_INTER_KEY_SECONDS:g}")
        elif name == "baud":
            if not value.isdigit() or int(value) not in BAUD_RATES:
                raise StartupError(f"{where} one of {', '.join(map(str, BAUD_RATES))}")
            baud = int(value)
        else:
            raise StartupError(f"{option} {text}: unknown option {name!r} "
                               "(options: format, facility, keys, baud)")
    return ReaderSettings(card_format, facility, keys), baud


@dataclass(frozen=True, slots=True)
class ReaderStatus:
    """One reader for /metrics and /healthz."""

    door: str
    side: Side
    device: str
    online: bool
    last_reply_age: float | None


class _Reader:
    """One placed reader: its panel address, its door-side logic, its state."""

    def __init__(self, placement: OsdpPlacement, wired: WiredReader) -> None:
        self.placement = placement
        self.wired = wired
        self.tamper = False
        self.power_failure = False
        self.offline_since: float | None = time.monotonic()


class OsdpBus:
    """A Radio: the Control Panel of one serial port and the readers on it."""

    def __init__(self, services: Services, placements: Sequence[OsdpPlacement], *,
                 secure: bool = True) -> None:
        if not placements or len({p.port for p in placements}) != 1:
            raise ValueError("one OsdpBus per port, with at least one reader")
        bauds = {p.baud for p in placements}
        port = placements[0].port
        if len(bauds) != 1:
            raise StartupError(f"--osdp {port}: its readers ask for different baud rates "
                               f"({', '.join(map(str, sorted(bauds)))}); a bus has one")
        self._services = services
        self.port = port
        self.baud = bauds.pop()
        self._readers: dict[int, _Reader] = {}
        panel_readers = []
        for place in placements:
            if place.address in self._readers:
                raise StartupError(f"--osdp {place.device}: two readers at one address")
            key = services.keystore.osdp_key(place.door, place.side)
            if key is None:
                raise StartupError(
                    f"--osdp {place.device}: no OSDP key for door {place.door!r} side "
                    f"{place.side.value}; install the reader first: passbridge osdp install "
                    f"--port {place.port} --address {place.address} --door "
                    f"{place.door}:{place.side.value}")
            wired = WiredReader(services.controller, services.clock, place.door, place.side,
                                place.settings, name=place.device)
            self._readers[place.address] = _Reader(place, wired)
            panel_readers.append(PanelReader(place.address, key.scbk))
        self.panel = OsdpPanel(port, panel_readers, self._event, baud=self.baud, secure=secure)
        self._sides = {(r.placement.door, r.placement.side) for r in self._readers.values()}
        self._started = False
        # device records being written; stop() waits for them (none is lost).
        self._writes: set[asyncio.Task[None]] = set()

    @property
    def placements(self) -> list[OsdpPlacement]:
        """Every reader of this bus (site reloads keep their door sides)."""
        return [r.placement for r in self._readers.values()]

    @property
    def health_name(self) -> str:
        return f"osdp {self.port}"

    def wired_reader(self, door: str, side: Side) -> WiredReader | None:
        """The reader at that door side on this bus (sim and scenarios present cards there)."""
        for reader in self._readers.values():
            if (reader.placement.door, reader.placement.side) == (door, side):
                return reader.wired
        return None

    def status(self) -> list[ReaderStatus]:
        return [ReaderStatus(r.placement.door, r.placement.side, r.placement.device,
                             self.panel.is_online(a), self.panel.last_reply_age(a))
                for a, r in self._readers.items()]

    def health(self) -> str | None:
        """A line while any reader is offline; None when all are online."""
        now = time.monotonic()
        down = [f"{r.placement.device} ({r.placement.door}/{r.placement.side.value}, "
                f"{now - r.offline_since:.0f}s)"
                for r in self._readers.values() if r.offline_since is not None]
        return f"readers offline: {', '.join(down)}" if down else None

    async def start(self) -> None:
        services = self._services
        try:
            await self.panel.start()
        except PanelUnavailable as error:
            await self.panel.stop()
            raise StartupError(str(error)) from None
        for reader in self._readers.values():
            reader.wired.start()
        services.controller.observe(self._show)
        services.metrics.watch_wired_readers(self.status)
        self._started = True

    async def stop(self) -> None:
        if not self._started:
            return
        self._started = False
        services = self._services
        services.controller.unobserve(self._show)
        services.metrics.unwatch_wired_readers(self.status)
        # The panel first: no new input; then let the readers finish the one being decided.
        await self.panel.stop()
        for reader in self._readers.values():
            await reader.wired.stop()
        if self._writes:
            await asyncio.gather(*self._writes, return_exceptions=True)

    # -- decisions -> the readers of that door side ------------------------------------

    def _show(self, decision: Decision, _latency: float) -> None:
        """A controller observer: show each decision at this bus's readers of its side."""
        if (decision.door, decision.side) not in self._sides:
            return
        door = self._services.core.site.doors.get(decision.door)
        if door is None:
            return
        try:
            feedback = feedback_for(decision, door)
        except ValueError:  # a door time the wire cannot carry: show nothing, decide on
            log.exception("OSDP bus %s: no feedback for decision %s", self.port, decision.id)
            return
        for address, reader in self._readers.items():
            place = reader.placement
            if (place.door, place.side) == (decision.door, decision.side):
                # The LED first: it replaces a running pattern (a waiting one) at once.
                sent = self.panel.submit_led(address, feedback.led)
                sent = self.panel.submit_buzzer(address, feedback.buzzer) and sent
                if not sent:
                    log.info("OSDP reader %s is offline: decision %s not shown there",
                             place.device, decision.id)

    # -- events from the panel ----------------------------------------------------------------

    def _event(self, event: PanelEvent) -> None:
        reader = self._readers.get(event.address)
        if reader is None:
            return
        if isinstance(event, CardData):
            reader.wired.card(event.fields)
        elif isinstance(event, KeysPressed):
            reader.wired.keys(event.keys)
        elif isinstance(event, LinkChanged):
            self._link(reader, event)
        elif isinstance(event, SecureChannelRefused):
            log.warning("OSDP reader %s at %s/%s refused the secure channel (wrong key, "
                        "or not installed: passbridge osdp install)", reader.placement.device,
                        reader.placement.door, reader.placement.side.value)
            self._record(reader, "osdp_secure_channel_refused")
        elif isinstance(event, LocalStatus):
            self._local_status(reader, event)

    def _link(self, reader: _Reader, event: LinkChanged) -> None:
        place = reader.placement
        if event.online:
            reader.offline_since = None
            log.info("OSDP reader %s at %s/%s online (secure channel %s)", place.device,
                     place.door, place.side.value, "up" if event.secure else "off")
            self._record(reader, "osdp_reader_online", secure_channel=event.secure)
        else:
            reader.offline_since = time.monotonic()
            reader.wired.went_offline()
            log.warning("OSDP reader %s at %s/%s offline", place.device, place.door,
                        place.side.value)
            self._record(reader, "osdp_reader_offline")

    def _local_status(self, reader: _Reader, status: LocalStatus) -> None:
        if status.tamper != reader.tamper:
            reader.tamper = status.tamper
            self._record(reader, "osdp_tamper" if status.tamper else "osdp_tamper_cleared")
        if status.power_failure != reader.power_failure:
            reader.power_failure = status.power_failure
            self._record(reader, "osdp_power_failure" if status.power_failure
                         else "osdp_power_restored")

    def _record(self, reader: _Reader, event: str, **extra: object) -> None:
        """A ``device`` audit record (and so a live event), and its counter."""
        services, place = self._services, reader.placement
        services.metrics.radio_event(RADIO, place.door, place.side.value, event)
        payload = {"radio": RADIO, "door": place.door, "side": place.side.value,
                   "device": place.device, "event": event,
                   "at": services.clock.now().isoformat(), **extra}
        task = asyncio.create_task(self._write(payload), name=f"osdp {event} record")
        self._writes.add(task)
        task.add_done_callback(self._writes.discard)

    async def _write(self, payload: dict[str, object]) -> None:
        try:
            await self._services.audit.record_change("device", payload)
        except Exception:
            log.exception("OSDP bus %s: cannot write a device record (%s)", self.port,
                          payload.get("event"))


def osdp_buses(services: Services, specs: Sequence[str]) -> list[OsdpBus]:
    """One OsdpBus per port named in ``--osdp`` specs (StartupError for a bad one)."""
    doors = services.site.doors
    return buses_for(services, [OsdpPlacement.parse(spec, doors) for spec in specs])


def buses_for(services: Services, placements: Sequence[OsdpPlacement]) -> list[OsdpBus]:
    """One OsdpBus per port of ``placements``; one reader per door side (its
    key is the door side's)."""
    by_port: dict[str, list[OsdpPlacement]] = {}
    sides: set[tuple[str, Side]] = set()
    for place in placements:
        if (place.door, place.side) in sides:
            raise StartupError(f"--osdp {place.device}: door {place.door} side "
                               f"{place.side.value} has a reader already (one OSDP reader "
                               "per door side)")
        sides.add((place.door, place.side))
        by_port.setdefault(place.port, []).append(place)
    return [OsdpBus(services, places) for places in by_port.values()]
