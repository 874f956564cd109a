"""Every rule of rules.md, one test each, through the real core."""

# ruff: noqa: E501

from __future__ import annotations

from datetime import datetime

import pytest

from passbridge.core.decision import Presentation
from passbridge.core.model import DoorState, Factor, Reason, Result, Side
from passbridge.errors import ConfigError, UnknownDoor
from tests.engine_helpers import Harness

SITE = """
site: {id: hq, timezone: America/Los_Angeles}
doors:
  - id: front
    reader: true
    keypad: true
    schedule:
      - {days: [mon, tue, wed, thu, fri], start: "07:00", end: "19:00", state: two_factor}
  - id: strict
    reader: true
    keypad: true
    strict_two_factor: true
    schedule:
      - {days: [mon, tue, wed, thu, fri], start: "00:00", end: "24:00", state: two_factor}
  - id: lab
    reader: true
    keypad: true
    in_out: true
    pin_timeout: 5
    schedule:
      - {days: [mon, tue, wed, thu, fri, sat, sun], start: "00:00", end: "24:00", state: two_factor}
  - {id: side, reader: true, keypad: true, ble_rssi_min: -60}
  - {id: readeronly, reader: true, keypad: false}
  - id: vault
    reader: true
    keypad: true
    schedule:
      - {days: [mon, tue, wed, thu, fri, sat, sun], start: "00:00", end: "24:00", state: locked}
  - id: lobby
    reader: true
    schedule:
      - {days: [mon, tue, wed, thu, fri, sat, sun], start: "00:00", end: "24:00", state: unlocked}
users:
  - {id: alice, cards: ["10001"], pin: "2468", phones: [alice-phone], doors: all, remote_unlock: true}
  - {id: bob, cards: ["20002"], doors: [front, side]}
  - {id: carol, cards: ["30003"], pin: "1357", doors: [side]}
  - {id: dave, cards: ["40004"], pin: "9999", doors: all, enabled: false}
  - {id: erin, cards: ["50005"], pin: "5555", phones: [erin-phone], doors: all}
  - {id: root, role: site_admin, cards: ["90009"], pin: "0000", doors: all}
"""
MONDAY_9 = datetime(2026, 11, 30, 9, 0)


@pytest.fixture
def h() -> Harness:
    return Harness(SITE, MONDAY_9)


def reason(d: object) -> Reason:
    return d.reason  # type: ignore[attr-defined,no-any-return]


def test_card_then_pin_opens_two_factor_door(h: Harness) -> None:
    first = h.card("front", "10001")
    assert (first.result, first.reason, first.user) == (
        Result.PENDING,
        Reason.PIN_REQUIRED,
        "alice",
    )
    assert first.state is DoorState.TWO_FACTOR and first.state_source == "schedule:0"
    done = h.after(4).pin("front", "2468")
    assert (done.result, done.reason, done.user) == (
        Result.GRANTED,
        Reason.TWO_FACTOR_COMPLETE,
        "alice",
    )
    assert done.unlock_seconds == 5
    assert first.unlock_seconds is None


def test_nfc_counts_as_the_card(h: Harness) -> None:
    assert reason(h.mobile(Factor.NFC, "front", "alice", "alice-phone")) is Reason.PIN_REQUIRED
    assert reason(h.after(2).pin("front", "2468")) is Reason.TWO_FACTOR_COMPLETE


def test_pin_without_card_and_pin_then_card(h: Harness) -> None:
    assert reason(h.pin("front", "2468")) is Reason.PIN_WITHOUT_CARD
    assert reason(h.card("front", "10001")) is Reason.PIN_REQUIRED
    assert reason(h.pin("front", "2468")) is Reason.TWO_FACTOR_COMPLETE
    # the pending card is used up by the entry
    assert reason(h.pin("front", "2468")) is Reason.PIN_WITHOUT_CARD


def test_pin_of_another_user_is_incorrect(h: Harness) -> None:
    h.card("front", "10001")
    assert reason(h.pin("front", "5555")) is Reason.PIN_INCORRECT  # erin's code, alice's card


def test_pin_timeout_boundary(h: Harness) -> None:
    h.card("front", "10001")
    assert reason(h.after(15).pin("front", "2468")) is Reason.TWO_FACTOR_COMPLETE
    h.card("front", "10001")
    assert reason(h.after(15.5).pin("front", "2468")) is Reason.PIN_TIMEOUT
    assert reason(h.pin("front", "2468")) is Reason.PIN_WITHOUT_CARD


def test_door_pin_timeout_setting_applies(h: Harness) -> None:
    h.card("lab", "10001")
    assert reason(h.after(6).pin("lab", "2468")) is Reason.PIN_TIMEOUT


