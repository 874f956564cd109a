"""The scenario runner as testers use it: the real command, real files."""

from __future__ import annotations

import asyncio
import json
import secrets
import subprocess
import sys
from datetime import UTC, datetime
from pathlib import Path

import pytest

from passbridge.adapters.audit_sqlite import AuditUnavailable
from passbridge.cli import main
from passbridge.scenario.loader import load_scenario
from passbridge.scenario.rig import ScenarioRig
from tests.conftest import PROJECT, shared_path

PASSBRIDGE = [sys.executable, "-m", "passbridge"]


def run(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([*PASSBRIDGE, *args], capture_output=True, text=True, timeout=120)


def shared_scenarios() -> list[Path]:
    folder = shared_path("scenarios")
    return sorted(folder.glob("*.yaml"))


def test_every_shared_scenario_passes(capsys: pytest.CaptureFixture[str]) -> None:
    files = shared_scenarios()
    assert files, "no shared scenarios found"
    code = main(["scenario", "run", *map(str, files)])
    out = capsys.readouterr().out
    assert code == 0, out
    last = out.strip().splitlines()[-1]
    passed, failed = (int(part.split()[0]) for part in last.split(", "))
    assert failed == 0 and passed >= len(files)


@pytest.mark.slow
def test_every_shared_scenario_with_cards_and_codes_passes_via_osdp(
    capsys: pytest.CaptureFixture[str]
) -> None:
    """Card and pin steps through simulated OSDP readers and keypads (a pty per
    door side, the service's Control Panel, secure channel, Wiegand and the
    keypad buffer) decide exactly as the direct path does."""
    files = [f for f in shared_scenarios()
             if "card:" in f.read_text() or "pin:" in f.read_text()]
    assert files, "no shared scenarios with card or pin steps"
    code = main(["scenario", "run", "--via", "osdp", "--json", *map(str, files)])
    body = json.loads(capsys.readouterr().out)
    assert code == 0, body
    steps = [s for sc in body["scenarios"] for s in sc["steps"]]
    wired = [s for s in steps if s["action"] in ("card", "pin")]
    assert len(wired) >= 20 and all(s["ok"] is not False for s in steps)


def test_project_scenarios_pass(capsys: pytest.CaptureFixture[str]) -> None:
    """passbridge's own scenarios: every reason each radio path can reach."""
    files = sorted((PROJECT / "tests" / "scenarios").glob("*.yaml"))
    assert files
    code = main(["scenario", "run", *map(str, files)])
    out = capsys.readouterr().out
    assert code == 0, out
    assert out.strip().splitlines()[-1].endswith(", 0 failed")


@pytest.mark.slow
def test_invalid_shared_scenarios_exit_2() -> None:
    for path in sorted(shared_path("scenarios", "invalid").glob("*.yaml")):
        result = run("scenario", "run", str(path))
        assert result.returncode == 2, result.stdout + result.stderr
        assert str(path) in result.stderr
        assert "Traceback" not in result.stderr


SCENARIO = """
name: tiny
site: {id: hq, timezone: Europe/Berlin}
doors:
  - id: front
    reader: true
    keypad: true
    schedule:
      - {days: [mon, tue, wed, thu, fri, sat, sun], start: "00:00", end: "24:00", state: two_factor}
users:
  - {id: alice, cards: ["10001"], pin: "2468", doors: [front]}
steps:
  - at: 2026-03-29T01:59:55
    card: {number: "10001", door: front}
    expect: {result: pending, reason: pin_required, user: alice, state: two_factor}
  - after: 10s
    pin: {code: "2468", door: front}
    expect: granted
  - after: 1s
    pin: {code: "2468", door: front}
    expect: {result: granted}
"""


@pytest.mark.slow
def test_lines_json_and_exit_1_on_a_failed_expectation(tmp_path: Path) -> None:
    path = tmp_path / "tiny.yaml"
    path.write_text(SCENARIO)
    text = run("scenario", "run", str(path))
    assert text.returncode == 1
    lines = text.stdout.strip().splitlines()
    assert lines[-1] == "2 passed, 1 failed"
    assert "2468" not in text.stdout  # PINs never printed
    assert "FAILED" in lines[-2] and "pin_without_card" in lines[-2]
    # DST: 02:00 local does not exist on 2026-03-29 in Berlin; 10 s after 01:59:55 is 03:00:05
    assert "2026-03-29T03:00:05+02:00" in text.stdout

    as_json = run("scenario", "run", "--json", str(path))
    assert as_json.returncode == 1
    body = json.loads(as_json.stdout)
    (scenario,) = body["scenarios"]
    assert scenario["name"] == "tiny" and scenario["passed"] is False
    first, second, third = scenario["steps"]
    assert set(first) >= {
        "index",
        "at",
        "action",
        "result",
        "reason",
        "user",
        "state",
        "expected",
        "ok",
    }
    assert first["at"] == "2026-03-29T01:59:55+01:00"
    assert (first["action"], first["result"], first["user"], first["ok"]) == (
        "card",
        "pending",
        "alice",
        True,
    )
    assert second["expected"] == {"result": "granted"} and second["ok"] is True
    assert (third["reason"], third["ok"]) == ("pin_without_card", False)


@pytest.mark.parametrize(
    ("mutation", "place"),
    [
        (
            ('card: {number: "10001", door: front}', 'card: {number: "10001", door: back}'),
            "steps[0].card.door",
        ),
        (("expect: granted", "expect: grantd"), "steps[1].expect.result"),
        (("after: 10s", "after: soon"), "steps[1].after"),
        (("    pin: {code:", "    pim: {code:"), "steps[1].pim"),
        (("at: 2026-03-29T01:59:55", "at: 2026-03-29T01:59:55\n    after: 1s"), "steps[0]"),
        (
            ("state: two_factor}\nusers", "state: two_factor, extra: 1}\nusers"),
            "doors[0].schedule[0].extra",
        ),
    ],
)
@pytest.mark.slow
def test_bad_files_exit_2_naming_the_place(
    tmp_path: Path, mutation: tuple[str, str], place: str
) -> None:
    old, new = mutation
    assert old in SCENARIO
    path = tmp_path / "bad.yaml"
    path.write_text(SCENARIO.replace(old, new, 1))
    result = run("scenario", "run", str(path))
    assert result.returncode == 2
    assert f"{path}: {place}" in result.stderr, result.stderr
    assert "Traceback" not in result.stderr


@pytest.mark.slow
def test_time_never_goes_backwards(tmp_path: Path) -> None:
    path = tmp_path / "back.yaml"
    path.write_text(SCENARIO.replace("after: 10s", "at: 2026-03-29T01:00:00"))
    result = run("scenario", "run", str(path))
    assert result.returncode == 2 and "steps[1].at" in result.stderr


@pytest.mark.slow
def test_unreadable_and_unparsable_files(tmp_path: Path) -> None:
    missing = run("scenario", "run", str(tmp_path / "nope.yaml"))
    assert missing.returncode == 2 and "nope.yaml" in missing.stderr
    broken = tmp_path / "broken.yaml"
    broken.write_text("steps: [\n  - {at: \n")
    result = run("scenario", "run", str(broken))
    assert result.returncode == 2 and "broken.yaml" in result.stderr
    assert "Traceback" not in result.stderr


@pytest.mark.slow
def test_state_and_check_commands(tmp_path: Path) -> None:
    path = tmp_path / "site.yaml"
    path.write_text(SCENARIO.split("steps:")[0].replace("name: tiny\n", ""))
    state = run("state", "--site", str(path), "--door", "front", "--at", "2026-11-30T09:00")
    assert state.returncode == 0
    assert "two_factor (set by schedule:0)" in state.stdout
    assert run("check", "--site", str(path)).returncode == 0
    bad = tmp_path / "bad-site.yaml"
    bad.write_text(
        SCENARIO.split("steps:")[0]
        .replace("name: tiny\n", "")
        .replace("keypad: true", "keypad: false")
    )
    checked = run("check", "--site", str(bad))
    assert checked.returncode == 2 and "doors[0]" in checked.stderr and "keypad" in checked.stderr


@pytest.mark.slow
def test_key_commands_fail_cleanly_on_bad_paths(tmp_path: Path) -> None:
    not_a_db = tmp_path / "plain.txt"
    not_a_db.write_text("hello, not sqlite\n" * 100)
    for db in (str(not_a_db), "/proc/no-such-folder/k.db"):
        result = run("phone", "list", "--db", db)
        assert result.returncode == 2 and "Traceback" not in result.stderr
        assert result.stderr.startswith("error: ") and "key store" in result.stderr


MALFORMED_STEPS = [
    ("  - {at: 5, card: {number: '1', door: front}}", "steps[0].at"),
    ("  - {card: null}", "steps[0].card"),
    ("  - {configure: {door: front, override: two_factor}}", "steps[0].configure.minutes"),
    ("  - {configure: {lockdown: maybe}}", "steps[0].configure.lockdown"),
    ("  - {nearby: {phone: p, door: front, rssi: loud}}", "steps[0].nearby.rssi"),
    ("  - {remote: {user: 7, door: front}}", "steps[0].remote.user"),
    ("  - {card: {number: '1', door: [front]}}", "steps[0].card.door"),
    ("  - 42", "steps[0]"),
    ("  - {after: 99999999d, card: {number: '1', door: front}}", "steps[0].after"),
    ("  - {pin: {code: '12ab', door: front}}", "steps[0].pin.code"),
    ("  - {nfc: {phone: p, door: front}, expect: {phone_status: 101}}",
     "steps[0].expect.phone_status"),
    ("  - {nfc: {phone: p, door: front}, expect: {phone_status: '01 01'}}",
     "steps[0].expect.phone_status"),
    ("  - {card: {number: '1', door: front}, expect: {phone_status: '0101'}}",
     "steps[0].expect.phone_status"),
]


@pytest.mark.parametrize(("step", "place"), MALFORMED_STEPS)
@pytest.mark.slow
def test_malformed_steps_are_placed_errors(tmp_path: Path, step: str, place: str) -> None:
    path = tmp_path / "fz.yaml"
    path.write_text(
        "site: {id: hq, timezone: UTC}\n"
        "doors: [{id: front, reader: true, keypad: true}]\n"
        "users: [{id: alice, cards: ['1'], pin: '2468', phones: [p], doors: all}]\n"
        f"steps:\n{step}\n"
    )
    result = run("scenario", "run", str(path))
    assert result.returncode == 2 and "Traceback" not in result.stderr
    assert f"{path}: {place}:" in result.stderr, result.stderr


@pytest.mark.slow
def test_nfc_steps_show_the_status_the_phone_received() -> None:
    """Lines and JSON carry ``phone_status`` for nfc steps only (docs/decisions.md)."""
    path = PROJECT / "tests" / "scenarios" / "nfc-door-status.yaml"
    result = run("scenario", "run", "--json", str(path))
    assert result.returncode == 0, result.stdout + result.stderr
    steps = json.loads(result.stdout)["scenarios"][0]["steps"]
    shown = [(s["action"], s["reason"], s.get("phone_status", "absent")) for s in steps]
    assert shown == [
        ("nfc", "access_granted", "0101"),
        ("nfc", "no_access", "0025"),
        ("configure", None, "absent"),
        ("nfc", "door_locked", "0025"),
        ("nfc", "pin_required", "0100"),
        ("pin", "two_factor_complete", "absent"),
        ("nfc", "unknown_credential", None),
    ]
    lines = run("scenario", "run", str(path)).stdout.splitlines()
    assert any("door_locked" in line and "phone=0025" in line for line in lines)
    assert any("unknown_credential" in line and "phone=nothing" in line for line in lines)


async def test_a_scenario_serves_on_loopback_and_closes_every_part_even_on_error(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Issue 9: the rig serves the real app with aiohttp's public runner on
    127.0.0.1 (no test harness), and ``close`` frees the port, the audit log
    and the temporary folder even when a part before them fails to close."""
    path = shared_path("scenarios", "05-nearby-and-remote-bypass.yaml")
    scenario = load_scenario(path, pin_key=secrets.token_bytes(32))
    step = next(s for s in scenario.steps if s.action == "remote")
    start = step.at or scenario.steps[0].at or datetime.now(UTC)
    rig = await ScenarioRig.start(scenario, pin_key=secrets.token_bytes(32), start=start)
    outcome = await rig.perform(step)
    assert outcome.error is None and outcome.result is not None, outcome
    url, folder = rig._base_url, Path(rig._folder.name)
    assert url.startswith("http://127.0.0.1:")
    host, port = url.removeprefix("http://").split(":")
    assert folder.exists()

    async def broken_close() -> None:
        raise RuntimeError("radio would not stop")

    monkeypatch.setattr(rig.radios, "close", broken_close)
    with pytest.raises(RuntimeError, match="radio would not stop"):
        await rig.close()
    assert not folder.exists()
    with pytest.raises(OSError):
        await asyncio.open_connection(host, int(port))
    with pytest.raises(AuditUnavailable):
        await rig.services.audit.store.record_change("probe", {})
