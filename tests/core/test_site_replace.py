"""A new site in a running core (``DoorCore.replace_site``, a live reload):
state whose door and user still mean the same carries over, the rest goes,
and every decision names the revision it used."""

from __future__ import annotations

from datetime import datetime

import yaml
from hypothesis import given, settings
from hypothesis import strategies as st

from passbridge.core.model import DoorState, Factor, Reason, Result, Side, TrustedKey
from passbridge.core.tokens import (
    TOKEN_FACTORS,
    FactorTokenVerifier,
    generate_private_key,
    public_key_to_pem,
)
from tests.engine_helpers import Harness, site_from_yaml

ALWAYS_2FA = ('{days: [mon, tue, wed, thu, fri, sat, sun], start: "00:00", end: "24:00", '
              'state: two_factor}')
SITE = f"""
site: {{id: hq, timezone: America/Los_Angeles}}
doors:
  - {{id: front, reader: true, keypad: true, schedule: [{ALWAYS_2FA}]}}
  - {{id: back, reader: true, keypad: true, schedule: [{ALWAYS_2FA}]}}
  - {{id: pad, reader: true, keypad: true}}
users:
  - {{id: alice, cards: ["1"], pin: "1111", phones: [alice-phone], doors: all}}
  - {{id: bob, cards: ["2"], pin: "2222", doors: all}}
"""
MONDAY = datetime(2027, 3, 1, 10, 0)


def harness() -> Harness:
    return Harness(SITE, MONDAY)


def without_door(door: str) -> str:
    doc = yaml.safe_load(SITE)
    doc["doors"] = [d for d in doc["doors"] if d["id"] != door]
    return yaml.safe_dump(doc)


def with_user(user: str, **fields: object) -> str:
    doc = yaml.safe_load(SITE)
    doc["users"] = [({**u, **fields} if u["id"] == user else u) for u in doc["users"]]
    return yaml.safe_dump(doc)


def without_user(user: str) -> str:
    doc = yaml.safe_load(SITE)
    doc["users"] = [u for u in doc["users"] if u["id"] != user]
    return yaml.safe_dump(doc)


def plus_door() -> str:
    doc = yaml.safe_load(SITE)
    doc["doors"].append({"id": "annex", "reader": True})
    return yaml.safe_dump(doc)


def lock_out(h: Harness, door: str, card: str = "1") -> None:
    """Five wrong codes after a card: the user is locked out at ``door``."""
    for _ in range(5):
        assert h.card(door, card).reason is Reason.PIN_REQUIRED
        assert h.pin(door, "0000").reason is Reason.PIN_INCORRECT
    assert h.card(door, card).reason is Reason.LOCKED_OUT


def test_a_pending_pin_step_survives_and_completes_under_the_new_revision() -> None:
    h = harness()
    old = h.core.site.revision
    assert h.card("front", "1").reason is Reason.PIN_REQUIRED
    new_site = site_from_yaml(plus_door())
    dropped = h.core.replace_site(new_site)
    assert dropped.pending == ()
    done = h.after(2).pin("front", "1111")
    assert (done.result, done.reason, done.user) == (Result.GRANTED, Reason.TWO_FACTOR_COMPLETE,
                                                     "alice")
    assert done.revision == new_site.revision != old


def test_lockouts_survive_a_reload() -> None:
    h = harness()
    lock_out(h, "front")
    for _ in range(5):  # the keypad's PIN-only entry at "pad"
        h.pin("pad", "9999")
    assert h.pin("pad", "1111").reason is Reason.LOCKED_OUT
    dropped = h.core.replace_site(site_from_yaml(plus_door()))
    assert (dropped.lockouts, dropped.keypad_lockouts) == ((), ())
    assert h.card("front", "1").reason is Reason.LOCKED_OUT
    assert h.pin("pad", "1111").reason is Reason.LOCKED_OUT


def test_overrides_and_lockdowns_survive_a_reload() -> None:
    h = harness()
    h.core.set_override("pad", DoorState.UNLOCKED, 30, h.clock.moment())
    h.core.set_lockdown(True, "back")
    h.core.replace_site(site_from_yaml(plus_door()))
    assert h.core.door_state("pad", h.clock.moment()).source == "override"
    assert h.card("back", "1").reason is Reason.LOCKDOWN
    h.core.set_lockdown(True)
    h.core.replace_site(site_from_yaml(SITE))
    assert h.card("front", "1").reason is Reason.LOCKDOWN


def test_state_of_a_removed_door_is_dropped() -> None:
    h = harness()
    assert h.card("front", "1").reason is Reason.PIN_REQUIRED
    lock_out(h, "back", card="2")
    h.core.set_override("front", DoorState.TWO_FACTOR, 30, h.clock.moment())
    h.core.set_lockdown(True, "front")
    dropped = h.core.replace_site(site_from_yaml(without_door("front")))
    assert dropped.pending == ("front/in",)
    assert dropped.overrides == ("front",)
    assert dropped.door_lockdowns == ("front",)
    assert dropped.lockouts == ()  # bob@back: both still there
    assert h.card("back", "2").reason is Reason.LOCKED_OUT
    # The door comes back: nothing of the old one's state comes with it.
    h.core.replace_site(site_from_yaml(SITE))
    assert h.core.door_state("front", h.clock.moment()).source.startswith("schedule")
    assert h.pin("front", "1111").reason is Reason.PIN_WITHOUT_CARD


