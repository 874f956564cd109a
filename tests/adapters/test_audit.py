"""The durable audit log: records survive, commits are grouped, close flushes, crashes keep
every record whose future completed."""

from __future__ import annotations

import asyncio
import contextlib
import os
import sqlite3
import stat
import subprocess
import sys
import textwrap
import threading
from collections.abc import Iterator
from concurrent.futures import Future
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from passbridge.adapters.audit_chain import COLUMNS
from passbridge.adapters.audit_sqlite import AuditLog, AuditUnavailable, verify_database
from passbridge.clock import ManualClock
from passbridge.core.decision import Decision, new_decision_id
from passbridge.core.model import DoorState, Factor, Reason, Side
from tests.conftest import PROJECT

AT = datetime(2027, 3, 1, 9, 0, tzinfo=UTC)


def decision(i: int = 0, reason: Reason = Reason.ACCESS_GRANTED, door: str = "front") -> Decision:
    return Decision(
        id=new_decision_id(), result=reason.result, reason=reason, door=door, side=Side.IN,
        factor=Factor.NFC, user=f"u{i}", credential=f"phone-{i}",
        state=DoorState.ACCESS_CONTROLLED, state_source="default", revision="rev1",
        at=AT + timedelta(seconds=i), unlock_seconds=5 if reason.result.value == "granted"
        else None, detail=None,
    )


@pytest.fixture
def db(tmp_path: Path) -> Path:
    return tmp_path / "passbridge.db"


def test_decisions_and_changes_survive_reopen(db: Path) -> None:
    d = decision(1)
    with AuditLog(db, clock=ManualClock(AT)) as audit:
        seq1 = audit.record_sync(d)
        seq2 = audit.append_change("override", {"door": "front", "state": "unlocked",
                                                "by": "admin"}).result()
        assert seq2 > seq1
    with AuditLog(db) as again:
        rows = again.events()
        assert [r["seq"] for r in rows] == [seq1, seq2]
        first, second = rows
        assert first["kind"] == "decision"
        assert first["decision_id"] == d.id
        assert (first["result"], first["reason"], first["door"], first["side"]) == (
            "granted", "access_granted", "front", "in")
        assert (first["user"], first["credential"], first["factor"]) == ("u1", "phone-1", "nfc")
        assert (first["state"], first["state_source"], first["revision"]) == (
            "access_controlled", "default", "rev1")
        assert first["unlock_seconds"] == 5
        assert datetime.fromisoformat(first["at"]) == d.at
        assert second == {"seq": seq2, "kind": "override", "at": AT.isoformat(),
                          "payload": {"by": "admin", "door": "front", "state": "unlocked"}}
        assert again.latest_seq() == seq2


def test_database_is_wal_full_sync_and_private(db: Path) -> None:
    with AuditLog(db):
        pass
    assert stat.S_IMODE(db.stat().st_mode) == 0o600
    conn = sqlite3.connect(db)
    assert conn.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
    conn.close()


@contextlib.contextmanager
def writer_held(audit: AuditLog) -> Iterator[None]:
    """Hold the writer right after it commits one record, until the block
    ends: everything queued meanwhile goes in the next commit."""
    release, held = threading.Event(), threading.Event()

    def hold(_rows: list[dict[str, Any]]) -> None:
        if not held.is_set():
            held.set()
            release.wait(10)

    audit.subscribe(hold)
    audit.append(decision(0)).result(10)
    assert held.wait(10)
    try:
        yield
    finally:
        release.set()


def test_group_commit_batches_records_queued_during_a_commit(db: Path) -> None:
    """Hold the writer right after one commit; everything queued meanwhile goes in ONE commit."""
    with AuditLog(db) as audit:
        futures: list[Future[int]] = []
        lock = threading.Lock()

        def submit(base: int) -> None:
            for i in range(50):
                f = audit.append(decision(base + i))
                with lock:
                    futures.append(f)

        with writer_held(audit):
            threads = [threading.Thread(target=submit, args=(k * 100,)) for k in range(8)]
            for t in threads:
                t.start()
            for t in threads:
                t.join()
            assert not any(f.done() for f in futures)  # nothing is acknowledged before its commit
        seqs = [f.result(10) for f in futures]
        assert len(set(seqs)) == 400
        assert audit.stats.records == 401
        assert audit.stats.commits == 2


