"""Site files: what loads, what is refused, and how the refusal names the place."""

from __future__ import annotations

import copy
import json
from datetime import date, datetime
from pathlib import Path
from typing import Any

import pytest
import yaml
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, ed25519
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from passbridge.core.model import DoorState, Repeat, Role
from passbridge.core.pin import pin_hash
from passbridge.errors import ConfigError
from passbridge.site_file import load_document, load_site, parse_site
from tests.conftest import shared_path

KEY = b"installation-secret"
SCENARIO_KEYS = frozenset({"name", "steps"})


def base() -> dict[str, Any]:
    return {
        "site": {"id": "hq", "timezone": "America/Los_Angeles"},
        "doors": [
            {
                "id": "front",
                "keypad": True,
                "schedule": [
                    {"days": ["mon", "tue"], "start": "08:00", "end": "18:00",
                     "state": "two_factor"},
                ],
                "exceptions": [
                    {"id": "xmas", "date": date(2026, 12, 25), "state": "locked",
                     "repeat": "yearly"},
                ],
            },
            {"id": "garage"},
        ],
        "users": [
            {"id": "alice", "cards": ["10001"], "pin": "2468", "phones": ["alice-phone"],
             "doors": ["front"]},
            {"id": "bob", "cards": ["20002"], "pin": "2468", "doors": "all",
             "role": "site_admin", "remote_unlock": True},
        ],
    }


def problems(doc: Any, **kwargs: Any) -> list[str]:
    with pytest.raises(ConfigError) as caught:
        parse_site(doc, file="site.yaml", pin_key=KEY, **kwargs)
    return [str(p) for p in caught.value.problems]


def assert_problem(doc: Any, path: str, *fragments: str) -> str:
    """The one problem at ``path`` (exactly one problem overall) holds every fragment."""
    found = problems(doc)
    assert len(found) == 1, found
    prefix = f"site.yaml: {path}: " if path else "site.yaml: "
    assert found[0].startswith(prefix), found
    for fragment in fragments:
        assert fragment in found[0], found
    return found[0]


def edited(**changes: Any) -> dict[str, Any]:
    doc = copy.deepcopy(base())
    for where, value in changes.items():
        target: Any = doc
        parts = where.split("__")
        for part in parts[:-1]:
            target = target[int(part)] if part.isdigit() else target[part]
        last = parts[-1]
        if value is DELETE:
            del target[last]
        else:
            target[int(last) if last.isdigit() else last] = value
    return doc


DELETE = object()


def p256_pem() -> str:
    key = ec.generate_private_key(ec.SECP256R1()).public_key()
    return key.public_bytes(serialization.Encoding.PEM,
                            serialization.PublicFormat.SubjectPublicKeyInfo).decode()


def ed25519_pem() -> str:
    key = ed25519.Ed25519PrivateKey.generate().public_key()
    return key.public_bytes(serialization.Encoding.PEM,
                            serialization.PublicFormat.SubjectPublicKeyInfo).decode()


# --- what loads ---------------------------------------------------------------------


def test_a_valid_site_builds_doors_users_and_indexes() -> None:
    site = parse_site(base(), file="site.yaml", pin_key=KEY)
    assert site.id == "hq" and site.timezone.key == "America/Los_Angeles"
    front, garage = site.doors["front"], site.doors["garage"]
    assert (front.reader, front.keypad, front.unlock_seconds, front.pin_timeout) == (
        True, True, 5, 15)
    assert (garage.reader, garage.keypad, garage.in_out, garage.ble_rssi_min) == (
        True, False, False, -60)
    assert front.schedule[0].name == "0" and front.schedule[0].days == frozenset({0, 1})
    assert (front.schedule[0].start, front.schedule[0].end) == (8 * 60, 18 * 60)
    xmas = front.exceptions[0]
    assert (xmas.start, xmas.end, xmas.repeat, xmas.until) == (0, 1440, Repeat.YEARLY, None)
    alice, bob = site.users["alice"], site.users["bob"]
    assert alice.may_open("front") and not alice.may_open("garage")
    assert bob.all_doors and bob.role is Role.SITE_ADMIN and bob.remote_unlock
    assert alice.enabled and not alice.remote_unlock
    assert site.user_by_card == {"10001": "alice", "20002": "bob"}
    assert site.user_by_phone == {"alice-phone": "alice"}
    assert site.users_by_pin_hash == {pin_hash(KEY, "2468"): ("alice", "bob")}
    assert alice.pin_hash == pin_hash(KEY, "2468")
    assert len(site.revision) == 12 and int(site.revision, 16) >= 0


