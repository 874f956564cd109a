"""The bridge's BLE edge (bleak, central role): proximity and Bluetooth unlock.

Two jobs share the radio:

* ``ProximityScanner`` listens for passbridge advertisements and keeps a
  ``ProximityTable`` of rotating identifiers with their best recent RSSI,
  one table per door radio (``ProximityRadios``). A Nearby unlock asks the
  tables of its door ``heard_at(door, adv_id)``; a Bluetooth unlock takes
  the RSSI of the phone it connects to from its radio's table.
* ``BleUnlockClient`` connects to one phone, subscribes to its response
  characteristic and gives a handler an ``exchange(bytes) -> bytes`` link, the
  same shape as the NFC path, so the bridge's one reader driver
  (bridge.reader_driver) runs the same transaction over it (with the BLE
  interface byte). It moves bytes and knows nothing of Aliro. The link is
  always torn down in ``finally``; retries are bounded and each starts from a
  fresh connection and a fresh handler, so no session is ever left half-open.

The bleak backend is injected as a CLASS (``backend=``): None means bleak's
platform default (BlueZ on a Linux host); tests and the scenario runner pass
the classes of ``passbridge.sim.bleak_bumble``. Nothing here imports bumble.
"""

from __future__ import annotations

import asyncio
import contextlib
import heapq
import itertools
import logging
from collections import OrderedDict, deque
from collections.abc import AsyncIterator, Awaitable, Callable, Hashable
from dataclasses import dataclass
from typing import Any, TypeVar

from bleak import BleakClient, BleakScanner
from bleak.backends.client import BaseBleakClient
from bleak.backends.device import BLEDevice
from bleak.backends.scanner import AdvertisementData, BaseBleakScanner
from bleak.exc import BleakError

from passbridge.adapters.ble_settings import DEFAULT_BLE_SETTINGS, BleSettings
from passbridge.clock import Clock, SystemClock
from passbridge.core.model import Side
from passbridge.core.policy import NEARBY_RSSI_MIN, NEARBY_WINDOW_SECONDS
from passbridge.errors import PassbridgeError
from passbridge.protocol.ble_advert import AdvertError, adv_id_from_service_data
from passbridge.protocol.ble_framing import (
    MIN_ATT_MTU,
    REQUEST_CHAR_UUID,
    RESPONSE_CHAR_UUID,
    SERVICE_UUID,
    FramingError,
    MessageAssembler,
    frame_message,
)

log = logging.getLogger(__name__)

T = TypeVar("T")



# --------------------------------------------------------------------------- proximity


@dataclass(frozen=True, slots=True)
class Sighting:
    """A phone's rotating id seen strongly enough, recently enough."""

    adv_id: bytes
    rssi: int  # best RSSI within the asked window
    seen_at: float  # clock.elapsed() when that RSSI was heard
    last_seen: float  # clock.elapsed() of the latest advertisement
    address: str  # latest BLE address (rotates with the id on real phones)
    device: BLEDevice | None  # what BleakClient needs to connect, if the scanner had it


class _Entry:
    __slots__ = ("samples", "last_seen", "address", "device")

    def __init__(self) -> None:
        # (elapsed, rssi), oldest first, RSSI strictly falling: a sample that
        # is both older and no stronger than a newer one can never be the
        # best answer to any query, so it is dropped on arrival.
        self.samples: deque[tuple[float, int]] = deque()
        self.last_seen = 0.0
        self.address = ""
        self.device: BLEDevice | None = None