def test_large_and_mixed_batches_commit_once_with_each_seq_its_own_row(db: Path) -> None:
    """A batch of more decisions than one INSERT takes, with admin changes among them:
    one commit, and every future's seq is the row that holds that record."""
    with AuditLog(db, clock=ManualClock(AT)) as audit:
        decisions = [decision(i) for i in range(1, 1201)]
        futures: list[tuple[str, Future[int]]] = []
        with writer_held(audit):
            for i, d in enumerate(decisions):
                futures.append((d.id, audit.append(d)))
                if i in (3, 600, 601, 1199):
                    futures.append((f"change-{i}", audit.append_change("lockdown", {"n": i})))
        seqs = {key: f.result(10) for key, f in futures}
        assert audit.stats.commits == 2 and audit.stats.records == 1205
        rows = {r["seq"]: r for r in audit.events(limit=1000)}
        rows.update({r["seq"]: r for r in audit.events(after_seq=max(rows), limit=1000)})
        for key, seq in seqs.items():
            row = rows[seq]
            if key.startswith("change-"):
                assert (row["kind"], row["payload"]) == ("lockdown", {"n": int(key[7:])})
            else:
                assert row["decision_id"] == key
        assert sorted(seqs.values()) == [s for s in sorted(rows) if s > 1]


def test_one_per_commit_mode_commits_each_record_alone(db: Path) -> None:
    with AuditLog(db, one_per_commit=True) as audit:
        futures = [audit.append(decision(i)) for i in range(20)]
        assert sorted(f.result(10) for f in futures) == [f.result() for f in futures]
        assert audit.stats.commits == 20


def test_close_flushes_everything_queued(db: Path) -> None:
    audit = AuditLog(db)
    futures = [audit.append(decision(i)) for i in range(300)]
    audit.close()
    assert all(f.done() and f.exception() is None for f in futures)
    with pytest.raises(AuditUnavailable):
        audit.append(decision())
    audit.close()  # idempotent
    with AuditLog(db) as again:
        assert again.latest_seq() == 300
        assert len(again.events(limit=1000)) == 300


def test_paging_and_filters(db: Path) -> None:
    with AuditLog(db, clock=ManualClock(AT)) as audit:
        for i in range(25):
            audit.append(decision(i, door="front" if i % 2 else "back"))
        audit.append_change("lockdown", {"active": True}).result(10)
        pages: list[list[int]] = []
        after = 0
        while page := audit.events(after_seq=after, limit=10):
            pages.append([r["seq"] for r in page])
            after = page[-1]["seq"]
        assert [len(p) for p in pages] == [10, 10, 6]
        flat = [s for p in pages for s in p]
        assert flat == sorted(flat) and len(set(flat)) == 26
        assert [r["kind"] for r in audit.events(kind="lockdown")] == ["lockdown"]
        assert len(audit.events(door="front", limit=100)) == 12
        assert audit.events(after_seq=audit.latest_seq()) == []


def test_subscribers_see_committed_rows_in_order(db: Path) -> None:
    seen: list[dict[str, Any]] = []
    with AuditLog(db, clock=ManualClock(AT)) as audit:
        unsubscribe = audit.subscribe(seen.extend)
        a = audit.record_sync(decision(1))
        b = audit.append_change("enrolment", {"credential": "phone-7"}).result(10)
        unsubscribe()
        audit.record_sync(decision(2))
    assert [r["seq"] for r in seen] == [a, b]
    assert seen[0]["kind"] == "decision" and seen[0]["user"] == "u1"
    assert seen[1]["payload"] == {"credential": "phone-7"}


def test_a_failing_subscriber_does_not_stop_the_log(db: Path) -> None:
    def boom(_rows: list[dict[str, Any]]) -> None:
        raise RuntimeError("listener bug")

    with AuditLog(db) as audit:
        audit.subscribe(boom)
        assert audit.record_sync(decision(1)) < audit.record_sync(decision(2))


async def test_async_record_does_not_block_the_loop(db: Path) -> None:
    with AuditLog(db, clock=ManualClock(AT)) as audit:
        seqs = await asyncio.gather(*(audit.record(decision(i)) for i in range(30)))
        assert sorted(seqs) == list(range(1, 31))
        assert await audit.record_change("override", {"door": "front"}) == 31


def test_unopenable_database_is_audit_unavailable(tmp_path: Path) -> None:
    with pytest.raises(AuditUnavailable):
        AuditLog(tmp_path / "missing-dir" / "x.db")
    junk = tmp_path / "junk.db"
    junk.write_bytes(b"this is not a database" * 100)
    with pytest.raises(AuditUnavailable):
        AuditLog(junk)
    with pytest.raises(AuditUnavailable):
        AuditLog(":memory:")


def test_bad_change_kinds_are_refused(db: Path) -> None:
    with AuditLog(db) as audit:
        for kind in ("decision", "", "Drop Table", "x" * 80):
            with pytest.raises(ValueError):
                audit.append_change(kind, {})