def test_new_card_replaces_pending(h: Harness) -> None:
    h.card("front", "10001")
    assert reason(h.card("front", "50005")) is Reason.PIN_REQUIRED
    assert reason(h.pin("front", "2468")) is Reason.PIN_INCORRECT
    assert reason(h.pin("front", "5555")) is Reason.TWO_FACTOR_COMPLETE


@pytest.mark.parametrize(
    ("refused", "why"),
    [
        (lambda h: h.card("front", "99999"), Reason.UNKNOWN_CREDENTIAL),
        (lambda h: h.card("front", "30003"), Reason.NO_ACCESS),  # carol: not her door
        (lambda h: h.card("front", "40004"), Reason.NO_ACCESS),  # dave: disabled
        (lambda h: h.card("front", "20002"), Reason.PROFILE_INCOMPLETE),  # bob: no code
        (lambda h: h.mobile(Factor.NFC, "front", "alice", "erin-phone"), Reason.UNKNOWN_CREDENTIAL),
        (lambda h: h.core.deny_unauthenticated(
            "front", Side.IN, Factor.NFC, Reason.UNKNOWN_CREDENTIAL, "bad signature",
            h.clock.moment()), Reason.UNKNOWN_CREDENTIAL),
    ],
)
def test_refused_card_still_replaces_the_pending_one(
    h: Harness, refused: object, why: Reason
) -> None:
    """rules.md "Exact readings": a new card at the reader is a new person."""
    assert reason(h.card("front", "10001")) is Reason.PIN_REQUIRED
    assert reason(refused(h)) is why  # type: ignore[operator]
    assert reason(h.pin("front", "2468")) is Reason.PIN_WITHOUT_CARD


def test_locked_out_card_replaces_the_pending_one(h: Harness) -> None:
    for _ in range(5):
        h.card("front", "50005")
        h.pin("front", "0000")
    assert reason(h.card("front", "10001")) is Reason.PIN_REQUIRED
    assert reason(h.card("front", "50005")) is Reason.LOCKED_OUT  # erin, locked out
    assert reason(h.pin("front", "2468")) is Reason.PIN_WITHOUT_CARD


def test_card_elsewhere_keeps_the_pending_one(h: Harness) -> None:
    assert reason(h.card("front", "10001")) is Reason.PIN_REQUIRED
    assert reason(h.card("side", "99999")) is Reason.UNKNOWN_CREDENTIAL
    assert reason(h.pin("front", "2468")) is Reason.TWO_FACTOR_COMPLETE


def test_wrong_pin_keeps_pending_card_for_a_retry(h: Harness) -> None:
    h.card("front", "10001")
    assert reason(h.pin("front", "1111")) is Reason.PIN_INCORRECT
    assert reason(h.pin("front", "2468")) is Reason.TWO_FACTOR_COMPLETE


def test_lockout_after_five_wrong_then_doubles_and_resets(h: Harness) -> None:
    def five_wrong() -> None:
        for i in range(5):
            h.card("front", "10001")
            assert reason(h.after(1).pin("front", f"000{i}")) is Reason.PIN_INCORRECT

    five_wrong()
    assert reason(h.card("front", "10001")) is Reason.LOCKED_OUT
    assert reason(h.after(58).card("front", "10001")) is Reason.LOCKED_OUT
    assert reason(h.after(2).card("front", "10001")) is Reason.PIN_REQUIRED
    # second lockout lasts twice as long
    five_wrong()
    assert reason(h.after(100).card("front", "10001")) is Reason.LOCKED_OUT
    assert reason(h.after(21).card("front", "10001")) is Reason.PIN_REQUIRED
    assert reason(h.pin("front", "2468")) is Reason.TWO_FACTOR_COMPLETE
    # success reset the doubling: the next lockout is 60 s again
    five_wrong()
    assert reason(h.after(59).card("front", "10001")) is Reason.LOCKED_OUT
    assert reason(h.after(2).card("front", "10001")) is Reason.PIN_REQUIRED


def test_lockout_is_per_door_and_does_not_stop_other_users(h: Harness) -> None:
    for i in range(5):
        h.card("front", "10001")
        h.pin("front", f"000{i}")
    assert reason(h.card("front", "10001")) is Reason.LOCKED_OUT
    assert reason(h.card("lab", "10001")) is Reason.PIN_REQUIRED
    assert reason(h.card("front", "50005")) is Reason.PIN_REQUIRED


def test_lockout_caps_at_fifteen_minutes(h: Harness) -> None:
    for _ in range(6):
        for i in range(5):
            h.card("front", "10001")
            h.pin("front", f"000{i}")
        h.after(901)  # longer than any lockout
    for i in range(5):
        h.card("front", "10001")
        h.pin("front", f"000{i}")
    assert reason(h.after(899).card("front", "10001")) is Reason.LOCKED_OUT
    assert reason(h.after(2).card("front", "10001")) is Reason.PIN_REQUIRED