class ProximityTable:
    """Rotating id -> best recent RSSI, aged out after ``max_age`` seconds.

    Bounded: beyond ``capacity`` ids the one heard least recently is evicted,
    so a crowd (or a flood of fake advertisements) costs bounded memory.
    Time is the injected clock's ``elapsed()``, never the wall clock.
    Not thread-safe: use it from the event loop that runs the scanner.
    """

    def __init__(
        self, clock: Clock | None = None, *, max_age: float = NEARBY_WINDOW_SECONDS,
        capacity: int = 16384,
    ) -> None:
        if max_age <= 0:
            raise ValueError("max_age must be positive")
        if capacity < 1:
            raise ValueError("capacity must be at least 1")
        self._clock = clock or SystemClock()
        self.max_age = max_age
        self.capacity = capacity
        self._entries: OrderedDict[bytes, _Entry] = OrderedDict()
        self.evicted = 0

    def __len__(self) -> int:
        return len(self._entries)

    def observe(
        self, adv_id: bytes, rssi: int, *, address: str = "", device: BLEDevice | None = None
    ) -> None:
        """One advertisement heard now."""
        now = self._clock.elapsed()
        entries = self._entries
        entry = entries.get(adv_id)
        if entry is None:
            entry = _Entry()
            entries[adv_id] = entry
        else:
            entries.move_to_end(adv_id)
        samples = entry.samples
        while samples and samples[-1][1] <= rssi:
            samples.pop()
        samples.append((now, rssi))
        entry.last_seen = now
        if address:
            entry.address = address
        if device is not None:
            entry.device = device
        self._expire(now)
        while len(entries) > self.capacity:
            entries.popitem(last=False)
            self.evicted += 1

    def _expire(self, now: float) -> None:
        # Entries are kept in order of last sighting, so the stale ones are
        # all at the front.
        cutoff = now - self.max_age
        entries = self._entries
        while entries:
            oldest = next(iter(entries.values()))
            if oldest.last_seen >= cutoff:
                break
            entries.popitem(last=False)

    def seen(
        self, adv_id: bytes, min_rssi: int = NEARBY_RSSI_MIN, within: float = NEARBY_WINDOW_SECONDS
    ) -> Sighting | None:
        """The sighting if ``adv_id`` was heard at >= ``min_rssi`` in the last ``within`` s."""
        if within < 0:
            raise ValueError("within must not be negative")
        entry = self._entries.get(adv_id)
        if entry is None:
            return None
        now = self._clock.elapsed()
        cutoff = now - min(within, self.max_age)
        for at, rssi in entry.samples:  # oldest first, so the first in the window is the best
            if at >= cutoff:
                if rssi >= min_rssi:
                    return Sighting(adv_id, rssi, at, entry.last_seen, entry.address, entry.device)
                return None
        return None

    def strong(self, min_rssi: int, within: float = 2.0) -> list[Sighting]:
        """Every id heard at >= ``min_rssi`` in the last ``within`` s, most recent
        first: the phones close enough to a reader for a Bluetooth unlock."""
        now = self._clock.elapsed()
        found: list[Sighting] = []
        for adv_id, entry in reversed(self._entries.items()):
            if entry.last_seen < now - within:
                break  # entries are ordered by last sighting
            sighting = self.seen(adv_id, min_rssi, within)
            if sighting is not None:
                found.append(sighting)
        return found

    def forget(self, adv_id: bytes) -> None:
        """Drop what was heard of ``adv_id`` (a simulated phone that left)."""
        self._entries.pop(adv_id, None)


@dataclass(frozen=True, slots=True)
class RadioSighting:
    """A sighting and the door radio that heard it."""

    door: str
    side: Side
    sighting: Sighting


