"""The approach loop of one Bluetooth door radio: which nearby devices to try,
how many at once, and who waits.

Anybody can advertise the passbridge service, so the devices in view are not
all phones: some accept a connection and never answer GATT, some advertise
and never accept a connection at all. The loop must still unlock a real phone
within moments of its arrival. It does it with three rules:

* **Bounded parallel sessions** (``BleSettings.max_parallel``): a stalled
  device holds one slot, not the reader.
* **Back-off for devices that never complete** (``Backoff``): a session that
  ended without an authenticated phone (no link, no answer, a broken
  exchange, a failed authentication) makes the device wait before the next
  try, doubling up to a cap, forgotten a while after the last failure. It is
  keyed by the BLE address *and* the rotating id, so changing one of them
  does not wipe the record; a device that changes both at once looks new
  (it is, to a radio), which the parallel bound and the next rule contain.
* **Fresh devices first**: a device with a failure on record (a suspect) may
  hold at most ``max_parallel_suspects`` slots, waits behind fresh devices
  for the radio, and its link set-up is abandoned (``RadioGate`` preemption)
  when a fresh device needs the radio, so a known-bad device never makes a
  new phone wait for its connect timeout.

A timeout is never a grant: only a phone that authenticated reaches the
decision, and every failure path of a session disconnects (BleUnlockClient).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections import Counter, OrderedDict
from collections.abc import Callable, Hashable, Iterable
from dataclasses import dataclass

from passbridge.adapters.ble_central import BleUnlockClient, Sighting
from passbridge.adapters.ble_settings import DEFAULT_BLE_SETTINGS, BleSettings
from passbridge.bridge.ble_unlock import BleAttempt, BleDoorUnlocker
from passbridge.clock import Clock
from passbridge.protocol.ble_advert import format_adv_id

log = logging.getLogger(__name__)

#: Radio priorities (lower goes first).
FRESH, SUSPECT = 0, 1


@dataclass(slots=True)
class _Strike:
    failures: int
    until: float  # clock.elapsed() before which the key is not tried
    last: float  # clock.elapsed() of the latest failure


class Backoff:
    """Keys (addresses, rotating ids) of devices that did not complete.

    Bounded: entries are kept in order of their latest failure; those older
    than ``backoff_forget`` are dropped, and beyond ``backoff_capacity`` the
    oldest goes first. Time is the injected clock's ``elapsed()``.
    Not thread-safe: use it from the event loop that runs the approach loop.
    """

    def __init__(self, clock: Clock, settings: BleSettings = DEFAULT_BLE_SETTINGS) -> None:
        self._clock = clock
        self._settings = settings
        self._strikes: OrderedDict[Hashable, _Strike] = OrderedDict()

    def __len__(self) -> int:
        self._forget(self._clock.elapsed())
        return len(self._strikes)

    def _forget(self, now: float) -> None:
        cutoff = now - self._settings.backoff_forget
        strikes = self._strikes
        while strikes:
            oldest = next(iter(strikes.values()))
            if oldest.last > cutoff:
                break
            strikes.popitem(last=False)

    def _live(self, keys: Iterable[Hashable]) -> list[_Strike]:
        self._forget(self._clock.elapsed())
        return [s for s in map(self._strikes.get, keys) if s is not None]

    def failures(self, keys: Iterable[Hashable]) -> int:
        """Failures on record for a device known by any of ``keys``."""
        return max((s.failures for s in self._live(keys)), default=0)

    def waiting(self, keys: Iterable[Hashable]) -> float:
        """Seconds before a device known by any of ``keys`` may be tried again."""
        now = self._clock.elapsed()
        return max([0.0, *(s.until - now for s in self._live(keys))])

    def failed(self, keys: Iterable[Hashable]) -> tuple[int, float]:
        """One more failure for the device; returns (failures, seconds to wait)."""
        keys = list(keys)
        settings = self._settings
        failures = self.failures(keys) + 1
        delay = min(
            settings.backoff_initial * settings.backoff_factor ** (failures - 1),
            settings.backoff_max,
        )
        now = self._clock.elapsed()
        for key in keys:
            self._strikes.pop(key, None)
            self._strikes[key] = _Strike(failures, now + delay, now)
        while len(self._strikes) > settings.backoff_capacity:
            self._strikes.popitem(last=False)
        return failures, delay

    def succeeded(self, keys: Iterable[Hashable]) -> None:
        """The device authenticated: its record is wiped."""
        for key in keys:
            self._strikes.pop(key, None)


def device_keys(sighting: Sighting) -> frozenset[Hashable]:
    """What a device is known by: its rotating id and, when known, its address."""
    keys: set[Hashable] = {("adv", sighting.adv_id)}
    if sighting.address:
        keys.add(("addr", sighting.address.upper()))
    return frozenset(keys)


@dataclass(frozen=True, slots=True)
class ApproachStats:
    """What an operator sees of one radio's approach loop (``/metrics``)."""

    outcomes: dict[str, int]  # attempts by outcome, since start
    in_flight: int
    peak_in_flight: int
    backed_off: int  # addresses and rotating ids with failures on record