def test_bluetooth_never_the_card(h: Harness) -> None:
    assert (
        reason(h.mobile(Factor.BLE, "front", "alice", "alice-phone", evidence={"rssi": -40}))
        is Reason.BLE_NOT_ALLOWED
    )
    assert reason(h.pin("front", "2468")) is Reason.PIN_WITHOUT_CARD
    assert (
        reason(h.mobile(Factor.BLE, "side", "alice", "alice-phone", evidence={"rssi": -60}))
        is Reason.ACCESS_GRANTED
    )
    assert (
        reason(h.mobile(Factor.BLE, "side", "alice", "alice-phone", evidence={"rssi": -61}))
        is Reason.TOO_FAR
    )
    assert reason(h.mobile(Factor.BLE, "side", "alice", "alice-phone")) is Reason.TOO_FAR


def test_nearby_and_remote_bypass_and_strict(h: Harness) -> None:
    near = {"rssi": -70, "age": 1.0}
    assert (
        reason(h.mobile(Factor.NEARBY, "front", "alice", "alice-phone", evidence=near))
        is Reason.BYPASS_NEARBY
    )
    assert reason(h.mobile(Factor.REMOTE, "front", "alice", "backend:app")) is Reason.BYPASS_REMOTE
    assert (
        reason(h.mobile(Factor.NEARBY, "strict", "alice", "alice-phone", evidence=near))
        is Reason.BYPASS_DISABLED
    )
    assert (
        reason(h.mobile(Factor.REMOTE, "strict", "alice", "backend:app")) is Reason.BYPASS_DISABLED
    )
    assert (
        reason(h.mobile(Factor.NEARBY, "side", "alice", "alice-phone", evidence=near))
        is Reason.ACCESS_GRANTED
    )


def test_nearby_needs_fresh_strong_evidence(h: Harness) -> None:
    for ev in (
        {"rssi": None, "age": None},
        {"rssi": -81, "age": 1.0},
        {"rssi": -60, "age": 10.5},
        {},
    ):
        assert (
            reason(h.mobile(Factor.NEARBY, "side", "alice", "alice-phone", evidence=ev))
            is Reason.NOT_NEARBY
        )
    assert (
        reason(
            h.mobile(
                Factor.NEARBY, "side", "alice", "alice-phone", evidence={"rssi": -80, "age": 10}
            )
        )
        is Reason.ACCESS_GRANTED
    )


def test_remote_needs_permission(h: Harness) -> None:
    assert (
        reason(h.mobile(Factor.REMOTE, "side", "bob", "backend:app")) is Reason.REMOTE_NOT_PERMITTED
    )


def test_profile_incomplete_on_two_factor_by_any_path(h: Harness) -> None:
    assert reason(h.card("front", "20002")) is Reason.PROFILE_INCOMPLETE  # bob has no PIN
    assert reason(h.card("side", "20002")) is Reason.ACCESS_GRANTED


def test_in_out_door_exit_needs_one_factor(h: Harness) -> None:
    out = h.card("lab", "10001", Side.OUT)
    assert (out.reason, out.side) == (Reason.ACCESS_GRANTED, Side.OUT)
    assert (
        reason(h.mobile(Factor.BLE, "lab", "alice", "alice-phone", Side.OUT, {"rssi": -50}))
        is Reason.ACCESS_GRANTED
    )
    assert reason(h.card("lab", "10001", Side.IN)) is Reason.PIN_REQUIRED
    assert reason(h.pin("lab", "2468", Side.OUT)) is Reason.NO_SUCH_DEVICE


def test_no_such_device(h: Harness) -> None:
    assert reason(h.pin("readeronly", "2468")) is Reason.NO_SUCH_DEVICE
    assert reason(h.card("front", "10001", Side.OUT)) is Reason.NO_SUCH_DEVICE


def test_unknown_and_no_access_and_disabled(h: Harness) -> None:
    unknown = h.card("side", "777777")
    assert (unknown.reason, unknown.user) == (Reason.UNKNOWN_CREDENTIAL, None)
    assert unknown.credential is not None and "777777" not in unknown.credential
    assert reason(h.card("lab", "20002")) is Reason.NO_ACCESS
    assert reason(h.card("side", "40004")) is Reason.NO_ACCESS
    # a phone token naming a phone that is not the user's
    assert reason(h.mobile(Factor.NFC, "side", "alice", "erin-phone")) is Reason.UNKNOWN_CREDENTIAL