class ProximityRadios:
    """One ProximityTable per door radio (door and side).

    Nearby evidence belongs to one door (interfaces.md): a phone heard by the
    garage adapter is no evidence at the front door, and the side of a
    nearby unlock is the side of the radio that heard the phone. So every
    radio (a BLE adapter placed with ``--ble hci0=front:out``, or a
    simulated one) feeds its own table, and evidence is looked up only in
    the tables of the asked door.
    """

    def __init__(
        self, clock: Clock | None = None, *, max_age: float = NEARBY_WINDOW_SECONDS,
        capacity: int = 16384,
    ) -> None:
        self._clock = clock or SystemClock()
        self._max_age = max_age
        self._capacity = capacity
        self._tables: dict[tuple[str, Side], ProximityTable] = {}

    def radio(self, door: str, side: Side = Side.IN) -> ProximityTable:
        """The table of the radio at ``door``/``side``, made on first use."""
        table = self._tables.get((door, side))
        if table is None:
            table = ProximityTable(self._clock, max_age=self._max_age, capacity=self._capacity)
            self._tables[(door, side)] = table
        return table

    def radios(self) -> list[tuple[str, Side]]:
        return list(self._tables)

    def heard_at(
        self,
        door: str,
        adv_id: bytes,
        min_rssi: int = NEARBY_RSSI_MIN,
        within: float = NEARBY_WINDOW_SECONDS,
    ) -> list[RadioSighting]:
        """Every radio of ``door`` that heard ``adv_id`` strongly and recently
        enough, strongest first (entry before exit on equal RSSI)."""
        found: list[RadioSighting] = []
        for side in (Side.IN, Side.OUT):
            table = self._tables.get((door, side))
            if table is None:
                continue
            sighting = table.seen(adv_id, min_rssi, within)
            if sighting is not None:
                found.append(RadioSighting(door, side, sighting))
        found.sort(key=lambda r: -r.sighting.rssi)  # stable: IN stays first on a tie
        return found

    def forget(self, adv_id: bytes) -> None:
        """Drop ``adv_id`` from every radio's table."""
        for table in self._tables.values():
            table.forget(adv_id)


class ProximityScanner:
    """bleak scanner feeding a ProximityTable with passbridge advertisements."""

    def __init__(
        self,
        table: ProximityTable,
        *,
        backend: type[BaseBleakScanner] | None = None,
        **scanner_kwargs: Any,
    ) -> None:
        self.table = table
        self.observed = 0  # passbridge advertisements put in the table
        self.ignored = 0  # advertisements with our UUID but bad service data
        kwargs: dict[str, Any] = dict(scanner_kwargs)
        if backend is not None:
            kwargs["backend"] = backend
        self._scanner = BleakScanner(
            detection_callback=self.on_advertisement, service_uuids=[SERVICE_UUID], **kwargs
        )

    def on_advertisement(self, device: BLEDevice, advertisement: AdvertisementData) -> None:
        try:
            adv_id = adv_id_from_service_data(advertisement.service_data)
        except AdvertError:
            # Common and harmless: the advertisement arrived before its scan
            # response, or it is someone else's. Never worth a log line each.
            self.ignored += 1
            return
        self.observed += 1
        self.table.observe(adv_id, advertisement.rssi, address=device.address, device=device)

    async def start(self) -> None:
        await self._scanner.start()

    async def stop(self) -> None:
        await self._scanner.stop()

    async def __aenter__(self) -> ProximityScanner:
        await self.start()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.stop()


# --------------------------------------------------------------------------- cooldown


class Cooldown:
    """Keys that recently unlocked; one approach is one unlock.

    Bounded like the proximity table: the oldest key goes first.
    """

    def __init__(
        self, clock: Clock | None = None, *, seconds: float = 30.0, capacity: int = 4096
    ) -> None:
        self._clock = clock or SystemClock()
        self.seconds = seconds
        self.capacity = capacity
        self._until: OrderedDict[Hashable, float] = OrderedDict()

    def active(self, key: Hashable) -> bool:
        until = self._until.get(key)
        return until is not None and self._clock.elapsed() < until

    def start(self, *keys: Hashable) -> None:
        now = self._clock.elapsed()
        for key in keys:
            self._until.pop(key, None)
            self._until[key] = now + self.seconds
        while self._until:
            key, until = next(iter(self._until.items()))
            if until > now and len(self._until) <= self.capacity:
                break
            del self._until[key]


# --------------------------------------------------------------------------- unlock client


class BleUnlockError(PassbridgeError):
    """A Bluetooth unlock session that did not complete; ``reason`` says why.

    reasons: ``connect_failed``, ``link_lost``, ``timeout``, ``protocol``,
    ``cooling_down``, ``preempted`` (a fresh device needed the radio; says
    nothing about this device). ``retry`` says whether another connection in the same
    session may help: yes after a quick connect error, a dropped link or a
    command timeout; no after a step that used up its whole timeout before
    any command (a device that stalls connect, discovery or subscription is
    left to the approach loop's back-off rather than given a second go).
    """

    def __init__(self, reason: str, detail: str, *, retry: bool | None = None) -> None:
        super().__init__(f"{reason}: {detail}")
        self.reason = reason
        self.detail = detail
        self.retry = reason in _RETRYABLE if retry is None else retry


