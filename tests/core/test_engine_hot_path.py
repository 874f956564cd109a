"""The decision path's shortcuts give exactly what the plain code gives.

Decision ids come from a per-process prefix and a counter, and a door's
scheduled state is resolved once per UTC minute: each is checked here
against the plain computation.
"""

from __future__ import annotations

import os
import re
from datetime import UTC, datetime, timedelta
from zoneinfo import ZoneInfo

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from passbridge.clock import Moment
from passbridge.core.decision import new_decision_id
from passbridge.core.engine import DoorCore
from passbridge.core.model import DoorState, Factor, Reason, Result
from passbridge.core.schedule import minute_is_uniform, resolve_state, utc_minute
from tests.engine_helpers import PIN_KEY, Harness, site_from_yaml

AT = datetime(2027, 3, 1, 9, 0, tzinfo=UTC)


def test_decision_ids_are_unique_hex_and_new_in_a_forked_child() -> None:
    ids = [new_decision_id() for _ in range(10_000)]
    assert len(set(ids)) == len(ids)
    assert all(re.fullmatch(r"[0-9a-f]{32}", i) for i in ids)
    read, write = os.pipe()
    pid = os.fork()
    if pid == 0:  # the child: report its next id and leave at once
        os.write(write, new_decision_id().encode())
        os._exit(0)
    os.close(write)
    child = os.read(read, 64).decode()
    os.close(read)
    os.waitpid(pid, 0)
    parent = new_decision_id()
    assert re.fullmatch(r"[0-9a-f]{32}", child)
    assert child[:16] != parent[:16]  # another process, another prefix


SITE = """
site: {id: s1, timezone: ZONE}
doors:
  - id: front
    reader: true
    keypad: true
    schedule:
      - {days: [mon, tue, wed, thu, fri], start: "09:00", end: "17:00", state: unlocked}
      - {days: [sat], start: "22:30", end: "02:15", state: two_factor}
    exceptions:
      - {id: holiday, date: 2027-03-02, start: "00:00", end: "24:00", state: locked}
users: []
"""


def core_for(zone: str) -> DoorCore:
    return DoorCore(site_from_yaml(SITE.replace("ZONE", zone)), pin_key=PIN_KEY)


@settings(max_examples=200, deadline=None)
@given(st.sampled_from(["America/Los_Angeles", "Europe/Berlin", "Asia/Kolkata", "UTC",
                        "Europe/Amsterdam", "Australia/Lord_Howe"]),
       st.datetimes(min_value=datetime(1900, 1, 1), max_value=datetime(2040, 1, 1)),
       st.lists(st.integers(0, 6 * 3600), min_size=1, max_size=12))
@pytest.mark.slow
def test_cached_state_matches_resolve_state(zone: str, start: datetime,
                                            steps: list[int]) -> None:
    """Instants close together (same minute, next minute, across midnight and DST)
    and old zones whose offsets are not whole minutes (Amsterdam before 1937)."""
    core = core_for(zone)
    door, tz = core.site.doors["front"], ZoneInfo(zone)
    at = start.replace(tzinfo=UTC)
    for step in steps:
        at += timedelta(seconds=step % 120 if step % 3 else step, microseconds=step % 7)
        expected = resolve_state(door, tz, at, lockdown=False, override=None)
        assert core.door_state("front", Moment(at, 0.0)) == expected


def test_state_changes_at_the_minute_and_with_overrides_and_lockdown() -> None:
    core = core_for("America/Los_Angeles")
    la = ZoneInfo("America/Los_Angeles")
    before = datetime(2027, 3, 1, 8, 59, 59, 999_999, tzinfo=la)  # a Monday

    def state(at: datetime, elapsed: float = 0.0) -> tuple[DoorState, str]:
        resolved = core.door_state("front", Moment(at.astimezone(UTC), elapsed))
        return resolved.state, resolved.source

    assert state(before) == (DoorState.ACCESS_CONTROLLED, "default")
    assert state(before + timedelta(microseconds=1))[0] is DoorState.UNLOCKED
    core.set_lockdown(True)
    assert state(before) == (DoorState.LOCKED, "lockdown")
    core.set_lockdown(False)
    core.set_override("front", DoorState.LOCKED, 1, Moment(before.astimezone(UTC), 0.0))
    assert state(before) == (DoorState.LOCKED, "override")
    assert state(before, elapsed=60.0) == (DoorState.ACCESS_CONTROLLED, "default")
    # A new configuration in the same minute is used at once.
    core.replace_site(site_from_yaml(SITE.replace("ZONE", "UTC")))
    assert state(before)[0] is DoorState.UNLOCKED  # 16:59 UTC on a Monday


def test_minute_uniformity() -> None:
    amsterdam, berlin = ZoneInfo("Europe/Amsterdam"), ZoneInfo("Europe/Berlin")
    assert minute_is_uniform(utc_minute(AT), berlin)
    assert not minute_is_uniform(utc_minute(datetime(1930, 6, 1, tzinfo=UTC)), amsterdam)
    assert utc_minute(datetime(1970, 1, 1, 0, 1, 59, 999_999, tzinfo=UTC)) == 1
    assert utc_minute(datetime(1969, 12, 31, 23, 59, 59, tzinfo=UTC)) == -1


def test_token_decision_is_the_same_as_before() -> None:
    """decide_token without the intermediate Presentation still decides on every claim."""
    h = Harness("""
site: {id: s1, timezone: America/Los_Angeles}
doors:
  - {id: front, reader: true, keypad: false}
users:
  - {id: u1, phones: [phone-1], doors: all}
""", datetime(2027, 3, 1, 10, 0))
    granted = h.mobile(Factor.NFC, "front", "u1", "phone-1")
    assert (granted.result, granted.reason, granted.user, granted.credential,
            granted.unlock_seconds) == (Result.GRANTED, Reason.ACCESS_GRANTED, "u1", "phone-1", 5)
    wrong_phone = h.mobile(Factor.NFC, "front", "u1", "phone-2")
    assert wrong_phone.reason is Reason.UNKNOWN_CREDENTIAL
