"""Issue 8 item 9, the contract's details: backend keys found by ``iss``,
remote-unlock bodies, ids, ids as file names, impossible dates, override
minutes."""

from __future__ import annotations

import copy
from datetime import datetime
from pathlib import Path
from typing import Any

import jwt
import pytest

from passbridge.adapters.keystore import MemoryKeyStore
from passbridge.cli import main
from passbridge.core.model import DoorState
from passbridge.core.tokens import (
    ReplayCache,
    TokenRejection,
    VerifiedBackendRequest,
    new_jti,
    public_key_to_pem,
    verify_backend_request,
)
from passbridge.errors import ConfigError
from passbridge.ids import file_for_id, id_problem
from passbridge.sim.air import phone_key_path
from passbridge.site_file import parse_site
from passbridge.site_file.document import load_document
from tests.engine_helpers import Harness
from tests.service_support import (
    BACKEND,
    PIN_KEY,
    Client,
    Rig,
    _p256,
    admin_token,
    error_of,
    remote_token,
)


def _no_kid_token(r: Rig, key: Any, **claims: Any) -> str:
    now = int(r.clock.now().timestamp())
    body = {"iss": BACKEND, "aud": "hq", "sub": "alice", "door": "side", "iat": now,
            "exp": now + 30, "jti": new_jti(), **claims}
    token = jwt.encode(body, key, algorithm="ES256")
    assert "kid" not in jwt.get_unverified_header(token)
    return token


# --- a backend JWT without kid resolves its key by iss -----------------------

async def test_backend_token_without_kid_is_found_by_iss(rig: tuple[Rig, Client]) -> None:
    r, client = rig
    token = _no_kid_token(r, r.keys.backend)
    resp = await client.post("/v1/doors/side/remote-unlock",
                             headers={"Authorization": f"Bearer {token}"})
    assert resp.status == 200, await resp.text()
    assert (await resp.json())["result"] == "granted"


def test_without_kid_the_iss_key_must_have_signed(rig: tuple[Rig, Client]) -> None:
    r, _ = rig
    keys = r.services.backends

    def verify(token: str) -> VerifiedBackendRequest | TokenRejection:
        return verify_backend_request(token, keys, site_id="hq", clock=r.clock,
                                      replay_cache=ReplayCache(), door="side")

    assert isinstance(verify(_no_kid_token(r, r.keys.backend)), VerifiedBackendRequest)
    other_key = verify(_no_kid_token(r, _p256()))
    assert isinstance(other_key, TokenRejection) and other_key.detail == "bad signature"
    unknown_iss = verify(_no_kid_token(r, r.keys.backend, iss="someone-else"))
    assert isinstance(unknown_iss, TokenRejection) and unknown_iss.detail == "unknown key"


# --- remote-unlock bodies ----------------------------------------------------

@pytest.mark.parametrize("body", [b"", b"  \n", b"{}", b'{"note": "from the app"}'])
async def test_remote_unlock_body_empty_or_object(rig: tuple[Rig, Client], body: bytes) -> None:
    r, client = rig
    resp = await client.post("/v1/doors/side/remote-unlock", data=body, headers={
        "Authorization": f"Bearer {remote_token(r.keys, r.clock, 'side')}"})
    assert resp.status == 200 and (await resp.json())["result"] == "granted"


@pytest.mark.parametrize("body", [b"junk", b"[1, 2]", b'"text"', b"{", b"\xff\xfe"])
async def test_remote_unlock_junk_body_is_400(rig: tuple[Rig, Client], body: bytes) -> None:
    r, client = rig
    token = remote_token(r.keys, r.clock, "side")
    resp = await client.post("/v1/doors/side/remote-unlock", data=body,
                             headers={"Authorization": f"Bearer {token}"})
    assert await error_of(resp, 400) == "malformed_body"
    assert await r.services.audit.page(0, 10) == []
    # The refused body did not use up the backend's single-use token.
    again = await client.post("/v1/doors/side/remote-unlock",
                              headers={"Authorization": f"Bearer {token}"})
    assert (await again.json())["result"] == "granted"


async def test_remote_unlock_oversized_body_is_413(rig: tuple[Rig, Client]) -> None:
    r, client = rig
    resp = await client.post("/v1/doors/side/remote-unlock", data=b"{" + b" " * 70_000 + b"}",
                             headers={"Authorization":
                                      f"Bearer {remote_token(r.keys, r.clock, 'side')}"})
    assert await error_of(resp, 413) == "request_too_large"
    assert await r.services.audit.page(0, 10) == []