_RETRYABLE = frozenset({"connect_failed", "link_lost", "timeout"})


class Preempted(PassbridgeError):
    """A link set-up was abandoned because a more urgent one needed the radio."""


class RadioGate:
    """One link set-up at a time on a radio, the most urgent first.

    A controller has a single pending LE connection, so connects queue
    anyway (BlueZ queues them in the kernel, first come first served); queuing
    them here instead lets a fresh device go before one that already failed,
    and keeps the wait out of each attempt's own timeouts. Lower ``priority``
    numbers go first, in arrival order within a priority, and a waiter
    preempts a holder of a higher number: the holder's set-up is cancelled
    (its link torn down as on any failure) and it raises ``Preempted``. So a
    known-bad device never makes a new one wait for its connect timeout.
    """

    def __init__(self) -> None:
        self._busy = False
        self._holder: tuple[int, asyncio.Task[Any]] | None = None  # None while handed over
        self._waiting: list[tuple[int, int, asyncio.Future[None]]] = []
        self._arrivals = itertools.count()
        self._preempted: set[asyncio.Task[Any]] = set()
        self.preemptions = 0

    @property
    def queued(self) -> int:
        return len(self._waiting)

    @contextlib.asynccontextmanager
    async def turn(self, priority: int = 0) -> AsyncIterator[None]:
        task = asyncio.current_task()
        assert task is not None
        if self._busy:
            if self._holder is not None:
                held_by, holder = self._holder
                if priority < held_by and holder not in self._preempted:
                    self._preempted.add(holder)
                    self.preemptions += 1
                    holder.cancel()
            entry = (priority, next(self._arrivals), asyncio.get_running_loop().create_future())
            heapq.heappush(self._waiting, entry)
            try:
                await entry[2]
            except BaseException:
                if entry[2].done() and not entry[2].cancelled():
                    self._release()  # handed the turn while being cancelled: pass it on
                else:
                    self._waiting.remove(entry)
                    heapq.heapify(self._waiting)
                raise
        self._busy = True
        self._holder = (priority, task)
        try:
            yield
        except asyncio.CancelledError:
            if task not in self._preempted:
                raise
            task.uncancel()  # our own cancel, not the caller's: report it as such
            raise Preempted("a more urgent link set-up needed the radio") from None
        finally:
            self._preempted.discard(task)
            self._release()

    def _release(self) -> None:
        self._holder = None
        while self._waiting:
            waiter = heapq.heappop(self._waiting)[2]
            if not waiter.done():
                waiter.set_result(None)  # handed over; the new holder names itself
                return
        self._busy = False