class BleApproachLoop:
    """Tries the devices ``candidates()`` returns (the strong recent sightings
    at this door), under the rules in the module docstring."""

    def __init__(
        self,
        unlocker: BleDoorUnlocker,
        client: BleUnlockClient,
        candidates: Callable[[], Iterable[Sighting]],
        clock: Clock,
        settings: BleSettings = DEFAULT_BLE_SETTINGS,
        *,
        on_event: Callable[[str], None] | None = None,
    ) -> None:
        """``on_event`` hears each session that ended without an authenticated
        phone, by outcome (``ble_no_answer_<reason>``, ``ble_not_authenticated``,
        ``ble_preempted``): the service counts them in ``/metrics``."""
        self._on_event = on_event
        self._unlocker = unlocker
        self._client = client
        self._candidates = candidates
        self._clock = clock
        self.settings = settings
        self.backoff = Backoff(clock, settings)
        self._flights: dict[asyncio.Task[None], tuple[frozenset[Hashable], bool]] = {}
        self._retry_at: dict[bytes, float] = {}
        self._outcomes: Counter[str] = Counter()
        self.peak_in_flight = 0

    @property
    def in_flight(self) -> int:
        return len(self._flights)

    def stats(self) -> ApproachStats:
        return ApproachStats(
            dict(self._outcomes), self.in_flight, self.peak_in_flight, len(self.backoff)
        )

    async def run(self) -> None:
        """Poll until cancelled; sessions still running are then ended (each
        disconnects on its way out)."""
        try:
            while True:
                await asyncio.sleep(self.settings.poll_interval)
                self.launch()
        finally:
            await self.stop_sessions()

    async def stop_sessions(self) -> None:
        for task in list(self._flights):
            task.cancel()
        for task in list(self._flights):
            with contextlib.suppress(asyncio.CancelledError):
                await task

    def launch(self) -> int:
        """Start sessions for the devices that may be tried now; returns how many."""
        settings = self.settings
        now = self._clock.elapsed()
        for adv_id in [a for a, until in self._retry_at.items() if until <= now]:
            del self._retry_at[adv_id]
        free = settings.max_parallel - len(self._flights)
        if free <= 0:
            return 0
        busy: set[Hashable] = set()
        suspects_flying = 0
        for keys, suspect in self._flights.values():
            busy |= keys
            suspects_flying += suspect
        fresh: list[tuple[Sighting, frozenset[Hashable]]] = []
        suspects: list[tuple[Sighting, frozenset[Hashable]]] = []
        for sighting in self._candidates():
            keys = device_keys(sighting)
            if keys & busy or sighting.adv_id in self._retry_at:
                continue
            if self._client.cooldown.active(("adv", sighting.adv_id)):
                continue
            if self.backoff.waiting(keys) > 0:
                continue
            busy |= keys  # the same device under two ids is tried once
            (suspects if self.backoff.failures(keys) else fresh).append((sighting, keys))
        started = 0
        for sighting, keys in fresh[:free]:
            self._start(sighting, keys, suspect=False)
            started += 1
        room = min(free - started, settings.max_parallel_suspects - suspects_flying)
        for sighting, keys in suspects[: max(room, 0)]:
            self._start(sighting, keys, suspect=True)
            started += 1
        return started

    def _start(self, sighting: Sighting, keys: frozenset[Hashable], *, suspect: bool) -> None:
        task = asyncio.create_task(
            self._session(sighting, keys, suspect), name=f"ble-approach-{sighting.address}"
        )
        self._flights[task] = (keys, suspect)
        task.add_done_callback(self._flights.pop)
        self.peak_in_flight = max(self.peak_in_flight, len(self._flights))

    async def _session(
        self, sighting: Sighting, keys: frozenset[Hashable], suspect: bool
    ) -> None:
        attempt: BleAttempt | None = None
        try:
            attempt = await self._unlocker.attempt(
                sighting, priority=SUSPECT if suspect else FRESH
            )
        except Exception:  # one device's failure must not stop the reader
            log.exception("Bluetooth unlock at %s failed", self._unlocker.door)
        self._settle(sighting, keys, attempt)

    def _count(self, outcome: str) -> None:
        self._outcomes[outcome] += 1
        if self._on_event is not None:
            self._on_event(f"ble_{outcome}")

    def _settle(
        self, sighting: Sighting, keys: frozenset[Hashable], attempt: BleAttempt | None
    ) -> None:
        now = self._clock.elapsed()
        if attempt is not None and attempt.authenticated:
            self.backoff.succeeded(keys)
            decision = attempt.decision
            if decision is None:
                self._outcomes["repeat"] += 1
            else:
                self._outcomes["granted" if decision.granted else "denied"] += 1
            if decision is None or not decision.granted:
                self._retry_at[sighting.adv_id] = now + self.settings.retry_after_decision
            return
        error = attempt.error if attempt is not None else None
        if error is not None and error.reason == "preempted":
            # Not this device's doing: a fresh device took the radio. Its
            # record stays as it was; it is tried again when there is room.
            self._count("preempted")
            return
        if attempt is None:
            why, outcome = "internal error", "error"
        elif attempt.decision is not None:  # a broken exchange or failed authentication, audited
            why, outcome = attempt.decision.detail or "authentication failed", "not_authenticated"
        elif attempt.error is not None:
            why, outcome = str(attempt.error), f"no_answer_{attempt.error.reason}"
        else:
            why, outcome = "nothing decided", "not_authenticated"
        self._count(outcome)
        failures, delay = self.backoff.failed(keys)
        settings = self.settings
        cap = settings.backoff_max
        before = settings.backoff_initial * settings.backoff_factor ** (failures - 2)
        place = f"{self._unlocker.door}/{self._unlocker.side.value}"
        who = f"{sighting.address or '?'} (id {format_adv_id(sighting.adv_id)})"
        if failures == 1:
            log.info(
                "Bluetooth device %s at %s did not complete an unlock (%s); "
                "not tried again for %g s", who, place, why, delay,
            )
        elif delay >= cap and before < cap:  # reached the cap just now
            log.warning(
                "Bluetooth device %s at %s failed %d times in a row (%s); "
                "now tried once every %g s", who, place, failures, why, cap,
            )
        else:
            log.debug("Bluetooth device %s at %s failed again (%d): %s", who, place, failures, why)