def test_the_clear_pin_is_not_kept_anywhere_in_the_site() -> None:
    doc = edited(users__0__pin="97315", users__1__pin=DELETE)
    site = parse_site(doc, file="site.yaml", pin_key=KEY)
    assert "97315" not in repr(site)
    assert site.users["bob"].pin_hash is None


def test_revision_follows_content_not_formatting(tmp_path: Path) -> None:
    doc = base()
    first = parse_site(doc, file="a", pin_key=KEY).revision
    as_json = tmp_path / "site.json"
    as_json.write_text(json.dumps(doc, default=str, indent=4))
    assert load_site(as_json, pin_key=KEY).revision == first
    # Writing a default out does not change the configuration.
    assert parse_site(edited(doors__1__reader=True), file="a", pin_key=KEY).revision == first
    with_steps = {**doc, "name": "x", "steps": []}
    assert parse_site(with_steps, file="a", pin_key=KEY,
                      extra_keys=SCENARIO_KEYS).revision == first
    for changed in (edited(doors__1__unlock_seconds=6), edited(users__0__pin="2469")):
        assert parse_site(changed, file="a", pin_key=KEY).revision != first
    # PINs enter the revision only keyed: another installation key, another revision.
    assert parse_site(doc, file="a", pin_key=b"other").revision != first


def shared_scenarios() -> list[Path]:
    return sorted(shared_path("scenarios").glob("*.yaml"))


def test_every_shared_scenario_site_section_loads() -> None:
    files = shared_scenarios()
    assert len(files) >= 11
    for file in files:
        data, label = load_document(file)
        site = parse_site(data, file=label, pin_key=KEY, extra_keys=SCENARIO_KEYS)
        assert site.id == "hq" and site.doors and site.users, file


def test_scenario_keys_are_refused_in_a_plain_site_file() -> None:
    data, _ = load_document(shared_path("scenarios", "01-card-then-pin.yaml"))
    found = problems(data)
    assert [p.split(": ")[1] for p in found] == ["name", "steps"]
    assert all("unknown key" in p for p in found)


def test_shared_invalid_two_factor_file_is_rejected_naming_the_door() -> None:
    path = shared_path("scenarios", "invalid", "two-factor-without-keypad.yaml")
    data, label = load_document(path)
    with pytest.raises(ConfigError) as caught:
        parse_site(data, file=label, pin_key=KEY, extra_keys=SCENARIO_KEYS)
    (problem,) = caught.value.problems
    assert problem.file == str(path)
    assert problem.path == "doors[0].schedule[0].state"
    assert "'garage'" in problem.message and "no keypad" in problem.message
    assert "reader and a keypad" in problem.message


# --- every problem, each at its place ---------------------------------------------------


def test_all_problems_are_reported_together() -> None:
    doc = edited(site__id=DELETE, doors__0__pin_timeout=99, users__0__role="boss",
                 doors__1__stat="locked")
    found = problems(doc)
    assert len(found) == 4, found
    assert {p.split(": ")[1] for p in found} == {
        "site.id", "doors[0].pin_timeout", "users[0].role", "doors[1].stat"}


@pytest.mark.parametrize(
    ("changes", "path", "fragments"),
    [
        ({"door": []}, "door", ("unknown key", "did you mean 'doors'?")),
        ({"site__name": "HQ"}, "site.name", ("unknown key", "id, timezone")),
        ({"doors__0__schedule__0__stat": "locked"}, "doors[0].schedule[0].stat",
         ("unknown key", "did you mean 'state'?")),
        ({"doors__0__exceptions__0__repeats": "weekly"}, "doors[0].exceptions[0].repeats",
         ("did you mean 'repeat'?",)),
        ({"users__1__pinn": "1234"}, "users[1].pinn", ("did you mean 'pin'?",)),
        ({"trust": {"bridges": [{"id": "b", "kid": "x", "public_key": "k"}]}},
         "trust.bridges[0].kid", ("unknown key",)),
    ],
)
def test_unknown_keys_are_errors_at_their_path(
    changes: dict[str, Any], path: str, fragments: tuple[str, ...]
) -> None:
    doc = edited(**changes)
    found = [p for p in problems(doc) if p.startswith(f"site.yaml: {path}: ")]
    assert found, problems(doc)
    for fragment in fragments:
        assert fragment in found[0]