class BleLink:
    """One connected phone, as the handler sees it: framed request/response."""

    def __init__(
        self,
        client: BleakClient,
        inbox: asyncio.Queue[bytes | None],
        *,
        cooldown: Cooldown,
        adv_id: bytes | None,
        message_timeout: float,
        max_message: int,
    ) -> None:
        self._client = client
        self._inbox = inbox
        self._cooldown = cooldown
        self._adv_id = adv_id
        self._timeout = message_timeout
        self._max = max_message
        self._assembler = MessageAssembler(max_message=max_message)
        self.claimed = False
        self.exchanges = 0

    @property
    def address(self) -> str:
        return self._client.address

    @property
    def mtu(self) -> int:
        return max(self._client.mtu_size, MIN_ATT_MTU)

    async def exchange(self, message: bytes) -> bytes:
        """Write one framed command, wait for the phone's whole framed answer."""
        if not self._inbox.empty():
            chunk = self._inbox.get_nowait()
            if chunk is None:
                raise BleUnlockError("link_lost", "the phone dropped the link")
            raise BleUnlockError("protocol", "the phone notified without a command")
        try:
            frames = frame_message(message, self.mtu, max_message=self._max)
        except FramingError as exc:
            raise BleUnlockError("protocol", f"command cannot be framed: {exc}") from None
        try:
            async with asyncio.timeout(self._timeout):
                for frame in frames:
                    await self._client.write_gatt_char(REQUEST_CHAR_UUID, frame, response=True)
                while True:
                    chunk = await self._inbox.get()
                    if chunk is None:
                        raise BleUnlockError("link_lost", "the phone dropped the link")
                    answer = self._assembler.feed(chunk)
                    if answer is not None:
                        self.exchanges += 1
                        return answer
        except TimeoutError:
            raise BleUnlockError(
                "timeout", f"no complete answer within {self._timeout:g} s"
            ) from None
        except FramingError as exc:
            raise BleUnlockError("protocol", f"bad framing from the phone: {exc}") from None
        except (BleakError, OSError, EOFError) as exc:
            raise BleUnlockError("link_lost", f"{type(exc).__name__}: {exc}") from None

    def recently_unlocked(self, credential_id: str) -> bool:
        """True if this phone opened this reader's door moments ago.

        The rotating id alone is a weak key (it changes, and a phone may
        re-randomise it at will), so the cooldown is keyed on the credential
        id the authentication proved, plus the rotating id it advertised so
        the bridge does not even reconnect to that advertisement.
        """
        return self._cooldown.active(("cred", credential_id))

    def decided(self, credential_id: str, granted: bool) -> None:
        """A decision was recorded for this phone: never retry this session,
        and after a grant start the cooldown (a denial is not an unlock, so
        the phone may try again at once, e.g. after an override)."""
        self.claimed = True
        if not granted:
            return
        keys: list[Hashable] = [("cred", credential_id)]
        if self._adv_id is not None:
            keys.append(("adv", self._adv_id))
        self._cooldown.start(*keys)