# --- ids ---------------------------------------------------------------------

@pytest.mark.parametrize("value", ["front", "B2", "a.b_c-d~e", "Küche", "门", "٣", "x" * 64])
def test_ids_that_follow_the_rule(value: str) -> None:
    assert id_problem(value) is None


@pytest.mark.parametrize("value", ["", "B2/front", "..", ".hidden", "-x", "_x", "a b", "a%2F",
                                   "x" * 65, "a\nb", "a?b", "a\\b", "²", 7, None])
def test_ids_that_break_it(value: object) -> None:
    assert id_problem(value) is not None


SITE_WITH_ALL_IDS: dict[str, Any] = {
    "site": {"id": "hq", "timezone": "Europe/Berlin"},
    "doors": [{"id": "front", "keypad": True,
               "schedule": [{"id": "day", "days": ["mon"], "state": "unlocked"}],
               "exceptions": [{"id": "xmas", "date": "2026-12-25", "state": "locked"}]}],
    "users": [{"id": "alice", "phones": ["alice-phone"], "doors": ["front"]}],
}


@pytest.mark.parametrize("place", [
    "site.id", "doors[0].id", "doors[0].schedule[0].id", "doors[0].exceptions[0].id",
    "users[0].id", "users[0].phones[0]",
])
def test_a_bad_id_is_refused_at_load_with_its_place(place: str) -> None:
    doc = copy.deepcopy(SITE_WITH_ALL_IDS)
    holder: Any = doc
    parts = place.replace("]", "").replace("[", ".").split(".")
    for part in parts[:-1]:
        holder = holder[int(part)] if part.isdigit() else holder[part]
    last = parts[-1]
    if last.isdigit():
        holder[int(last)] = "B2/front"
    else:
        holder[last] = "B2/front"
    with pytest.raises(ConfigError) as caught:
        parse_site(doc, file="site.yaml", pin_key=PIN_KEY)
    problems = [(p.path, "'/'" in p.message) for p in caught.value.problems]
    assert problems[0] == (place, True)


def test_bad_trust_ids_are_placed_errors() -> None:
    pem = public_key_to_pem(_p256())
    doc = {**SITE_WITH_ALL_IDS, "trust": {
        "bridges": [{"id": "bridge/1", "public_key": pem}],
        "backends": [{"id": "../backend", "public_key": pem}]}}
    with pytest.raises(ConfigError) as caught:
        parse_site(doc, file="site.yaml", pin_key=PIN_KEY)
    assert {p.path for p in caught.value.problems} == {"trust.bridges[0].id",
                                                       "trust.backends[0].id"}


def refused_scenario(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], doors: str, step: str
) -> str:
    """Run a one-step scenario that must not load (exit 2); its stderr,
    each line led by the file's name."""
    path = tmp_path / "s.yaml"
    path.write_text("name: refused\nsite: {id: hq, timezone: Europe/Berlin}\n"
                    f"doors: {doors}\nusers: [{{id: a, cards: ['1'], doors: all}}]\n"
                    f"steps:\n  - {step}\n")
    assert main(["scenario", "run", str(path)]) == 2
    err = capsys.readouterr().err
    assert "Traceback" not in err
    return err.replace(str(path), "FILE")