@pytest.mark.parametrize(
    ("changes", "path", "fragment"),
    [
        ({"site__id": DELETE}, "site.id", "required"),
        ({"site__timezone": DELETE}, "site.timezone", "required"),
        ({"site__timezone": "Mars/Olympus_Mons"}, "site.timezone", "IANA"),
        ({"site__timezone": "../etc/passwd"}, "site.timezone", "IANA"),
        ({"site__timezone": 5}, "site.timezone", "IANA"),
        ({"site__timezone": "localtime"}, "site.timezone", "IANA"),
        ({"site__timezone": "europe/berlin"}, "site.timezone", "did you mean 'Europe/Berlin'?"),
        ({"site": "hq"}, "site", "expected a mapping"),
        ({"doors": {"id": "front"}}, "doors", "expected a list"),
        ({"doors__1__id": DELETE}, "doors[1].id", "required"),
        ({"doors__1__id": "front"}, "doors[1].id", "already defined at doors[0]"),
        ({"doors__1__id": 101}, "doors[1].id", "quote it"),
        ({"doors__1__reader": "yes"}, "doors[1].reader", "expected true or false"),
        ({"doors__1__keypad": 1}, "doors[1].keypad", "expected true or false"),
        ({"doors__1__strict_two_factor": None}, "doors[1].strict_two_factor", "true or false"),
        ({"doors__1__in_out": True, "doors__1__reader": False}, "doors[1].in_out", "reader"),
        ({"doors__1__unlock_seconds": 0}, "doors[1].unlock_seconds", "from 1 to 60"),
        ({"doors__1__unlock_seconds": 61}, "doors[1].unlock_seconds", "from 1 to 60"),
        ({"doors__1__unlock_seconds": True}, "doors[1].unlock_seconds", "whole number"),
        ({"doors__1__unlock_seconds": 2.5}, "doors[1].unlock_seconds", "whole number"),
        ({"doors__1__pin_timeout": 2}, "doors[1].pin_timeout", "from 3 to 60"),
        ({"doors__1__pin_timeout": 61}, "doors[1].pin_timeout", "from 3 to 60"),
        ({"doors__1__ble_rssi_min": -128}, "doors[1].ble_rssi_min", "from -127 to 20"),
        ({"doors__1__ble_rssi_min": "-60"}, "doors[1].ble_rssi_min", "whole number"),
        ({"doors__1__name": ""}, "doors[1].name", "non-empty string"),
    ],
)
def test_site_and_door_fields(changes: dict[str, Any], path: str, fragment: str) -> None:
    assert_problem(edited(**changes), path, fragment)


W = "doors__0__schedule__0__"
E = "doors__0__exceptions__0__"


@pytest.mark.parametrize(
    ("changes", "path", "fragment"),
    [
        ({W + "days": []}, "doors[0].schedule[0].days", "non-empty list of days"),
        ({W + "days": "mon"}, "doors[0].schedule[0].days", "non-empty list of days"),
        ({W + "days": ["mon", "funday"]}, "doors[0].schedule[0].days[1]", "mon, tue"),
        ({W + "days": ["mon", "tue", "mon"]}, "doors[0].schedule[0].days[2]", "listed twice"),
        ({W + "days": DELETE}, "doors[0].schedule[0].days", "required"),
        ({W + "start": "24:00"}, "doors[0].schedule[0].start", '"23:59"'),
        ({W + "start": "25:00"}, "doors[0].schedule[0].start", "HH:MM"),
        ({W + "end": "07:60"}, "doors[0].schedule[0].end", "HH:MM"),
        ({W + "end": "24:01"}, "doors[0].schedule[0].end", '"24:00"'),
        ({W + "end": "7pm"}, "doors[0].schedule[0].end", "HH:MM"),
        ({W + "end": 1140}, "doors[0].schedule[0].end", "quote it"),
        ({W + "state": "open"}, "doors[0].schedule[0].state",
         "access_controlled | two_factor | unlocked | locked"),
        ({W + "state": DELETE}, "doors[0].schedule[0].state", "required"),
        ({W + "id": ""}, "doors[0].schedule[0].id", "non-empty string"),
        ({E + "id": DELETE}, "doors[0].exceptions[0].id", "required"),
        ({E + "date": DELETE}, "doors[0].exceptions[0].date", "required"),
        ({E + "date": "2026-13-01"}, "doors[0].exceptions[0].date", "YYYY-MM-DD"),
        ({E + "date": "25.12.2026"}, "doors[0].exceptions[0].date", "YYYY-MM-DD"),
        ({E + "date": datetime(2026, 12, 25, 8)}, "doors[0].exceptions[0].date", "date and time"),
        ({E + "repeat": "daily"}, "doors[0].exceptions[0].repeat",
         "none | weekly | monthly | yearly"),
        ({E + "until": date(2026, 12, 24)}, "doors[0].exceptions[0].until", "on or after"),
        ({E + "until": "soon"}, "doors[0].exceptions[0].until", "YYYY-MM-DD"),
        ({E + "start": "24:00"}, "doors[0].exceptions[0].start", "HH:MM"),
    ],
)
def test_schedule_and_exception_fields(changes: dict[str, Any], path: str, fragment: str) -> None:
    assert_problem(edited(**changes), path, fragment)