class BleUnlockClient:
    """Runs Bluetooth unlock sessions against phones; safe to call concurrently.

    Every step has its own short timeout (``BleSettings``): connect with
    service discovery, subscription, each command, the whole attempt and the
    whole session, so a peripheral that stalls costs a bounded time. Link
    set-ups on the radio go one at a time through ``gate``; everything after
    runs concurrently, as many sessions as the caller starts.
    """

    def __init__(
        self,
        *,
        backend: type[BaseBleakClient] | None = None,
        clock: Clock | None = None,
        settings: BleSettings = DEFAULT_BLE_SETTINGS,
    ) -> None:
        self._backend = backend
        self.settings = settings
        self.cooldown = Cooldown(clock, seconds=settings.cooldown_seconds)
        self.gate = RadioGate()

    async def run(
        self,
        target: BLEDevice | str,
        handler: Callable[[BleLink], Awaitable[T]],
        *,
        adv_id: bytes | None = None,
        priority: int = 0,
    ) -> T:
        """Connect, run ``handler(link)``, disconnect; retry link failures.

        ``handler`` is called afresh on every attempt, so it must build its
        own ReaderTransaction each time. A retry never follows an attempt in
        which the handler claimed an unlock. ``priority`` orders the wait for
        the radio (0, the default, goes first).
        """
        settings = self.settings
        if adv_id is not None and self.cooldown.active(("adv", adv_id)):
            raise BleUnlockError("cooling_down", "this advertisement already unlocked")
        last: BleUnlockError | None = None
        try:
            # The session and attempt clocks start when the radio is ours:
            # waiting for other devices' link set-up is not this device's fault.
            async with asyncio.timeout(None) as session:
                for attempt in range(1, settings.attempts + 1):
                    try:
                        return await self._attempt(target, handler, adv_id, priority, session)
                    except _ClaimedFailure as failure:
                        raise failure.error from None
                    except BleUnlockError as exc:
                        if not exc.retry:
                            raise
                        last = exc
                        log.info(
                            "BLE unlock attempt %d/%d failed: %s", attempt, settings.attempts, exc
                        )
        except TimeoutError:
            raise BleUnlockError(
                "timeout", f"session did not finish within {settings.session_timeout:g} s",
                retry=False,
            ) from None
        assert last is not None
        raise last

    async def _attempt(
        self,
        target: BLEDevice | str,
        handler: Callable[[BleLink], Awaitable[T]],
        adv_id: bytes | None,
        priority: int,
        session: asyncio.Timeout,
    ) -> T:
        settings = self.settings
        inbox: asyncio.Queue[bytes | None] = asyncio.Queue()

        def on_disconnect(_: BleakClient) -> None:
            inbox.put_nowait(None)  # the link dropped

        # bleak's own connect timer is only a backstop: the step timeout below
        # fires first, so a stalled connect is always told apart from a quick
        # connect error.
        kwargs: dict[str, Any] = {
            "timeout": settings.connect_timeout + 1.0,
            "services": [SERVICE_UUID],
        }
        if self._backend is not None:
            kwargs["backend"] = self._backend
        client = BleakClient(target, disconnected_callback=on_disconnect, **kwargs)
        link: BleLink | None = None
        try:
            async with asyncio.timeout(None) as deadline:

                def radio_is_ours() -> None:
                    now = asyncio.get_running_loop().time()
                    deadline.reschedule(now + settings.attempt_timeout)
                    if session.when() is None:
                        session.reschedule(now + settings.session_timeout)

                await self._connect(client, inbox, priority, radio_is_ours)
                link = BleLink(
                    client,
                    inbox,
                    cooldown=self.cooldown,
                    adv_id=adv_id,
                    message_timeout=settings.message_timeout,
                    max_message=settings.max_message,
                )
                return await handler(link)
        except TimeoutError:
            error = BleUnlockError(
                "timeout", f"attempt did not finish within {settings.attempt_timeout:g} s",
                retry=False,
            )
            if link is not None and link.claimed:
                raise _ClaimedFailure(error) from None
            raise error from None
        except BleUnlockError as exc:
            if link is not None and link.claimed:
                raise _ClaimedFailure(exc) from None
            raise
        finally:
            await self._close(client)

    async def _connect(
        self,
        client: BleakClient,
        inbox: asyncio.Queue[bytes | None],
        priority: int,
        radio_is_ours: Callable[[], None],
    ) -> None:
        """Link, service discovery and subscription, each step bounded."""
        settings = self.settings
        try:
            async with self.gate.turn(priority):
                radio_is_ours()
                try:
                    async with asyncio.timeout(settings.connect_timeout):
                        await client.connect()
                except TimeoutError:
                    raise BleUnlockError(
                        "connect_failed",
                        f"no link with services within {settings.connect_timeout:g} s",
                        retry=False,
                    ) from None
                except (BleakError, OSError, EOFError) as exc:
                    raise BleUnlockError(
                        "connect_failed", f"{type(exc).__name__}: {exc}"
                    ) from None
        except Preempted as exc:
            raise BleUnlockError("preempted", str(exc), retry=False) from None
        try:
            async with asyncio.timeout(settings.subscribe_timeout):
                await client.start_notify(
                    RESPONSE_CHAR_UUID, lambda _char, data: inbox.put_nowait(bytes(data))
                )
        except TimeoutError:
            raise BleUnlockError(
                "timeout",
                f"notifications not enabled within {settings.subscribe_timeout:g} s",
                retry=False,
            ) from None
        except (BleakError, OSError, EOFError) as exc:
            raise BleUnlockError("connect_failed", f"{type(exc).__name__}: {exc}") from None

    async def _close(self, client: BleakClient) -> None:
        """Disconnect, even while being cancelled: never leave a half-open link."""
        task = asyncio.ensure_future(self._disconnect(client))
        with contextlib.suppress(asyncio.CancelledError):
            await asyncio.shield(task)

    async def _disconnect(self, client: BleakClient) -> None:
        try:
            async with asyncio.timeout(self.settings.disconnect_timeout):
                await client.disconnect()
        except Exception as exc:  # teardown must not mask the real outcome
            log.warning("BLE disconnect failed: %s: %s", type(exc).__name__, exc)


class _ClaimedFailure(PassbridgeError):
    """Carries a link failure out of an attempt that must not be retried."""

    def __init__(self, error: BleUnlockError) -> None:
        super().__init__(str(error))
        self.error = error
