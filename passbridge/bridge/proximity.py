"""Nearby evidence bound to one phone and one door (interfaces.md).

A nearby request names the rotating id the phone advertises (``adv``). It
is evidence only when

1. the id resolves, with the site's proximity keys, to the very credential
   that signed the request (``AdvertResolver``): naming another phone's id,
   or a beacon's, gets nothing;
2. a radio of THAT door heard it at or above -80 dBm within the last 10 s
   (``ProximityRadios.heard_at``): the garage adapter vouches for nothing
   at the front door;
3. the side is the side of the radio that heard it, never the requester's
   say-so: a ``side`` claim that disagrees with the radio is no evidence.

What fails is written into the evidence (``why``), so the core's
``not_nearby`` denial and its audit record say which condition it was.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Protocol

from passbridge.adapters.ble_central import ProximityRadios
from passbridge.clock import Clock
from passbridge.core.model import Side
from passbridge.protocol.ble_advert import (
    SLOT_SECONDS,
    SLOT_TOLERANCE,
    AdvertError,
    parse_adv_id,
    rotating_id,
    slot_at,
)


class ProximityKeys(Protocol):
    """Where the proximity keys live (the key store)."""

    def proximity_keys(self) -> list[tuple[str, bytes]]: ...

    def proximity_version(self) -> tuple[int, ...]: ...


class AdvertResolver:
    """Rotating id -> the enrolled credential that advertises it right now.

    Checks the current slot and ``SLOT_TOLERANCE`` slots either side (clock
    skew between phone and bridge). Each slot's ids are computed once for
    every enrolled credential and kept in a dict, so a lookup is a few dict
    probes; a slot's table is made when the slot comes into the window, and
    all are dropped when the key store's ``proximity_version`` changes (a
    phone enrolled or revoked, by this process or by the CLI).

    An id that two credentials produce in the window (64-bit ids: about one
    chance in 10^11 among 10,000 phones) resolves to nobody: never the
    wrong phone.
    """

    def __init__(
        self, keys: ProximityKeys, clock: Clock, *, slot_seconds: int = SLOT_SECONDS
    ) -> None:
        self._keys = keys
        self._clock = clock
        self._slot_seconds = slot_seconds
        self._version: tuple[int, ...] | None = None
        self._credentials: list[tuple[str, bytes]] = []
        self._by_slot: dict[int, dict[bytes, str | None]] = {}

    def current_slot(self) -> int:
        return slot_at(self._clock.now().timestamp(), self._slot_seconds)

    def resolve(self, adv_id: bytes) -> str | None:
        """The credential whose id ``adv_id`` is, in the slots around now; else None."""
        version = self._keys.proximity_version()  # before the keys: a change in between reloads
        if version != self._version:
            self._credentials = self._keys.proximity_keys()
            self._version = version
            self._by_slot.clear()
        now = self.current_slot()
        window = range(now - SLOT_TOLERANCE, now + SLOT_TOLERANCE + 1)
        for slot in [s for s in self._by_slot if s not in window]:
            del self._by_slot[slot]
        found: set[str | None] = set()
        for slot in window:
            ids = self._by_slot.get(slot)
            if ids is None:
                ids = self._by_slot[slot] = self._slot_table(slot)
            if adv_id in ids:
                found.add(ids[adv_id])
        if len(found) != 1:
            return None
        return found.pop()

    def _slot_table(self, slot: int) -> dict[bytes, str | None]:
        table: dict[bytes, str | None] = {}
        for credential, key in self._credentials:
            adv_id = rotating_id(key, slot)
            table[adv_id] = None if adv_id in table else credential
        return table


@dataclass(frozen=True, slots=True)
class NearbyEvidence:
    """What the bridge vouches for a nearby request: the side and the ``ev``."""

    side: Side
    evidence: dict[str, Any]

    @property
    def heard(self) -> bool:
        return self.evidence.get("rssi") is not None


def nearby_evidence(
    radios: ProximityRadios,
    resolver: AdvertResolver,
    clock: Clock,
    *,
    door: str,
    credential: str,
    adv: str,
    claimed_side: Side | None = None,
) -> NearbyEvidence:
    """The evidence a verified nearby request from ``credential`` has at ``door``."""

    def none(why: str, side: Side = Side.IN) -> NearbyEvidence:
        return NearbyEvidence(side, {"rssi": None, "age": None, "why": why})

    try:
        adv_id = parse_adv_id(adv)
    except AdvertError:
        return none("the advertised id is not a rotating id")
    owner = resolver.resolve(adv_id)
    if owner is None:
        return none("the advertised id resolves to no enrolled phone now")
    if owner != credential:
        return none("the advertised id belongs to another phone")
    heard = radios.heard_at(door, adv_id)
    if not heard:
        return none("phone not heard by a radio of this door")
    best = heard[0]
    radio = f"{door}/{best.side.value}"
    if claimed_side is not None and claimed_side is not best.side:
        return none(f"request claims side {claimed_side.value}, phone heard at {radio}",
                    best.side)
    age = max(0.0, clock.elapsed() - best.sighting.seen_at)
    return NearbyEvidence(
        best.side, {"rssi": best.sighting.rssi, "age": round(age, 3), "radio": radio}
    )