CRASHER = textwrap.dedent("""
    import os, sys
    from datetime import UTC, datetime
    from passbridge.adapters.audit_sqlite import AuditLog
    from passbridge.core.decision import Decision
    from passbridge.core.model import DoorState, Factor, Reason, Result, Side

    audit = AuditLog(sys.argv[1])
    at = datetime(2027, 3, 1, tzinfo=UTC)
    futures = []
    for i in range(2000):
        d = Decision(id=f"d{i:05d}", result=Result.DENIED, reason=Reason.NO_ACCESS,
                     door="front", side=Side.IN, factor=Factor.CARD, user=None,
                     credential="****1234", state=DoorState.ACCESS_CONTROLLED,
                     state_source="default", revision="r", at=at)
        futures.append(audit.append(d))
        if i == 1500:
            futures[1000].result()   # some acknowledged, many still in flight
            done = [f.result() for f in futures if f.done()]
            sys.stdout.write(" ".join(str(s) for s in done) + "\\n")
            sys.stdout.flush()
            os._exit(0)              # no close, no flush: like kill -9
""")


def test_crash_keeps_every_acknowledged_record(db: Path) -> None:
    env = dict(os.environ, PYTHONPATH=str(PROJECT))
    proc = subprocess.run([sys.executable, "-c", CRASHER, str(db)], capture_output=True,
                          text=True, timeout=60, env=env, cwd=PROJECT)
    assert proc.returncode == 0, proc.stderr
    acknowledged = {int(s) for s in proc.stdout.split()}
    assert len(acknowledged) > 1000
    with AuditLog(db) as again:
        stored = {r["seq"] for r in again.events(limit=1000)}
        after = max(stored, default=0)
        while page := again.events(after_seq=after, limit=1000):
            stored |= {r["seq"] for r in page}
            after = page[-1]["seq"]
    assert acknowledged <= stored


def test_a_failing_record_fails_alone_and_the_log_goes_on(db: Path) -> None:
    """A write SQLite refuses (here a trigger) fails only its own future, with AuditUnavailable."""
    with AuditLog(db) as audit:
        conn = sqlite3.connect(db)
        conn.execute("CREATE TRIGGER refuse BEFORE INSERT ON events WHEN NEW.door = 'broken' "
                     "BEGIN SELECT RAISE(ABORT, 'disk on fire'); END")
        conn.commit()
        conn.close()
        with writer_held(audit):
            good = [audit.append(decision(i)) for i in range(1, 4)]
            bad = audit.append(decision(9, door="broken"))
            more = [audit.append(decision(i)) for i in range(4, 6)]
        with pytest.raises(AuditUnavailable, match="disk on fire"):
            bad.result(10)
        assert all(isinstance(f.result(10), int) for f in good + more)
        assert audit.record_sync(decision(7)) > 0
        assert [r["door"] for r in audit.events()].count("broken") == 0
        assert len(audit.events()) == 7
    # The refused record left no hole in the hash chain.
    report = verify_database(db)
    assert report.ok and report.records == 7


async def test_a_cancelled_waiter_does_not_cancel_the_record(db: Path) -> None:
    with AuditLog(db) as audit:
        future = audit.append(decision(1))
        assert future.cancel() is False
        task = asyncio.ensure_future(audit.record(decision(2)))
        await asyncio.sleep(0)
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task
        audit.close()
        with AuditLog(db) as again:
            assert {r["user"] for r in again.events()} == {"u1", "u2"}


# --- the fleet link's cursors (passbridge.fleet.site_link) ----------------------------


def test_fleet_cursors_are_written_by_the_writer_and_survive_a_reopen(tmp_path: Path) -> None:
    db = tmp_path / "audit.sqlite3"
    with AuditLog(db) as log:
        with sqlite3.connect(db) as raw:  # a site that never joined a fleet has no table
            tables = {r[0] for r in raw.execute("SELECT name FROM sqlite_master")}
        assert "fleet_cursor" not in tables
        assert log.fleet_cursors().result(10) == {}
        log.set_fleet_cursors({"audit": 7, "config": 3}).result(10)
        log.set_fleet_cursors({"audit": 9}).result(10)
        assert log.fleet_cursors().result(10) == {"audit": 9, "config": 3}
    with AuditLog(db) as log:
        assert log.fleet_cursors().result(10) == {"audit": 9, "config": 3}
        with pytest.raises(AuditUnavailable):
            log.close()
            log.set_fleet_cursors({"audit": 10})


def test_rows_are_the_stored_columns_and_hash(tmp_path: Path) -> None:
    with AuditLog(tmp_path / "audit.sqlite3") as log:
        log.append_change("override", {"door": "front"}).result(10)
        log.append_change("override", {"door": "side"}).result(10)
        rows = log.rows(0, 10)
        assert [r[0] for r in rows] == [1, 2] and len(rows[0]) == len(COLUMNS) + 1
        assert rows[1][-1] == log.head().hash
        assert log.rows(1, 10) == rows[1:]
