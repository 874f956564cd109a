"""The service's database is opened by SQLite alone, so its locks hold.

The process test (test_audit_operator_process) shows the whole failure under
load; these show its cause, quickly and deterministically: with the audit
log live, opening the key store in the same process must leave the audit
log's shared lock in place, so that another process closing its connection
does not think it is the last one and delete the write-ahead log.
"""

from __future__ import annotations

import stat
import subprocess
import sys
from pathlib import Path

from passbridge.adapters.audit_sqlite import AuditLog
from passbridge.adapters.keystore import SqliteKeyStore
from passbridge.adapters.sqlite_file import connect_private
from tests.adapters.test_audit import decision

OTHER_PROCESS_READS = """
import sqlite3, sys
conn = sqlite3.connect(sys.argv[1], timeout=10)
print(conn.execute("SELECT COUNT(*) FROM events").fetchone()[0])
conn.close()
"""


def _count_from_another_process(db: Path) -> int:
    out = subprocess.run([sys.executable, "-c", OTHER_PROCESS_READS, str(db)],
                         capture_output=True, text=True, timeout=60, check=True)
    return int(out.stdout)


def test_key_store_opened_beside_a_live_audit_log_leaves_its_locks(tmp_path: Path) -> None:
    db = tmp_path / "pb.sqlite3"
    wal = db.with_name(db.name + "-wal")
    with AuditLog(db) as audit:
        audit.record_sync(decision(1))
        store = SqliteKeyStore(db, sealing_key=b"s" * 32)
        store.pin_key()
        store.close()
        # Another process opens and closes the database. It must find this
        # process's shared lock and leave the write-ahead log alone.
        assert _count_from_another_process(db) == 1
        assert wal.exists()
        audit.record_sync(decision(2))
        assert _count_from_another_process(db) == 2
        assert wal.exists()


def test_new_database_files_are_owner_only(tmp_path: Path) -> None:
    db = tmp_path / "fresh.sqlite3"
    conn = connect_private(db)
    conn.execute("PRAGMA journal_mode = WAL")
    conn.execute("CREATE TABLE t (x)")
    conn.execute("INSERT INTO t VALUES (1)")
    for suffix in ("", "-wal", "-shm"):
        assert stat.S_IMODE(db.with_name(db.name + suffix).stat().st_mode) == 0o600, suffix
    conn.close()


def test_an_existing_world_readable_database_is_narrowed(tmp_path: Path) -> None:
    db = tmp_path / "old.sqlite3"
    connect_private(db).close()
    db.chmod(0o644)
    connect_private(db).close()
    assert stat.S_IMODE(db.stat().st_mode) == 0o600