def test_windows_and_exceptions_in_all_their_written_forms() -> None:
    doc = edited(**{
        W + "id": "office-hours", W + "end": "24:00",
        E + "date": "2026-12-25", E + "until": "2030-12-25", E + "start": "06:00",
        E + "end": "06:00",
    })
    door = parse_site(doc, file="s", pin_key=KEY).doors["front"]
    assert door.schedule[0].name == "office-hours" and door.schedule[0].end == 1440
    exc = door.exceptions[0]
    assert (exc.date, exc.until, exc.start, exc.end) == (
        date(2026, 12, 25), date(2030, 12, 25), 360, 360)
    assert exc.state is DoorState.LOCKED


def test_window_names_are_unique_per_door_including_the_positional_default() -> None:
    doc = edited(doors__0__schedule=[
        {"days": ["mon"], "start": "08:00", "end": "09:00", "state": "unlocked"},
        {"id": "0", "days": ["tue"], "start": "08:00", "end": "09:00", "state": "unlocked"},
    ])
    assert_problem(doc, "doors[0].schedule[1].id", "'0'", "doors[0].schedule[0]")


def test_exception_ids_are_unique_per_door() -> None:
    exc = {"id": "x", "date": "2027-01-01", "state": "locked"}
    doc = edited(doors__0__exceptions=[exc, {**exc, "date": "2027-02-01"}])
    assert_problem(doc, "doors[0].exceptions[1].id", "'x'", "doors[0].exceptions[0]")
    other = edited(doors__1__exceptions=[exc])
    other["doors"][0]["exceptions"] = [exc]
    parse_site(other, file="s", pin_key=KEY)  # the same id on another door is fine


# --- two-factor needs a reader and a keypad ---------------------------------------------


@pytest.mark.parametrize(
    ("door", "lacks"),
    [
        ({"reader": True, "keypad": False}, "has no keypad"),
        ({"reader": False, "keypad": True}, "has no badge reader"),
        ({"reader": False, "keypad": False}, "has neither a badge reader nor a keypad"),
    ],
)
def test_two_factor_on_a_door_without_reader_and_keypad_is_refused(
    door: dict[str, bool], lacks: str
) -> None:
    window = {"id": "day", "days": ["mon"], "start": "08:00", "end": "18:00",
              "state": "two_factor"}
    exc = {"id": "audit", "date": "2027-01-04", "state": "two_factor"}
    doc = edited(doors__1={"id": "garage", **door, "schedule": [window], "exceptions": [exc]})
    found = problems(doc)
    assert found == [
        f"site.yaml: doors[1].schedule[0].state: door 'garage': two_factor needs both a badge "
        f"reader and a keypad; this door {lacks}",
        f"site.yaml: doors[1].exceptions[0].state: door 'garage': two_factor needs both a "
        f"badge reader and a keypad; this door {lacks}",
    ]


# --- overlaps ------------------------------------------------------------------------


def window(days: list[str], start: str, end: str, state: str = "unlocked") -> dict[str, Any]:
    return {"days": days, "start": start, "end": end, "state": state}