def test_pin_alone_on_ordinary_door(h: Harness) -> None:
    assert (h.pin("side", "1357").reason, h.pin("side", "1357").user) == (
        Reason.ACCESS_GRANTED,
        "carol",
    )
    assert reason(h.pin("side", "1111")) is Reason.PIN_INCORRECT
    assert reason(h.pin("readeronly", "1357")) is Reason.NO_SUCH_DEVICE


def test_locked_door_and_admin_remote(h: Harness) -> None:
    assert reason(h.card("vault", "10001")) is Reason.DOOR_LOCKED
    assert reason(h.mobile(Factor.REMOTE, "vault", "alice", "backend:app")) is Reason.DOOR_LOCKED
    assert reason(h.mobile(Factor.REMOTE, "vault", "root", "backend:app")) is Reason.ACCESS_GRANTED


def test_unlocked_door_grants_and_logs(h: Harness) -> None:
    d = h.card("lobby", "10001")
    assert (d.result, d.reason, d.user) == (Result.GRANTED, Reason.DOOR_UNLOCKED, "alice")


def test_lockdown_beats_everything(h: Harness) -> None:
    h.core.set_lockdown(True)
    d = h.card("lobby", "10001")
    assert (d.reason, d.state_source) == (Reason.LOCKDOWN, "lockdown")
    assert reason(h.mobile(Factor.REMOTE, "side", "alice", "backend:app")) is Reason.LOCKDOWN
    assert reason(h.mobile(Factor.REMOTE, "side", "root", "backend:app")) is Reason.ACCESS_GRANTED
    h.core.set_lockdown(False)
    h.core.set_lockdown(True, "side")
    assert reason(h.card("side", "10001")) is Reason.LOCKDOWN
    assert reason(h.card("lobby", "10001")) is Reason.DOOR_UNLOCKED


def test_override_then_it_ends(h: Harness) -> None:
    resolved = h.core.set_override("front", DoorState.ACCESS_CONTROLLED, 30, h.clock.moment())
    assert (resolved.state, resolved.source) == (DoorState.ACCESS_CONTROLLED, "override")
    assert reason(h.card("front", "10001")) is Reason.ACCESS_GRANTED
    assert reason(h.pin("front", "2468")) is Reason.ACCESS_GRANTED
    h.after(31 * 60)
    assert h.card("front", "10001").state is DoorState.TWO_FACTOR


def test_two_factor_override_needs_reader_and_keypad(h: Harness) -> None:
    with pytest.raises(ConfigError, match="readeronly.*keypad"):
        h.core.set_override("readeronly", DoorState.TWO_FACTOR, 5, h.clock.moment())
    assert h.core.door_state("readeronly", h.clock.moment()).source == "default"


def test_unknown_door_is_an_error_not_a_decision(h: Harness) -> None:
    with pytest.raises(UnknownDoor):
        h.card("nowhere", "10001")


def test_mobile_factors_only_as_tokens(h: Harness) -> None:
    with pytest.raises(ValueError):
        h.core.decide(
            Presentation(Factor.NFC, "front", user="alice", credential="alice-phone"),
            h.clock.moment(),
        )


def test_token_rejections_never_grant(h: Harness) -> None:
    token = h.minter.mint(
        user="alice", door="side", side=Side.IN, factor=Factor.REMOTE, credential="backend:app"
    )
    assert reason(h.core.decide_token(token, h.clock.moment())) is Reason.ACCESS_GRANTED
    assert reason(h.core.decide_token(token, h.clock.moment())) is Reason.TOKEN_REPLAYED
    forged = token[:-4] + ("AAAA" if not token.endswith("AAAA") else "BBBB")
    assert reason(h.core.decide_token(forged, h.clock.moment())) is Reason.TOKEN_INVALID
    late = h.minter.mint(
        user="alice", door="side", side=Side.IN, factor=Factor.REMOTE, credential="backend:app"
    )
    h.after(16)
    assert reason(h.core.decide_token(late, h.clock.moment())) is Reason.TOKEN_EXPIRED
    other_door = h.minter.mint(
        user="alice", door="side", side=Side.IN, factor=Factor.REMOTE, credential="backend:app"
    )
    assert (
        reason(h.core.decide_token(other_door, h.clock.moment(), door_hint="front"))
        is Reason.TOKEN_INVALID
    )
    assert reason(h.core.decide_token("garbage", h.clock.moment())) is Reason.TOKEN_INVALID


def test_internal_error_denies(h: Harness, monkeypatch: pytest.MonkeyPatch) -> None:
    import passbridge.core.engine as engine

    def broken(*_a: object, **_k: object) -> object:
        raise RuntimeError("boom")

    monkeypatch.setattr(engine, "resolve_state", broken)
    d = h.card("side", "10001")
    assert (d.result, d.reason) == (Result.DENIED, Reason.INTERNAL_ERROR)
