"""The audit log's hash chain: written with the records, checked by
``passbridge audit verify``, anchored through ``GET /v1/audit/head``."""

from __future__ import annotations

import hashlib
import json
import sqlite3
import subprocess
import sys
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
from aiohttp import web
from aiohttp.test_utils import TestClient, TestServer

from passbridge.adapters.audit_sqlite import AuditLog, verify_database
from passbridge.adapters.keystore import MemoryKeyStore
from passbridge.cli import main
from passbridge.clock import ManualClock
from passbridge.service.app import create_app
from passbridge.service.runtime import assemble
from passbridge.service.storage import SqliteEventStore
from tests.adapters.test_audit import AT, decision, writer_held
from tests.service_support import MONDAY_10, Keys, admin_token, make_rig, make_site, remote_token

# The table as it was before the hash chain (what a log written by an older
# passbridge looks like).
OLD_SCHEMA = """
CREATE TABLE events (
    seq INTEGER PRIMARY KEY AUTOINCREMENT, kind TEXT NOT NULL, at TEXT NOT NULL,
    decision_id TEXT UNIQUE, result TEXT, reason TEXT, door TEXT, side TEXT, user TEXT,
    credential TEXT, factor TEXT, state TEXT, state_source TEXT, revision TEXT,
    unlock_seconds INTEGER, detail TEXT, payload TEXT
);
"""


def documented_chain(db: Path) -> list[tuple[int, str, str]]:
    """(seq, stored hash, hash recomputed from the definition in docs/decisions.md),
    written apart from the implementation: canonical JSON of every column but
    ``hash``, sorted keys, no spaces, UTF-8; SHA-256 over the previous hash's
    32 bytes and those bytes; 32 zero bytes before the first record."""
    conn = sqlite3.connect(f"file:{db}?mode=ro", uri=True)
    conn.row_factory = sqlite3.Row
    previous = bytes(32)
    out = []
    for row in conn.execute("SELECT * FROM events ORDER BY seq"):
        record = {key: row[key] for key in row.keys() if key != "hash"}
        data = json.dumps(record, sort_keys=True, separators=(",", ":"), ensure_ascii=False)
        previous = hashlib.sha256(previous + data.encode("utf-8")).digest()
        out.append((row["seq"], row["hash"], previous.hex()))
    conn.close()
    return out


def fill(db: Path, decisions: int = 8) -> None:
    with AuditLog(db, clock=ManualClock(AT)) as audit:
        for i in range(decisions):
            audit.record_sync(decision(i))
            if i == 3:
                audit.append_change("override", {"door": "front", "by": "zoë"}).result(10)


def sql(db: Path, *statements: str) -> None:
    conn = sqlite3.connect(db)
    for statement in statements:
        conn.execute(statement)
    conn.commit()
    conn.close()


def verify(db: Path, capsys: pytest.CaptureFixture[str]) -> tuple[int, str, str]:
    code = main(["audit", "verify", "--db", str(db)])
    out, err = capsys.readouterr()
    return code, out, err


# --- the chain as written ------------------------------------------------------------


def test_group_committed_batches_and_a_restart_keep_one_chain(tmp_path: Path) -> None:
    db = tmp_path / "pb.sqlite3"
    with AuditLog(db, clock=ManualClock(AT)) as audit:
        # One batch of more records than one INSERT takes, changes among them.
        with writer_held(audit):
            futures = [audit.append(decision(i)) for i in range(1, 700)]
            futures.append(audit.append_change("lockdown", {"active": True, "note": "naïve ✓"}))
            futures += [audit.append(decision(i)) for i in range(700, 720)]
        seqs = [f.result(10) for f in futures]
        assert seqs == list(range(2, 722)) and audit.stats.commits == 2
        assert audit.head().seq == 721
    with AuditLog(db, clock=ManualClock(AT)) as again:  # continues from the stored head
        assert again.record_sync(decision(9999)) == 722
        head = again.head()
    chain = documented_chain(db)
    assert [seq for seq, _, _ in chain] == list(range(1, 723))
    assert all(stored == recomputed for _, stored, recomputed in chain)
    assert (head.seq, head.hash) == (722, chain[-1][1])
    report = verify_database(db)
    assert report.ok and report.records == 722 and report.head == head


def test_an_empty_log_has_the_genesis_head(tmp_path: Path) -> None:
    with AuditLog(tmp_path / "pb.sqlite3") as audit:
        head = audit.head()
    assert (head.seq, head.hash) == (0, "0" * 64)
    assert verify_database(tmp_path / "pb.sqlite3").ok