def test_a_scenario_with_a_bad_door_id_exits_2_with_its_place(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    err = refused_scenario(tmp_path, capsys, "[{id: B2/front}]",
                           "{card: {number: '1', door: B2/front}}")
    assert "FILE: doors[0].id" in err


def test_a_scenario_phone_id_is_checked(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    err = refused_scenario(tmp_path, capsys, "[{id: front}]", "{nfc: {phone: ../x, door: front}}")
    assert "FILE: steps[0].nfc.phone" in err


# --- ids never become paths outside their folder ------------------------------

def test_keys_backend_id_cannot_leave_the_out_folder(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    out = tmp_path / "keys"
    for bad in ("../x", "/tmp/x", "a/b", ".x"):
        assert main(["keys", "backend", "--out", str(out), "--id", bad]) == 2
        assert "--id" in capsys.readouterr().err
    assert not any(tmp_path.rglob("*.pem"))
    assert main(["keys", "backend", "--out", str(out), "--id", "app-backend"]) == 0
    assert sorted(p.name for p in out.iterdir()) == ["app-backend.key.pem", "app-backend.pub.pem"]


def test_phone_ids_stay_inside_sim_phones(tmp_path: Path) -> None:
    folder = tmp_path / "sim-phones"
    assert phone_key_path(folder, "alice-phone") == folder / "alice-phone.pem"
    for bad in ("../x", "a/../../b", "/etc/x", ".."):
        with pytest.raises(ValueError, match="phone id"):
            phone_key_path(folder, bad)
    with pytest.raises(ValueError):
        file_for_id(folder, "x/y", ".pem", what="id")


def test_enrolment_and_its_cli_refuse_ids_that_are_not_ids(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    with pytest.raises(ValueError, match="credential id"):
        MemoryKeyStore().enroll_phone("../x", "alice", b"\x04" + b"\x00" * 64)
    code = main(["phone", "enroll", "--db", str(tmp_path / "k.db"), "--phone", "../x",
                 "--user", "alice", "--new-key-out", str(tmp_path / "p.pem")])
    assert code == 2 and "credential id" in capsys.readouterr().err


# --- impossible dates --------------------------------------------------------

IMPOSSIBLE = """
site: {id: hq, timezone: Europe/Berlin}
doors:
  - id: front
    exceptions:
      - {id: leap, date: 2028-02-29, state: locked, repeat: yearly, until: 2030-12-31}
      - {id: never, date: 2027-02-29, state: locked}
      - {id: late, date: 2026-12-24, state: locked, until: 2026-13-01}
"""


def test_impossible_dates_in_a_site_file_are_placed_errors(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    path = tmp_path / "site.yaml"
    path.write_text(IMPOSSIBLE)
    assert main(["check", "--site", str(path)]) == 2
    err = capsys.readouterr().err
    assert "Traceback" not in err
    assert f"{path}: doors[0].exceptions[1].date" in err and "2027-02-29" in err
    assert f"{path}: doors[0].exceptions[2].until" in err
    assert "exceptions[0]" not in err  # 2028 is a leap year


def test_dates_stay_text_until_checked(tmp_path: Path) -> None:
    path = tmp_path / "d.yaml"
    path.write_text("a: 2027-02-29\nb: !!timestamp 2027-02-30\nc: 2026-11-30T09:00:00\n")
    data, _ = load_document(path)
    assert data == {"a": "2027-02-29", "b": "2027-02-30", "c": "2026-11-30T09:00:00"}


def test_an_impossible_step_time_in_a_scenario_is_a_placed_error(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    err = refused_scenario(tmp_path, capsys, "[{id: front}]",
                           "{at: 2027-02-29T09:00:00, card: {number: '1', door: front}}")
    assert "FILE: steps[0].at" in err


# --- override minutes ----------------------------------------------------------

@pytest.mark.parametrize(("minutes", "status"), [
    (1.5, 400), ("5", 400), (True, 400), (None, 400), (0, 422), (-1, 422), (10_081, 422),
])
async def test_override_minutes_must_be_whole_and_in_range(
    rig: tuple[Rig, Client], minutes: object, status: int
) -> None:
    r, client = rig
    resp = await client.put("/v1/doors/front/override",
                            json={"state": "locked", "minutes": minutes},
                            headers={"Authorization": f"Bearer {admin_token(r.keys, r.clock)}"})
    await error_of(resp, status)
    assert r.services.core.override("front") is None


@pytest.mark.parametrize("minutes", [1, 10_080])
async def test_override_minutes_at_the_bounds(rig: tuple[Rig, Client], minutes: int) -> None:
    r, client = rig
    resp = await client.put("/v1/doors/front/override",
                            json={"state": "locked", "minutes": minutes},
                            headers={"Authorization": f"Bearer {admin_token(r.keys, r.clock)}"})
    assert resp.status == 200 and (await resp.json())["state"] == "locked"


def test_the_core_refuses_fractional_minutes() -> None:
    h = Harness("site: {id: hq, timezone: Europe/Berlin}\ndoors: [{id: front}]\n",
                datetime(2026, 11, 30, 9, 0))
    with pytest.raises(ConfigError) as caught:
        h.core.set_override("front", DoorState.LOCKED, 0.5, h.clock.moment())  # type: ignore[arg-type]
    assert caught.value.problems[0].path == "doors/front/override.minutes"


@pytest.mark.parametrize("minutes", ["1.5", "0", "10081", "'5'"])
def test_scenario_override_minutes_are_placed_errors(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], minutes: str
) -> None:
    err = refused_scenario(tmp_path, capsys, "[{id: front}]",
                           f"{{configure: {{door: front, override: locked, minutes: {minutes}}}}}")
    assert "FILE: steps[0].configure.minutes" in err