def test_state_of_a_removed_user_is_dropped() -> None:
    h = harness()
    lock_out(h, "back", card="2")
    assert h.card("front", "2").reason is Reason.PIN_REQUIRED
    dropped = h.core.replace_site(site_from_yaml(without_user("bob")))
    assert dropped.lockouts == ("bob@back",)
    assert dropped.pending == ("front/in",)
    assert h.pin("front", "2222").reason is Reason.PIN_WITHOUT_CARD


def test_a_pending_step_ends_when_its_user_loses_the_door_or_changes_code() -> None:
    """The PIN step finishes what the card began: it must not grant on terms
    the new site no longer gives (access taken away, another code)."""
    h = harness()
    h.card("front", "1")
    dropped = h.core.replace_site(site_from_yaml(with_user("alice", doors=["back"])))
    assert dropped.pending == ("front/in",)
    assert h.pin("front", "1111").reason is Reason.PIN_WITHOUT_CARD

    h = harness()
    h.card("front", "1")
    dropped = h.core.replace_site(site_from_yaml(with_user("alice", pin="5555")))
    assert dropped.pending == ("front/in",)
    assert h.pin("front", "1111").reason is Reason.PIN_WITHOUT_CARD

    h = harness()  # a change that does not touch the step: the name
    h.card("front", "1")
    dropped = h.core.replace_site(site_from_yaml(with_user("alice", name="Alice A.")))
    assert dropped.pending == ()
    assert h.pin("front", "1111").reason is Reason.TWO_FACTOR_COMPLETE


def test_a_new_verifier_keeps_the_replay_record() -> None:
    """New trust keys come with a verifier that still remembers used tokens."""
    h = harness()
    token = h.minter.mint(user="alice", door="pad", side=Side.IN, factor=Factor.NFC,
                          credential="alice-phone", evidence={})
    assert h.core.decide_token(token, h.clock.moment()).reason is Reason.ACCESS_GRANTED
    other = generate_private_key("ES256")
    keys = [TrustedKey("bridge-test", "ES256", public_key_to_pem(h.bridge_key),
                       factors=TOKEN_FACTORS),
            TrustedKey("bridge-2", "ES256", public_key_to_pem(other), factors=TOKEN_FACTORS)]
    assert isinstance(h.core.tokens, FactorTokenVerifier)
    h.core.replace_site(site_from_yaml(plus_door()), tokens=h.core.tokens.with_keys(keys))
    assert h.core.decide_token(token, h.clock.moment()).reason is Reason.TOKEN_REPLAYED


DOORS = ("front", "back", "pad")
USERS = {"alice": "1", "bob": "2"}


@settings(max_examples=60, deadline=None)
@given(
    locked=st.sets(st.tuples(st.sampled_from(sorted(USERS)), st.sampled_from(["front", "back"]))),
    pending=st.dictionaries(st.sampled_from(["front", "back"]), st.sampled_from(sorted(USERS))),
    overrides=st.sets(st.sampled_from(DOORS)),
    lockdowns=st.sets(st.sampled_from(DOORS)),
    kept_doors=st.sets(st.sampled_from(DOORS), min_size=1),
    kept_users=st.sets(st.sampled_from(sorted(USERS))),
)
def test_exactly_the_state_of_gone_doors_and_users_is_dropped(
    locked: set[tuple[str, str]], pending: dict[str, str], overrides: set[str],
    lockdowns: set[str], kept_doors: set[str], kept_users: set[str],
) -> None:
    h = harness()
    for user, door in sorted(locked):
        lock_out(h, door, USERS[user])
    pending = {d: u for d, u in pending.items() if (u, d) not in locked}
    for door, user in pending.items():
        assert h.card(door, USERS[user]).reason is Reason.PIN_REQUIRED
    for door in overrides:
        # two_factor: an override of another state would itself end the pending card
        h.core.set_override(door, DoorState.TWO_FACTOR, 30, h.clock.moment())
    for door in lockdowns:
        h.core.set_lockdown(True, door)
    doc = yaml.safe_load(SITE)
    doc["doors"] = [d for d in doc["doors"] if d["id"] in kept_doors]
    doc["users"] = [u for u in doc["users"] if u["id"] in kept_users]
    new_site = site_from_yaml(yaml.safe_dump(doc))

    dropped = h.core.replace_site(new_site)

    def gone(user: str, door: str) -> bool:
        return user not in kept_users or door not in kept_doors

    assert set(dropped.lockouts) == {f"{u}@{d}" for u, d in locked if gone(u, d)}
    assert set(dropped.pending) == {f"{d}/in" for d, u in pending.items() if gone(u, d)}
    assert set(dropped.overrides) == overrides - kept_doors
    assert set(dropped.door_lockdowns) == lockdowns - kept_doors
    site_lockdown, doors_locked = h.core.lockdown()
    assert doors_locked == frozenset(lockdowns & kept_doors)
    for door in kept_doors:
        assert (h.core.override(door) is not None) == (door in overrides)
    # What survived still acts: a surviving lockout still locks the user out.
    for user, door in locked:
        if not gone(user, door) and door not in lockdowns:
            decision = h.card(door, USERS[user])
            assert decision.reason is Reason.LOCKED_OUT
            assert decision.revision == new_site.revision