def test_a_log_from_before_the_chain_is_hashed_on_first_open(tmp_path: Path) -> None:
    db = tmp_path / "old.sqlite3"
    conn = sqlite3.connect(db)
    conn.executescript(OLD_SCHEMA)
    for i in range(5):
        conn.execute("INSERT INTO events (kind, at, decision_id, result, reason, door, "
                     "unlock_seconds) VALUES ('decision', ?, ?, 'granted', 'access_granted', "
                     "'front', 5)", (AT.isoformat(), f"old-{i}"))
    conn.execute("INSERT INTO events (kind, at, payload) VALUES ('override', ?, '{\"a\":1}')",
                 (AT.isoformat(),))
    conn.commit()
    conn.close()
    with AuditLog(db, clock=ManualClock(AT)) as audit:
        assert audit.record_sync(decision(1)) == 7
    chain = documented_chain(db)
    assert len(chain) == 7 and all(stored == again for _, stored, again in chain)
    assert verify_database(db).ok


# --- audit verify names what was done ------------------------------------------------


def test_verify_says_ok_with_the_head(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    db = tmp_path / "pb.sqlite3"
    fill(db)
    code, out, _ = verify(db, capsys)
    assert code == 0
    assert out.startswith(f"ok: {db}: 9 records; head seq 9 hash {documented_chain(db)[-1][1]}")


@pytest.mark.parametrize(("tamper", "named"), [
    (["UPDATE events SET reason = 'access_granted', result = 'granted' WHERE seq = 5"],
     "record 5 does not match its hash"),
    (["UPDATE events SET payload = '{\"by\":\"mallory\",\"door\":\"front\"}' WHERE seq = 5"],
     "record 5 does not match its hash"),
    (["UPDATE events SET hash = '" + "ab" * 32 + "' WHERE seq = 7"],
     "record 7 does not match its hash"),
    (["DELETE FROM events WHERE seq = 6"], "record 6 is missing (removed)"),
    (["DELETE FROM events WHERE seq = 1"], "record 1 is missing (removed)"),
    (["DELETE FROM events WHERE seq >= 8"], "records 8 to 9 are missing"),
    (["UPDATE events SET hash = NULL WHERE seq = 3"], "record 3 has no hash"),
    # Two records swapped: every column but seq exchanged, hashes included.
    (["UPDATE events SET seq = -4 WHERE seq = 4", "UPDATE events SET seq = 4 WHERE seq = 5",
      "UPDATE events SET seq = 5 WHERE seq = -4"], "record 4 does not match its hash"),
])
def test_verify_names_the_first_record_changed_removed_or_moved(
        tmp_path: Path, capsys: pytest.CaptureFixture[str], tamper: list[str],
        named: str) -> None:
    db = tmp_path / "pb.sqlite3"
    fill(db)
    decisions_before = documented_chain(db)
    sql(db, *tamper)
    code, out, err = verify(db, capsys)
    assert code == 1, out + err
    assert out.startswith(f"broken: {db}: {named}") and out.count("\n") == 1
    assert decisions_before  # the log was whole before the change
    first_bad = int(named.split()[1])
    assert f"({first_bad - 1} records before it verify)" in out


def test_a_decision_forged_by_hand_is_named(tmp_path: Path,
                                            capsys: pytest.CaptureFixture[str]) -> None:
    db = tmp_path / "pb.sqlite3"
    fill(db, 3)
    sql(db, "INSERT INTO events (kind, at, decision_id, result, reason, door) VALUES "
            "('decision', '2027-03-01T09:00:00+00:00', 'forged', 'granted', 'access_granted', "
            "'front')")
    fill(db, 1)  # the service writes on after it
    code, out, _ = verify(db, capsys)
    assert code == 1 and "record 4 has no hash" in out


def rehash(db: Path) -> None:
    """What someone who can write the file does to hide a change: every hash
    recomputed from the definition."""
    conn = sqlite3.connect(db)
    for seq, _, recomputed in documented_chain(db):
        conn.execute("UPDATE events SET hash = ? WHERE seq = ?", (recomputed, seq))
    conn.commit()
    conn.close()


def test_a_rewritten_log_is_caught_by_an_anchored_head(
        tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    db = tmp_path / "pb.sqlite3"
    fill(db)
    chain = documented_chain(db)
    early, head = f"4:{chain[3][1]}", f"9:{chain[8][1]}"
    code, out, _ = verify(db, capsys)
    assert code == 0
    assert main(["audit", "verify", "--db", str(db), "--anchor", early, "--anchor", head]) == 0
    capsys.readouterr()
    sql(db, "UPDATE events SET user = 'mallory' WHERE seq = 6")
    rehash(db)
    assert verify(db, capsys)[0] == 0  # on its own the rewritten chain holds
    code = main(["audit", "verify", "--db", str(db), "--anchor", early, "--anchor", head])
    out = capsys.readouterr().out
    assert code == 1 and "record 9 is not the one anchored" in out
    sql(db, "DELETE FROM events WHERE seq > 7", "UPDATE sqlite_sequence SET seq = 7")
    code = main(["audit", "verify", "--db", str(db), "--anchor", head])
    out = capsys.readouterr().out
    assert code == 1 and "record 9 was anchored but the log ends at 7" in out
    with pytest.raises(SystemExit) as usage:
        main(["audit", "verify", "--db", str(db), "--anchor", "9:nothex"])
    assert usage.value.code == 2 and "expected SEQ:HASH" in capsys.readouterr().err


@pytest.mark.parametrize("kind", ["missing", "garbage", "no events", "no chain"])
def test_verify_an_unusable_file_is_one_line_and_exit_2(
        tmp_path: Path, capsys: pytest.CaptureFixture[str], kind: str) -> None:
    db = tmp_path / "x.sqlite3"
    if kind == "garbage":
        db.write_bytes(b"not a database at all" * 200)
    elif kind == "no events":
        sql(db, "CREATE TABLE other (x)")
    elif kind == "no chain":
        sql(db, OLD_SCHEMA)
    code, out, err = verify(db, capsys)
    assert code == 2 and out == ""
    assert err.startswith(f"error: {db}") and err.count("\n") == 1
    expected = {"missing": "no such file", "garbage": "not a database",
                "no events": "no events table", "no chain": "no hash chain yet"}[kind]
    assert expected in err


@pytest.mark.slow
def test_verify_as_a_process(tmp_path: Path) -> None:
    db = tmp_path / "pb.sqlite3"
    fill(db)
    run = [sys.executable, "-m", "passbridge", "audit", "verify", "--db", str(db)]
    ok = subprocess.run(run, capture_output=True, text=True, timeout=60)
    assert ok.returncode == 0 and ok.stdout.startswith("ok:"), ok.stderr
    sql(db, "UPDATE events SET door = 'back' WHERE seq = 2")
    broken = subprocess.run(run, capture_output=True, text=True, timeout=60)
    assert broken.returncode == 1 and "record 2 does not match" in broken.stdout
    (tmp_path / "junk").write_text("junk")
    junk = subprocess.run([*run[:-1], str(tmp_path / "junk")], capture_output=True, text=True,
                          timeout=60)
    assert junk.returncode == 2 and "Traceback" not in junk.stderr
    assert junk.stderr.count("\n") == 1


# --- GET /v1/audit/head ----------------------------------------------------------------


@pytest.fixture
async def sqlite_service(tmp_path: Path) -> AsyncIterator[tuple[Keys, ManualClock, Path,
                                                                  TestClient[Any, Any]]]:
    keys, clock = Keys(), ManualClock(MONDAY_10)
    keystore = MemoryKeyStore(clock=clock)
    db = tmp_path / "pb.sqlite3"
    services = assemble(make_site(keys, keystore.pin_key()), clock=clock, keystore=keystore,
                        store=SqliteEventStore(AuditLog(db, clock=clock)))
    async with TestClient(TestServer(create_app(services))) as client:
        yield keys, clock, db, client


def auth(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


async def test_head_is_the_newest_record_for_site_admins_only(
        sqlite_service: tuple[Keys, ManualClock, Path, TestClient[Any, Any]]) -> None:
    keys, clock, db, client = sqlite_service
    empty = await client.get("/v1/audit/head", headers=auth(admin_token(keys, clock)))
    assert empty.status == 200 and await empty.json() == {"seq": 0, "hash": "0" * 64}
    for user in ("carol", "bob"):
        unlock = await client.post("/v1/doors/front/remote-unlock",
                                   headers=auth(remote_token(keys, clock, "front", user)))
        assert unlock.status == 200
    resp = await client.get("/v1/audit/head", headers=auth(admin_token(keys, clock)))
    assert resp.status == 200
    body = await resp.json()
    last = documented_chain(db)[-1]
    assert body == {"seq": last[0], "hash": last[1]} and last[1] == last[2]
    assert body["seq"] == 2

    anonymous = await client.get("/v1/audit/head")
    assert anonymous.status == 401
    assert (await anonymous.json())["error"]["code"] == "missing_credentials"
    not_admin = await client.get("/v1/audit/head",
                                 headers=auth(admin_token(keys, clock, user="bob")))
    assert not_admin.status == 403
    no_role = await client.get("/v1/audit/head",
                               headers=auth(admin_token(keys, clock, role="user")))
    assert no_role.status == 403


async def test_head_without_a_durable_log_is_404() -> None:
    rig = make_rig()
    app: web.Application = create_app(rig.services)
    async with TestClient(TestServer(app)) as client:
        resp = await client.get("/v1/audit/head", headers=auth(admin_token(rig.keys, rig.clock)))
        assert resp.status == 404