@pytest.mark.parametrize(
    ("windows", "moment"),
    [
        ([window(["mon", "wed"], "08:00", "12:00"), window(["wed"], "11:00", "13:00")],
         "wed 11:00"),
        ([window(["fri"], "22:00", "06:00"), window(["sat"], "02:00", "04:00")], "sat 02:00"),
        ([window(["sun"], "22:00", "06:00"), window(["mon"], "05:00", "09:00")], "mon 05:00"),
        ([window(["tue"], "09:00", "09:00"), window(["wed"], "08:00", "08:30")], "wed 08:00"),
        ([window(["thu"], "00:00", "24:00"), window(["thu"], "23:59", "24:00")], "thu 23:59"),
    ],
)
def test_overlapping_windows_are_refused_naming_both(
    windows: list[dict[str, Any]], moment: str
) -> None:
    doc = edited(doors__1__schedule=windows)
    assert_problem(doc, "doors[1].schedule[1]", "window '1' and window '0'",
                   "(doors[1].schedule[0])", f"both cover {moment}")


@pytest.mark.parametrize(
    "windows",
    [
        [window(["mon"], "08:00", "12:00"), window(["mon"], "12:00", "18:00")],
        [window(["fri"], "22:00", "06:00"), window(["sat"], "06:00", "22:00")],
        [window(["sun"], "22:00", "06:00"), window(["mon"], "06:00", "22:00"),
         window(["sat"], "20:00", "22:00")],
        [window(["mon"], "00:00", "24:00"), window(["tue"], "00:00", "24:00")],
    ],
)
def test_adjacent_windows_are_fine(windows: list[dict[str, Any]]) -> None:
    parse_site(edited(doors__1__schedule=windows), file="s", pin_key=KEY)


def exc(ident: str, on: str, **more: Any) -> dict[str, Any]:
    return {"id": ident, "date": on, "state": "locked", **more}


@pytest.mark.parametrize(
    ("exceptions", "moment"),
    [
        ([exc("a", "2026-12-25"), exc("b", "2026-12-25", start="10:00", end="11:00")],
         "2026-12-25 10:00"),
        ([exc("a", "2026-12-25", repeat="yearly"), exc("b", "2031-12-25")], "2031-12-25 00:00"),
        ([exc("a", "2027-01-04", repeat="weekly", until="2027-02-01"),
          exc("b", "2027-01-18", repeat="weekly")], "2027-01-18 00:00"),
        ([exc("a", "2027-01-31", repeat="monthly"), exc("b", "2027-05-31")], "2027-05-31 00:00"),
        ([exc("a", "2028-02-29", repeat="yearly"), exc("b", "2032-02-29")], "2032-02-29 00:00"),
        ([exc("a", "2026-12-24", start="22:00", end="06:00"),
          exc("b", "2026-12-25", start="05:00", end="07:00")], "2026-12-25 05:00"),
        # The 1st of a month runs overnight into a Tuesday the 2nd: March, then November.
        ([exc("a", "2027-01-01", repeat="monthly", start="20:00", end="02:00"),
          exc("b", "2027-03-02", repeat="weekly", start="01:00", end="03:00")],
         "2027-03-02 01:00"),
        ([exc("a", "2027-01-01", repeat="monthly", start="20:00", end="02:00"),
          exc("b", "2027-03-09", repeat="weekly", start="01:00", end="03:00")],
         "2027-11-02 01:00"),
    ],
)
def test_exceptions_that_can_cover_one_moment_are_refused_naming_both(
    exceptions: list[dict[str, Any]], moment: str
) -> None:
    doc = edited(doors__1__exceptions=exceptions)
    assert_problem(doc, "doors[1].exceptions[1]", "exception 'b' and exception 'a'",
                   "(doors[1].exceptions[0])", f"both cover {moment}")


@pytest.mark.parametrize(
    "exceptions",
    [
        [exc("a", "2026-12-25"), exc("b", "2026-12-26")],
        [exc("a", "2026-12-25", repeat="yearly", until="2030-12-25"), exc("b", "2031-12-25")],
        [exc("a", "2027-01-04", repeat="weekly"), exc("b", "2027-01-05", repeat="weekly")],
        [exc("a", "2027-01-31", repeat="monthly"), exc("b", "2027-04-30")],
        [exc("a", "2027-01-31", repeat="monthly"), exc("b", "2027-06-01", end="12:00")],
        [exc("a", "2028-02-29", repeat="yearly"), exc("b", "2029-03-01", repeat="yearly")],
        [exc("a", "2027-02-28", repeat="yearly"), exc("b", "2028-02-29")],
        [exc("a", "2026-12-24", start="22:00", end="06:00"),
         exc("b", "2026-12-25", start="06:00", end="22:00")],
        [exc("a", "2027-01-01", repeat="monthly"), exc("b", "2027-01-02", repeat="monthly")],
        [exc("a", "2027-01-05", repeat="weekly", until="2027-03-01"),
         exc("b", "2027-03-02", repeat="weekly")],
        [exc("a", "2027-01-04", repeat="weekly"), exc("b", "2027-01-01", repeat="weekly")],
        [exc("a", "2027-01-01", repeat="monthly", start="20:00", end="02:00", until="2027-10-31"),
         exc("b", "2027-03-09", repeat="weekly", start="01:00", end="03:00")],
    ],
)
def test_exceptions_that_never_meet_are_fine(exceptions: list[dict[str, Any]]) -> None:
    parse_site(edited(doors__1__exceptions=exceptions), file="s", pin_key=KEY)


