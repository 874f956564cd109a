"""Opening the service's SQLite file without ever touching it outside SQLite.

POSIX ties fcntl locks to a process and a file, not to a descriptor: closing
ANY descriptor of the database file drops every lock the process holds on
it, SQLite's included (SQLite itself works around this for its own
connections, but cannot see a descriptor someone else opens). In WAL mode a
connection keeps a shared lock on the database file for as long as it is
open; that lock is what tells another process, closing its own connection,
that it is *not* the last one and must not checkpoint and delete the
write-ahead log. So a stray ``os.open``/``os.close`` on a live database (to
create it with a mode, to read a header, to copy it) lets the next
``passbridge phone list`` or ``sqlite3`` query delete the log under the
service: answered decisions vanish after a crash and the file can end up
malformed.

Hence the one rule of this module: the database file is only ever opened by
SQLite. A new file is created by ``sqlite3.connect`` under a umask that
leaves it (and the ``-wal``/``-shm`` files SQLite later makes with the same
mode) readable by its owner only; an existing file with wider permissions
is narrowed with ``chmod``, which works on the path and takes no descriptor.
"""

from __future__ import annotations

import os
import sqlite3
import stat
import threading
from pathlib import Path

PRIVATE_MODE = 0o600
_COMPANIONS = ("", "-wal", "-shm", "-journal")

# The umask is process-wide: one caller at a time, and only while a file is
# being created (other threads creating files meanwhile get 0600 too, which
# errs on the safe side).
_umask_lock = threading.Lock()


def connect_private(path: str | os.PathLike[str], *, timeout: float = 10.0,
                    cached_statements: int = 128) -> sqlite3.Connection:
    """``sqlite3.connect`` in autocommit mode, usable from any thread, on a
    file that only its owner can read; the file is made if it is missing.

    Never opens a descriptor of its own on the file (see the module's
    docstring): safe to call while other connections of this process are
    live on the same database.
    """
    db = Path(path)
    with _umask_lock:
        new = not db.exists()
        old = os.umask(0o077) if new else None
        try:
            conn = sqlite3.connect(str(db), timeout=timeout, isolation_level=None,
                                   check_same_thread=False, cached_statements=cached_statements)
        finally:
            if old is not None:
                os.umask(old)
    try:
        _narrow_mode(db)
    except OSError:
        conn.close()
        raise
    return conn


def _narrow_mode(db: Path) -> None:
    """An existing database (and its companion files) made by hand or by an
    older version with wider permissions becomes owner-only."""
    for suffix in _COMPANIONS:
        file = db.with_name(db.name + suffix)
        try:
            mode = stat.S_IMODE(file.stat().st_mode)
        except FileNotFoundError:
            continue
        if mode & 0o077:
            os.chmod(file, mode & PRIVATE_MODE)
