"""ProximityTable and Cooldown: ageing, rotation, bounds, on an injected clock."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest

from passbridge.adapters.ble_central import Cooldown, ProximityRadios, ProximityTable
from passbridge.clock import ManualClock
from passbridge.core.model import Side

A = bytes.fromhex("00000000000000a1")
B = bytes.fromhex("00000000000000b2")


@pytest.fixture
def clock() -> ManualClock:
    return ManualClock(datetime(2027, 3, 1, 9, 0, tzinfo=UTC))


def test_seen_needs_strength_and_freshness(clock: ManualClock) -> None:
    table = ProximityTable(clock)
    assert table.seen(A) is None
    table.observe(A, -85, address="AA:BB:CC:DD:EE:01")
    assert table.seen(A) is None  # heard, but weaker than -80
    clock.advance(1)
    table.observe(A, -60)
    sighting = table.seen(A)
    assert sighting is not None
    assert sighting.rssi == -60 and sighting.address == "AA:BB:CC:DD:EE:01"
    assert table.seen(A, min_rssi=-55) is None
    clock.advance(9.5)
    assert table.seen(A) is not None  # 9.5 s old
    clock.advance(1)
    assert table.seen(A) is None  # 10.5 s old: aged out


def test_best_recent_rssi_is_exact_per_window(clock: ManualClock) -> None:
    table = ProximityTable(clock)
    table.observe(A, -50)  # t=0, strongest
    clock.advance(5)
    table.observe(A, -75)  # t=5
    clock.advance(3)
    table.observe(A, -90)  # t=8
    assert table.seen(A).rssi == -50  # type: ignore[union-attr]
    clock.advance(4)  # t=12: the -50 is gone, the -75 at t=5 still counts
    sighting = table.seen(A)
    assert sighting is not None and sighting.rssi == -75
    assert table.seen(A, within=5.0) is None  # only the -90 at t=8 is that recent
    assert table.seen(A, min_rssi=-95, within=5.0).rssi == -90  # type: ignore[union-attr]


def test_rotated_id_is_a_new_phone(clock: ManualClock) -> None:
    table = ProximityTable(clock)
    table.observe(A, -60)
    clock.advance(2)
    table.observe(B, -60)  # same phone, new id: the table cannot and must not link them
    assert table.seen(B) is not None
    assert table.seen(A) is not None  # old id still valid evidence until it ages out
    clock.advance(8.5)
    assert table.seen(A) is None and table.seen(B) is not None


def test_bounded_evicts_least_recently_heard(clock: ManualClock) -> None:
    table = ProximityTable(clock, capacity=3)
    ids = [bytes([i]) * 8 for i in range(5)]
    for adv_id in ids[:3]:
        table.observe(adv_id, -50)
        clock.advance(0.1)
    table.observe(ids[0], -50)  # heard again: now the freshest
    table.observe(ids[3], -50)
    table.observe(ids[4], -50)
    assert len(table) == 3
    assert table.evicted == 2
    assert [table.seen(i) is not None for i in ids] == [True, False, False, True, True]


def test_stale_entries_are_dropped_as_adverts_arrive(clock: ManualClock) -> None:
    table = ProximityTable(clock)
    for i in range(100):
        table.observe(bytes([i]) * 8, -50)
    clock.advance(11)
    table.observe(A, -50)
    assert len(table) == 1


def test_cooldown(clock: ManualClock) -> None:
    cooldown = Cooldown(clock, seconds=30)
    assert not cooldown.active("x")
    cooldown.start("x", "y")
    assert cooldown.active("x") and cooldown.active("y")
    clock.advance(29)
    assert cooldown.active("x")
    clock.advance(2)
    assert not cooldown.active("x")
    small = Cooldown(clock, seconds=30, capacity=2)
    small.start("a")
    small.start("b")
    small.start("c")
    assert not small.active("a") and small.active("b") and small.active("c")


def test_door_radios_keep_their_own_evidence(clock: ManualClock) -> None:
    radios = ProximityRadios(clock)
    radios.radio("garage").observe(A, -50)
    assert radios.heard_at("front", A) == []  # the garage's radio is not the front's
    assert [r.door for r in radios.heard_at("garage", A)] == ["garage"]
    radios.radio("lab", Side.IN).observe(B, -70)
    radios.radio("lab", Side.OUT).observe(B, -60)
    assert [r.side for r in radios.heard_at("lab", B)] == [Side.OUT, Side.IN]  # strongest first
    radios.radio("lab", Side.IN).observe(B, -60)
    assert radios.heard_at("lab", B)[0].side is Side.IN  # a tie goes to the stricter entry
    radios.forget(B)
    assert radios.heard_at("lab", B) == []
    clock.advance(11)
    assert radios.heard_at("garage", A) == []  # older than 10 s