def test_weekly_exceptions_on_the_same_weekday_overlap() -> None:
    doc = edited(doors__1__exceptions=[exc("a", "2027-01-04", repeat="weekly"),
                                       exc("b", "2027-01-11", repeat="weekly")])
    assert_problem(doc, "doors[1].exceptions[1]", "both cover 2027-01-11 00:00")


# --- users -------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("changes", "path", "fragment"),
    [
        ({"users__1__id": "alice"}, "users[1].id", "already defined at users[0]"),
        ({"users__1__id": DELETE}, "users[1].id", "required"),
        ({"users__1__role": "admin"}, "users[1].role", "user | site_admin"),
        ({"users__1__cards": "20002"}, "users[1].cards", "expected a list"),
        ({"users__1__cards": [20002]}, "users[1].cards[0]", "leading zeros"),
        ({"users__1__cards": [""]}, "users[1].cards[0]", "non-empty string"),
        ({"users__1__phones": ["alice-phone"]}, "users[1].phones[0]",
         "phone 'alice-phone' is already given to user 'alice' (users[0].phones[0])"),
        ({"users__1__doors": ["front", "back"]}, "users[1].doors[1]", "front, garage"),
        ({"users__1__doors": "every"}, "users[1].doors", 'or "all"'),
        ({"users__1__remote_unlock": "true"}, "users[1].remote_unlock", "true or false"),
        ({"users__1__enabled": 0}, "users[1].enabled", "true or false"),
        ({"users__1__name": 7}, "users[1].name", "non-empty string"),
        ({"users": {"alice": {}}}, "users", "expected a list"),
    ],
)
def test_user_fields(changes: dict[str, Any], path: str, fragment: str) -> None:
    assert_problem(edited(**changes), path, fragment)


def test_a_badge_belongs_to_one_user_and_the_error_does_not_print_the_number() -> None:
    text = assert_problem(edited(users__1__cards=["30003", "10001"]), "users[1].cards[1]",
                          "users[0].cards[0]", "user 'alice'")
    assert "10001" not in text
    text = assert_problem(edited(users__0__cards=["10001", "10001"]), "users[0].cards[1]",
                          "this user")
    assert "10001" not in text


@pytest.mark.parametrize(
    ("pin", "fragment"),
    [
        (2468, 'quoted string of 4-16 digits'),
        ("246", "4-16 digits"),
        ("12345678901234567", "4-16 digits"),
        ("24a8", "4-16 digits"),
        ("２４６８", "4-16 digits"),  # full-width digits are not keypad digits
        ([2468], "4-16 digits"),
    ],
)
def test_entry_codes_are_quoted_digit_strings_and_never_echoed(pin: Any, fragment: str) -> None:
    text = assert_problem(edited(users__0__pin=pin), "users[0].pin", fragment)
    assert str(pin) not in text.replace("4-16", "")


def test_an_entry_code_with_leading_zeros_survives() -> None:
    site = parse_site(edited(users__0__pin="0007"), file="s", pin_key=KEY)
    assert site.users["alice"].pin_hash == pin_hash(KEY, "0007")


def test_users_section_and_user_doors_are_optional() -> None:
    doc = edited(users=DELETE, trust=None)
    site = parse_site(doc, file="s", pin_key=KEY)
    assert site.users == {} and site.bridges == () and site.backends == ()
    lonely = parse_site(edited(users=[{"id": "zed"}]), file="s", pin_key=KEY).users["zed"]
    assert not lonely.may_open("front") and lonely.pin_hash is None


# --- trust -----------------------------------------------------------------------


def test_trusted_keys_inline_and_from_files(tmp_path: Path) -> None:
    (tmp_path / "keys").mkdir()
    (tmp_path / "keys" / "bridge.pem").write_text(ed25519_pem())
    inline = p256_pem()
    doc = edited(trust={
        "bridges": [{"id": "bridge-1", "alg": "EdDSA", "public_key_file": "keys/bridge.pem"}],
        "backends": [{"id": "app", "public_key": inline}],
    })
    site = parse_site(doc, file="s", pin_key=KEY, base_dir=tmp_path)
    assert [(k.id, k.alg) for k in site.bridges] == [("bridge-1", "EdDSA")]
    assert [(k.id, k.alg) for k in site.backends] == [("app", "ES256")]
    assert site.backends[0].public_key_pem.strip() == inline.strip()
    serialization.load_pem_public_key(site.bridges[0].public_key_pem.encode())


@pytest.mark.parametrize(
    ("entry", "path", "fragment"),
    [
        ({"id": "b", "alg": "HS256", "public_key": "P256"}, "trust.bridges[0].alg",
         "ES256 (P-256) or EdDSA"),
        ({"id": "b", "alg": "none", "public_key": "P256"}, "trust.bridges[0].alg", "ES256"),
        ({"id": "b"}, "trust.bridges[0]", "exactly one of public_key"),
        ({"id": "b", "public_key": "P256", "public_key_file": "x.pem"}, "trust.bridges[0]",
         "exactly one of"),
        ({"id": "b", "public_key": "ED"}, "trust.bridges[0].public_key", "P-256"),
        ({"id": "b", "alg": "EdDSA", "public_key": "P256"}, "trust.bridges[0].public_key",
         "Ed25519"),
        ({"id": "b", "public_key": "P384"}, "trust.bridges[0].public_key", "P-256"),
        ({"id": "b", "public_key": "-----BEGIN PUBLIC KEY-----\nnope\n-----END PUBLIC KEY-----"},
         "trust.bridges[0].public_key", "PEM public key"),
        ({"id": "b", "public_key_file": "missing.pem"}, "trust.bridges[0].public_key_file",
         "cannot read"),
        ({"id": "b", "public_key_file": "/dev/zero"}, "trust.bridges[0].public_key_file",
         "too large"),
        ({"id": "b", "public_key_file": "."}, "trust.bridges[0].public_key_file", "cannot read"),
    ],
)
def test_bad_trusted_keys(entry: dict[str, Any], path: str, fragment: str, tmp_path: Path) -> None:
    pems = {
        "P256": p256_pem(),
        "ED": ed25519_pem(),
        "P384": ec.generate_private_key(ec.SECP384R1()).public_key().public_bytes(
            serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo).decode(),
    }
    if entry.get("public_key") in pems:
        entry = {**entry, "public_key": pems[entry["public_key"]]}
    doc = edited(trust={"bridges": [entry]})
    with pytest.raises(ConfigError) as caught:
        parse_site(doc, file="site.yaml", pin_key=KEY, base_dir=tmp_path)
    found = [str(p) for p in caught.value.problems]
    assert len(found) == 1 and found[0].startswith(f"site.yaml: {path}: "), found
    assert fragment in found[0]


def test_key_ids_are_unique_per_list() -> None:
    pem = p256_pem()
    doc = edited(trust={"bridges": [{"id": "b", "public_key": pem}, {"id": "b", "public_key": pem}],
                        "backends": [{"id": "b", "public_key": pem}]})
    assert_problem(doc, "trust.bridges[1].id", "already used at trust.bridges[0]")


# --- files -------------------------------------------------------------------------


def write(tmp_path: Path, text: str, name: str = "site.yaml") -> Path:
    path = tmp_path / name
    path.write_text(text)
    return path


def load_problems(path: Path) -> list[str]:
    with pytest.raises(ConfigError) as caught:
        load_site(path, pin_key=KEY)
    return [str(p) for p in caught.value.problems]


def test_a_yaml_file_loads(tmp_path: Path) -> None:
    path = write(tmp_path, yaml.safe_dump(base(), sort_keys=False))
    assert load_site(path, pin_key=KEY).revision == parse_site(
        base(), file="x", pin_key=KEY).revision


def test_bad_yaml_names_the_line(tmp_path: Path) -> None:
    path = write(tmp_path, "site: {id: hq, timezone: UTC}\ndoors:\n  - id: [front\n")
    (problem,) = load_problems(path)
    assert problem.startswith(f"{path}: line ") and "not valid YAML" in problem


def test_a_key_given_twice_is_an_error_with_its_line(tmp_path: Path) -> None:
    path = write(tmp_path, "site: {id: hq, timezone: UTC}\ndoors: []\ndoors: []\n")
    (problem,) = load_problems(path)
    assert problem.startswith(f"{path}: line 3, column 1: ") and "'doors' is given twice" in problem


def test_an_unquoted_time_gets_a_hint(tmp_path: Path) -> None:
    path = write(tmp_path, "site: {id: hq, timezone: UTC}\ndoors:\n  - id: a\n    schedule:\n"
                           "      - {days: [mon], start: 07:00, end: 19:00, state: locked}\n")
    (problem,) = load_problems(path)
    assert problem.startswith(f"{path}: doors[0].schedule[0].end: ")
    assert "the number 1140" in problem and "quote it" in problem


def test_bad_json_names_the_line(tmp_path: Path) -> None:
    path = write(tmp_path, '{"site": {"id": "hq",\n "timezone": "UTC",}}', name="site.json")
    (problem,) = load_problems(path)
    assert problem.startswith(f"{path}: line 2, column ") and "not valid JSON" in problem


@pytest.mark.parametrize(
    ("text", "fragment"),
    [("", "nothing (null)"), ("- a\n- b\n", "a list"), ("just words", "the string")],
)
def test_a_file_that_is_not_a_mapping(tmp_path: Path, text: str, fragment: str) -> None:
    (problem,) = load_problems(write(tmp_path, text))
    assert "expected a mapping with keys site, doors, users, trust" in problem
    assert fragment in problem


def test_missing_and_binary_files(tmp_path: Path) -> None:
    (problem,) = load_problems(tmp_path / "nope.yaml")
    assert problem.startswith(f"{tmp_path / 'nope.yaml'}: cannot read")
    binary = tmp_path / "site.yaml"
    binary.write_bytes(b"\xff\xfe\x00site")
    (problem,) = load_problems(binary)
    assert "not UTF-8" in problem


def test_a_key_file_is_found_next_to_the_site_file(tmp_path: Path) -> None:
    (tmp_path / "bridge.pem").write_text(p256_pem())
    doc = edited(trust={"bridges": [{"id": "b", "public_key_file": "bridge.pem"}]})
    path = write(tmp_path, yaml.safe_dump(doc))
    assert load_site(path, pin_key=KEY).bridges[0].id == "b"


# --- never a traceback ----------------------------------------------------------------

_scalars = st.one_of(
    st.none(), st.booleans(), st.integers(-2000, 3000), st.floats(allow_nan=True),
    st.sampled_from(["", "mon", "24:00", "07:00", "2026-12-25", "all", "two_factor", "weekly",
                     "ES256", "front", "2468", "UTC", "x" * 50]),
    st.dates(min_value=date(1, 1, 2), max_value=date(9999, 12, 30)),
)
_values = st.recursive(
    _scalars,
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(
        st.sampled_from(["id", "days", "start", "end", "state", "date", "repeat", "until",
                         "cards", "pin", "doors", "schedule", "exceptions", "trust", "bridges",
                         "public_key", "alg", "site", "timezone", "reader", "keypad"]),
        inner, max_size=4),
    max_leaves=12,
)


def _paths(doc: Any, prefix: tuple[Any, ...] = ()) -> list[tuple[Any, ...]]:
    out = [prefix]
    if isinstance(doc, dict):
        for key, value in doc.items():
            out += _paths(value, (*prefix, key))
    elif isinstance(doc, list):
        for i, value in enumerate(doc):
            out += _paths(value, (*prefix, i))
    return out


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(data=st.data())
def test_any_damage_to_a_valid_site_is_a_config_error_never_a_crash(data: st.DataObject) -> None:
    doc = copy.deepcopy(base())
    for _ in range(data.draw(st.integers(1, 3))):
        where = data.draw(st.sampled_from(_paths(doc)))
        if not where:
            doc = data.draw(_values)
            break
        parent: Any = doc
        for part in where[:-1]:
            parent = parent[part]
        parent[where[-1]] = data.draw(_values)
    try:
        site = parse_site(doc, file="s", pin_key=KEY)
    except ConfigError as error:
        assert error.problems and all(p.file == "s" for p in error.problems)
    else:
        assert site.id and site.revision
