"""The durable audit log: every decision and admin change, on disk before it is answered.

SQLite in WAL mode with ``synchronous=FULL``: a COMMIT returns only after the
WAL is on stable storage. Commits are the cost (one fsync each), so one
writer thread owns the write connection and does *group commit*: it takes
everything queued, inserts it in one transaction, commits once, and only then
completes each caller's future. A caller's future therefore means "this
record is durable", and under load many decisions share one fsync.

Reads use their own connection (WAL lets them run beside the writer).

One table, ``events``: decisions have ``kind = 'decision'`` and their fields
in columns (so an operator can query them with plain SQL); admin changes
(override, lockdown, enrolment, ...) have their own kind and a JSON payload.
``seq`` is an AUTOINCREMENT key: strictly increasing, never reused, the
paging cursor of ``GET /v1/events``.

Every row also carries ``hash``, chained to the row before it
(adapters.audit_chain): the writer numbers each batch's records itself and
hashes them in ``seq`` order before the INSERT, so the chain is written in
the same transaction, and commit, as the records it covers.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import json
import logging
import os
import re
import sqlite3
import threading
from collections import deque
from collections.abc import Callable, Mapping
from concurrent.futures import Future
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from passbridge.adapters.audit_chain import (
    COLUMNS,
    GENESIS,
    AuditHead,
    ChainReport,
    chain_hash,
    verify_chain,
)
from passbridge.adapters.sqlite_file import connect_private
from passbridge.clock import Clock, SystemClock
from passbridge.core.decision import ENUM_TEXT, Decision
from passbridge.errors import PassbridgeError

log = logging.getLogger(__name__)

DECISION = "decision"
_KIND_RE = re.compile(r"^[a-z][a-z0-9_.-]{0,63}$")

SCHEMA = """
CREATE TABLE IF NOT EXISTS events (
    seq            INTEGER PRIMARY KEY AUTOINCREMENT,
    kind           TEXT NOT NULL,
    at             TEXT NOT NULL,
    decision_id    TEXT UNIQUE,
    result         TEXT,
    reason         TEXT,
    door           TEXT,
    side           TEXT,
    user           TEXT,
    credential     TEXT,
    factor         TEXT,
    state          TEXT,
    state_source   TEXT,
    revision       TEXT,
    unlock_seconds INTEGER,
    detail         TEXT,
    payload        TEXT,
    hash           TEXT
);
CREATE INDEX IF NOT EXISTS events_kind_seq ON events (kind, seq);
CREATE INDEX IF NOT EXISTS events_door_seq ON events (door, seq);
"""

# Every column, in the table's order: the hashed ones (audit_chain.COLUMNS), then hash.
_ALL_COLUMNS = (*COLUMNS, "hash")
_SELECT = f"SELECT {', '.join(COLUMNS)} FROM events"  # noqa: S608 - fixed column names
# Records per INSERT statement: well under SQLite's 32766 bound variables.
_ROWS_PER_INSERT = 512
_ROW_PLACEHOLDERS = f"({', '.join('?' for _ in _ALL_COLUMNS)})"


@functools.lru_cache(maxsize=_ROWS_PER_INSERT)
def _insert_rows(rows: int) -> str:
    """One INSERT statement for ``rows`` records (decisions and changes alike)."""
    values = ", ".join([_ROW_PLACEHOLDERS] * rows)
    return f"INSERT INTO events ({', '.join(_ALL_COLUMNS)}) VALUES {values}"  # noqa: S608


class AuditUnavailable(PassbridgeError, RuntimeError):
    """The audit log cannot take a record; the caller denies (``internal_error``)."""


@dataclass(frozen=True, slots=True)
class AuditStats:
    records: int
    commits: int


@dataclass(slots=True)
class _Pending:
    """One queued record and whoever waits for its commit.

    A thread waits on ``future``; a coroutine on ``waiter``, which the writer
    completes on the coroutine's own ``loop``. ``params`` are the record's
    columns after ``seq`` and before ``hash`` (the writer adds both).
    ``source`` is the Decision (or the change's row) that the subscribers'
    row is built from, and only if someone subscribes.
    """

    params: tuple[Any, ...]
    source: Decision | dict[str, Any]
    future: Future[int] | None = None
    loop: asyncio.AbstractEventLoop | None = None
    waiter: asyncio.Future[int] | None = None


@dataclass(slots=True)
class _WriterTask:
    """A small write other than a record (the fleet cursor), run by the writer
    thread on the write connection between two commits: the file keeps one
    writer, and nobody opens a second handle on it (adapters.sqlite_file)."""

    run: Callable[[sqlite3.Connection], Any]
    future: Future[Any]


Subscriber = Callable[[list[dict[str, Any]]], None]
_STOP = object()

# The fleet link's cursors (passbridge.fleet.site_link): the last audit seq the
# hub's stream acknowledged, the last fleet statement seq applied, and per KV
# key the seq of the statement applied from it. Made on first use only: a
# site that never joins a fleet has no such table.
FLEET_CURSOR_SCHEMA = """
CREATE TABLE IF NOT EXISTS fleet_cursor (
    name TEXT PRIMARY KEY,
    seq  INTEGER NOT NULL
)
"""


def _iso(at: datetime) -> str:
    if at.tzinfo is UTC:  # what the clocks give: no conversion to make
        return at.isoformat()
    if at.tzinfo is None:
        raise ValueError("audit timestamps must be timezone-aware")
    return at.astimezone(UTC).isoformat()


def _connect(path: Path | str, *, cached_statements: int = 128) -> sqlite3.Connection:
    """A connection on a file readable by its owner only (it holds key
    material too), opened by SQLite alone (adapters.sqlite_file)."""
    conn = connect_private(path, cached_statements=cached_statements)
    conn.execute("PRAGMA busy_timeout = 10000")
    return conn


_AT = COLUMNS.index("at") - 1  # in _Pending.params, which start after seq
_CHANGE_NULLS = (None,) * (len(COLUMNS) - 4)  # a change has kind, at and payload only


def _decision_params(decision: Decision) -> tuple[Any, ...]:
    factor, state = decision.factor, decision.state
    return (
        DECISION, _iso(decision.at), decision.id, ENUM_TEXT[decision.result],
        ENUM_TEXT[decision.reason], decision.door, ENUM_TEXT[decision.side], decision.user,
        decision.credential, ENUM_TEXT[factor] if factor else None,
        ENUM_TEXT[state] if state else None, decision.state_source,
        decision.revision, decision.unlock_seconds, decision.detail, None,
    )


def _subscriber_row(pending: _Pending, seq: int) -> dict[str, Any]:
    source = pending.source
    if isinstance(source, Decision):
        row = source.to_json()
        row["at"] = pending.params[_AT]
        row["kind"] = DECISION
    else:
        row = dict(source)
    row["seq"] = seq
    return row


def _settle(batch: list[_Pending], seqs: list[int] | None, failure: str | None) -> None:
    """Complete every waiter of ``batch``: with its ``seq``, or with AuditUnavailable.

    Coroutines are completed on their own loops, with one thread-safe call
    per loop for the whole batch.
    """
    by_loop: dict[asyncio.AbstractEventLoop, list[tuple[asyncio.Future[int], int | None]]] = {}
    for i, pending in enumerate(batch):
        seq = seqs[i] if seqs is not None else None
        future = pending.future
        if future is not None and not future.done():
            if seq is not None:
                future.set_result(seq)
            else:
                future.set_exception(AuditUnavailable(failure or "audit write failed"))
        if pending.waiter is not None and pending.loop is not None:
            by_loop.setdefault(pending.loop, []).append((pending.waiter, seq))
    for loop, waiters in by_loop.items():
        try:
            loop.call_soon_threadsafe(_wake, waiters, failure)
        except RuntimeError:  # the loop has closed: nobody is waiting any more
            pass


def _wake(waiters: list[tuple[asyncio.Future[int], int | None]], failure: str | None) -> None:
    for waiter, seq in waiters:
        if waiter.done():  # the waiting coroutine was cancelled; the record stands
            continue
        if seq is not None:
            waiter.set_result(seq)
        else:
            waiter.set_exception(AuditUnavailable(failure or "audit write failed"))


class AuditLog:
    """Append-only, group-committed, durable audit log.

    ``path`` of ``":memory:"`` is refused: an audit log that vanishes is not
    an audit log (tests use a temporary directory). ``one_per_commit`` commits
    each record alone (the benchmark's baseline).
    """

    def __init__(
        self,
        path: str | os.PathLike[str],
        *,
        clock: Clock | None = None,
        one_per_commit: bool = False,
    ) -> None:
        self.path = Path(path)
        self.one_per_commit = one_per_commit
        self._clock: Clock = clock or SystemClock()
        self._queue: deque[_Pending | object] = deque()
        self._cond = threading.Condition()
        # Whether the writer sleeps on _cond: submitters wake it only then,
        # not once per record while it is busy committing.
        self._writer_idle = False
        self._closed = False
        self._failed: str | None = None
        self._subscribers: list[Subscriber] = []
        self._records = 0
        self._commits = 0
        try:
            if str(path) == ":memory:":
                raise ValueError("the audit log needs a file")
            # Room in the statement cache for every multi-row INSERT size.
            self._write = _connect(self.path, cached_statements=_ROWS_PER_INSERT + 64)
            mode = self._write.execute("PRAGMA journal_mode = WAL").fetchone()[0]
            if str(mode).lower() != "wal":
                raise sqlite3.OperationalError(f"journal_mode is {mode}, not wal")
            self._write.execute("PRAGMA synchronous = FULL")
            self._write.executescript(SCHEMA)
            _add_hash_chain(self._write)
            self._head_seq, self._head_hash = _chain_head(self._write)
            self._read = _connect(self.path)
            self._read.execute("PRAGMA query_only = ON")
        except (OSError, sqlite3.Error, ValueError) as exc:
            raise AuditUnavailable(f"cannot open audit log {self.path}: {exc}") from exc
        self._read_lock = threading.Lock()
        self._writer = threading.Thread(target=self._run, name="audit-writer", daemon=True)
        self._writer.start()

    def __repr__(self) -> str:
        return f"AuditLog({str(self.path)!r}, one_per_commit={self.one_per_commit})"

    # -- writing ---------------------------------------------------------------

    def append(self, decision: Decision) -> Future[int]:
        """Queue a decision; the future gives its ``seq`` once it is committed."""
        future: Future[int] = Future()
        # Running from the start: a caller that stops waiting (a cancelled
        # request) cannot cancel the record of a decision already made.
        future.set_running_or_notify_cancel()
        self._submit(_Pending(_decision_params(decision), decision, future))
        return future

    def append_change(
        self, kind: str, payload: Mapping[str, Any], *, at: datetime | None = None
    ) -> Future[int]:
        """Queue an admin change (``override``, ``lockdown``, ``enrolment``, ...)."""
        future: Future[int] = Future()
        future.set_running_or_notify_cancel()
        self._submit(self._change(kind, payload, at, future=future))
        return future

    async def record(self, decision: Decision) -> int:
        """Append and wait for the commit without blocking the event loop.

        The writer completes this coroutine's future on its own loop, once
        per commit for all the records of that commit, rather than once per
        record: under load that is most of what a decision costs the loop.
        Cancelling the wait does not withdraw the record.
        """
        loop = asyncio.get_running_loop()
        waiter: asyncio.Future[int] = loop.create_future()
        self._submit(_Pending(_decision_params(decision), decision, loop=loop, waiter=waiter))
        return await waiter

    async def record_change(self, kind: str, payload: Mapping[str, Any],
                            *, at: datetime | None = None) -> int:
        loop = asyncio.get_running_loop()
        waiter: asyncio.Future[int] = loop.create_future()
        self._submit(self._change(kind, payload, at, loop=loop, waiter=waiter))
        return await waiter

    def record_sync(self, decision: Decision, timeout: float | None = None) -> int:
        return self.append(decision).result(timeout)

    def _change(
        self, kind: str, payload: Mapping[str, Any], at: datetime | None,
        *, future: Future[int] | None = None, loop: asyncio.AbstractEventLoop | None = None,
        waiter: asyncio.Future[int] | None = None,
    ) -> _Pending:
        if kind == DECISION or not _KIND_RE.match(kind):
            raise ValueError(f"not a change kind: {kind!r}")
        text = json.dumps(dict(payload), sort_keys=True, separators=(",", ":"), default=str)
        when = _iso(at or self._clock.now())
        row = {"kind": kind, "at": when, "payload": json.loads(text)}
        return _Pending((kind, when, *_CHANGE_NULLS, text), row, future, loop, waiter)

    def _submit(self, pending: _Pending) -> None:
        with self._cond:
            if self._closed:
                raise AuditUnavailable("audit log is closed")
            if self._failed is not None:
                raise AuditUnavailable(self._failed)
            self._queue.append(pending)
            if self._writer_idle:
                self._cond.notify()

    def _take(self) -> tuple[list[_Pending], object]:
        """Wait for work; return a batch of records, or else the control item
        (stop marker or writer task) that comes next (None after a batch)."""
        with self._cond:
            while not self._queue:
                self._writer_idle = True
                self._cond.wait()
            self._writer_idle = False
            batch: list[_Pending] = []
            limit = 1 if self.one_per_commit else len(self._queue)
            while self._queue and len(batch) < limit:
                item = self._queue[0]
                if not isinstance(item, _Pending):
                    if batch:
                        break
                    self._queue.popleft()
                    return batch, item
                self._queue.popleft()
                batch.append(item)
            return batch, None

    def _run(self) -> None:
        try:
            while True:
                batch, control = self._take()
                if batch:
                    self._commit(batch)
                if isinstance(control, _WriterTask):
                    self._run_task(control)
                elif control is _STOP:
                    return
        except BaseException as exc:  # a dead writer must not leave callers waiting forever
            log.critical("audit writer stopped: %s", exc)
            with self._cond:
                self._failed = f"audit writer stopped: {exc}"
                left = [p for p in self._queue if isinstance(p, _Pending)]
                tasks = [t for t in self._queue if isinstance(t, _WriterTask)]
                self._queue.clear()
            _settle(left, None, self._failed)
            for task in tasks:
                task.future.set_exception(AuditUnavailable(self._failed))
            raise

    def _run_task(self, task: _WriterTask) -> None:
        try:
            task.future.set_result(task.run(self._write))
        except Exception as exc:  # the task's caller hears of it; the writer goes on
            task.future.set_exception(exc)

    def _commit(self, batch: list[_Pending]) -> None:
        try:
            seqs = self._insert(batch)
        except (sqlite3.Error, ValueError) as exc:  # ValueError: a record that cannot be encoded
            # Nothing of the batch is in: chain on from what the file holds
            # (the same head, unless another writer got there first).
            try:
                self._head_seq, self._head_hash = _chain_head(self._write)
            except sqlite3.Error as again:
                log.error("audit chain head unreadable: %s", again)
            if len(batch) > 1:
                # One bad record must not take its neighbours down: retry each alone.
                for pending in batch:
                    self._commit([pending])
                return
            log.error("audit commit failed: %s", exc)
            _settle(batch, None, f"audit write failed: {exc}")
            return
        with self._cond:
            self._commits += 1
            self._records += len(batch)
        _settle(batch, seqs, None)
        subscribers = self._subscribers
        if not subscribers:
            return
        rows = [_subscriber_row(pending, seq) for pending, seq in zip(batch, seqs, strict=True)]
        for callback in list(subscribers):
            try:
                callback(rows)
            except Exception:  # a listener never stops the log
                log.exception("audit subscriber failed")

    def _insert(self, batch: list[_Pending]) -> list[int]:
        """The whole batch made durable by one COMMIT (one fsync).

        The writer numbers the records itself, from the head it keeps
        (``seq`` stays AUTOINCREMENT, so SQLite's counter follows and no
        number is ever handed out twice), and chains each record's hash to
        the one before, in ``seq`` order, before the INSERT: the hashes go
        in with the records, in the same transaction. A second writer on
        the file would collide on ``seq`` (a failed commit, then a fresh
        head from the file), never fork the chain silently.

        Decisions and changes alike go in as one multi-row INSERT. The
        usual batch is then a single statement in autocommit mode: its own
        transaction, committed before the call returns. That matters for
        more than the round trips: the sqlite3 module lets go of the GIL
        around every statement step, and each time the writer wants it back
        it can wait for the event loop's switch interval, so fewer steps
        means a shorter commit under load. A batch of more rows than one
        statement takes is wrapped in BEGIN IMMEDIATE ... COMMIT.
        """
        seq, previous = self._head_seq, self._head_hash
        first = seq + 1
        statements: list[tuple[str, list[Any]]] = []
        for start in range(0, len(batch), _ROWS_PER_INSERT):
            chunk = batch[start:start + _ROWS_PER_INSERT]
            params: list[Any] = []
            for pending in chunk:
                seq += 1
                row = (seq, *pending.params)
                previous = chain_hash(previous, row)
                params.extend(row)
                params.append(previous.hex())
            statements.append((_insert_rows(len(chunk)), params))
        conn = self._write
        if len(statements) == 1:
            conn.execute(*statements[0])
        else:
            try:
                conn.execute("BEGIN IMMEDIATE")
                for sql, params in statements:
                    conn.execute(sql, params)
                conn.execute("COMMIT")
            except sqlite3.Error:
                with contextlib.suppress(sqlite3.Error):
                    conn.execute("ROLLBACK")
                raise
        self._head_seq, self._head_hash = seq, previous
        return list(range(first, seq + 1))

    def _writer_task(self, run: Callable[[sqlite3.Connection], Any]) -> Future[Any]:
        future: Future[Any] = Future()
        future.set_running_or_notify_cancel()
        with self._cond:
            if self._closed:
                raise AuditUnavailable("audit log is closed")
            if self._failed is not None:
                raise AuditUnavailable(self._failed)
            self._queue.append(_WriterTask(run, future))
            if self._writer_idle:
                self._cond.notify()
        return future

    # -- the fleet link's cursors ------------------------------------------------

    def fleet_cursors(self) -> Future[dict[str, int]]:
        """Every fleet cursor (name -> seq), the table made if missing; read
        on the write connection, so a value just set is always seen."""

        def run(conn: sqlite3.Connection) -> dict[str, int]:
            conn.execute(FLEET_CURSOR_SCHEMA)
            return {str(name): _whole(seq) for name, seq in
                    conn.execute("SELECT name, seq FROM fleet_cursor")}

        return self._writer_task(run)

    def set_fleet_cursors(self, cursors: Mapping[str, int]) -> Future[None]:
        """Store fleet cursors in one transaction (durable: synchronous=FULL)."""
        items = [(str(name), int(seq)) for name, seq in cursors.items()]

        def run(conn: sqlite3.Connection) -> None:
            conn.execute(FLEET_CURSOR_SCHEMA)
            conn.execute("BEGIN IMMEDIATE")
            try:
                conn.executemany("INSERT INTO fleet_cursor (name, seq) VALUES (?, ?) "
                                 "ON CONFLICT (name) DO UPDATE SET seq = excluded.seq", items)
                conn.execute("COMMIT")
            except sqlite3.Error:
                with contextlib.suppress(sqlite3.Error):
                    conn.execute("ROLLBACK")
                raise

        return self._writer_task(run)

    # -- live events -------------------------------------------------------------

    def subscribe(self, callback: Subscriber) -> Callable[[], None]:
        """Call ``callback(rows)`` after each commit, from the writer thread.

        The callback must be quick and thread-safe: an asyncio consumer hands
        the rows over with ``loop.call_soon_threadsafe``. It sees committed
        rows only, in ``seq`` order. Returns a function that unsubscribes.
        """
        with self._cond:
            self._subscribers = [*self._subscribers, callback]

        def unsubscribe() -> None:
            with self._cond:
                self._subscribers = [s for s in self._subscribers if s is not callback]

        return unsubscribe

    # -- reading -------------------------------------------------------------------

    def events(
        self, after_seq: int = 0, limit: int = 100, kind: str | None = None,
        door: str | None = None,
    ) -> list[dict[str, Any]]:
        """Committed records with ``seq > after_seq``, oldest first, at most ``limit``."""
        limit = max(1, min(int(limit), 1000))
        where = ["seq > ?"]
        args: list[Any] = [int(after_seq)]
        if kind is not None:
            where.append("kind = ?")
            args.append(kind)
        if door is not None:
            where.append("door = ?")
            args.append(door)
        clause = " AND ".join(where)  # fixed fragments only; values are bound
        sql = f"{_SELECT} WHERE {clause} ORDER BY seq LIMIT ?"
        args.append(limit)
        try:
            with self._read_lock:
                rows = self._read.execute(sql, args).fetchall()
        except sqlite3.Error as exc:
            raise AuditUnavailable(f"audit read failed: {exc}") from exc
        return [_row(r) for r in rows]

    def rows(self, after_seq: int, limit: int) -> list[tuple[Any, ...]]:
        """Committed records with ``seq > after_seq``, oldest first, at most
        ``limit``, exactly as stored: ``audit_chain.COLUMNS`` then ``hash``
        (what the fleet link publishes and the hub re-hashes)."""
        sql = (f"SELECT {', '.join(_ALL_COLUMNS)} FROM events "  # noqa: S608 - fixed names
               "WHERE seq > ? ORDER BY seq LIMIT ?")
        try:
            with self._read_lock:
                return list(self._read.execute(sql, (int(after_seq), int(limit))).fetchall())
        except sqlite3.Error as exc:
            raise AuditUnavailable(f"audit read failed: {exc}") from exc

    def latest_seq(self) -> int:
        try:
            with self._read_lock:
                got = self._read.execute("SELECT MAX(seq) FROM events").fetchone()
        except sqlite3.Error as exc:
            raise AuditUnavailable(f"audit read failed: {exc}") from exc
        return int(got[0] or 0)

    def head(self) -> AuditHead:
        """The newest committed record's ``seq`` and hash (``seq`` 0 and
        the genesis hash for an empty log): what an outside system keeps to
        anchor the chain."""
        try:
            with self._read_lock:
                got = self._read.execute(
                    "SELECT seq, hash FROM events ORDER BY seq DESC LIMIT 1").fetchone()
        except sqlite3.Error as exc:
            raise AuditUnavailable(f"audit read failed: {exc}") from exc
        if got is None:
            return AuditHead(0, GENESIS.hex())
        return AuditHead(int(got[0]), got[1] if isinstance(got[1], str) else None)

    @property
    def stats(self) -> AuditStats:
        with self._cond:
            return AuditStats(records=self._records, commits=self._commits)

    # -- shutdown --------------------------------------------------------------------

    def close(self, timeout: float | None = None) -> None:
        """Commit everything already queued, then stop. Idempotent."""
        with self._cond:
            if self._closed:
                return
            self._closed = True
            self._queue.append(_STOP)
            self._cond.notify()
        self._writer.join(timeout)
        with contextlib.suppress(sqlite3.Error):
            self._write.close()
        with self._read_lock, contextlib.suppress(sqlite3.Error):
            self._read.close()

    def __enter__(self) -> AuditLog:
        return self

    def __exit__(self, *_exc: object) -> None:
        self.close()


def _row(r: tuple[Any, ...]) -> dict[str, Any]:
    (seq, kind, at, decision_id, result, reason, door, side, user, credential, factor,
     state, state_source, revision, unlock_seconds, detail, payload) = r
    if kind == DECISION:
        return {
            "seq": seq, "kind": kind, "decision_id": decision_id, "result": result,
            "reason": reason, "door": door, "side": side, "user": user, "factor": factor,
            "credential": credential, "state": state, "state_source": state_source,
            "unlock_seconds": unlock_seconds, "revision": revision, "at": at, "detail": detail,
        }
    try:
        body = json.loads(payload) if payload else {}
    except ValueError:
        body = {"unreadable": True}
    return {"seq": seq, "kind": kind, "at": at, "payload": body}


# -- the hash chain on disk -------------------------------------------------------------


def _add_hash_chain(conn: sqlite3.Connection) -> None:
    """Give a log from before the hash chain its ``hash`` column, and hash
    the records it already holds, oldest first from the genesis, in one
    transaction.

    Those records are vouched for from this moment on, not from when they
    were written: whatever happened to them before cannot be told. Only
    this migration hashes existing rows; a row that turns up later without
    a hash (written by hand, or by an older passbridge) stays unhashed, and
    ``verify_database`` names it.
    """
    conn.execute("BEGIN IMMEDIATE")
    try:
        columns = {str(r[1]) for r in conn.execute("PRAGMA table_info(events)")}
        hashed = 0
        if "hash" not in columns:
            conn.execute("ALTER TABLE events ADD COLUMN hash TEXT")
            previous, after = GENESIS, -1
            while True:  # in pages, so a long history needs no memory to match
                rows = conn.execute(f"{_SELECT} WHERE seq > ? ORDER BY seq LIMIT 5000",
                                    (after,)).fetchall()
                if not rows:
                    break
                updates = []
                for row in rows:
                    previous = chain_hash(previous, row)
                    updates.append((previous.hex(), row[0]))
                conn.executemany("UPDATE events SET hash = ? WHERE seq = ?", updates)
                hashed += len(updates)
                after = rows[-1][0]
        conn.execute("COMMIT")
    except BaseException:
        with contextlib.suppress(sqlite3.Error):
            conn.execute("ROLLBACK")
        raise
    if hashed:
        log.warning("audit log: %d records from before the hash chain were hashed now", hashed)


def _whole(value: object) -> int:
    """An integer read back from the file; anything else (altered by hand) is 0."""
    return value if isinstance(value, int) else 0


def _chain_head(conn: sqlite3.Connection) -> tuple[int, bytes]:
    """Where the next record goes: after the highest ``seq`` ever handed out
    (SQLite's counter: records removed from the end leave a gap that
    ``verify_database`` names), chained to the newest stored hash."""
    top = conn.execute("SELECT MAX(seq) FROM events").fetchone()[0]
    counter = conn.execute("SELECT seq FROM sqlite_sequence WHERE name = 'events'").fetchone()
    seq = max(_whole(top), _whole(counter[0]) if counter else 0)
    last = conn.execute("SELECT hash FROM events WHERE hash IS NOT NULL "
                        "ORDER BY seq DESC LIMIT 1").fetchone()
    if last is None:
        return seq, GENESIS
    try:
        previous = bytes.fromhex(str(last[0]))
    except ValueError:
        previous = b""
    if len(previous) != len(GENESIS):
        # Altered by hand: the chain is already broken there (verify says
        # where); the doors keep their audit log.
        log.error("audit log: the newest stored hash is not a hash; run passbridge audit verify")
        previous = GENESIS
    return seq, previous


def verify_database(path: str | os.PathLike[str],
                    anchors: Mapping[int, str] | None = None) -> ChainReport:
    """Check the hash chain of the audit log in the database at ``path``.

    Opens the file read-only through SQLite (safe beside a running
    service). Raises AuditUnavailable, with a one-line reason, when the
    file is not a passbridge database that can be checked.
    """
    db = Path(path)
    if not db.is_file():
        raise AuditUnavailable(f"{db}: no such file")
    try:
        conn = sqlite3.connect(f"{db.resolve().as_uri()}?mode=ro", uri=True, timeout=10.0)
    except sqlite3.Error as exc:
        raise AuditUnavailable(f"{db}: cannot open: {exc}") from exc
    try:
        tables = {str(r[0]) for r in conn.execute(
            "SELECT name FROM sqlite_master WHERE type = 'table'")}
        if "events" not in tables:
            raise AuditUnavailable(f"{db}: no audit log in this database (no events table)")
        columns = {str(r[1]) for r in conn.execute("PRAGMA table_info(events)")}
        if "hash" not in columns:
            raise AuditUnavailable(
                f"{db}: the audit log has no hash chain yet (passbridge serve adds it on start)")
        counter = conn.execute(
            "SELECT seq FROM sqlite_sequence WHERE name = 'events'").fetchone()
        rows = conn.execute(f"SELECT {', '.join(_ALL_COLUMNS)} FROM events "  # noqa: S608
                            "ORDER BY seq")
        return verify_chain(rows, _whole(counter[0]) if counter else 0, anchors)
    except sqlite3.Error as exc:
        raise AuditUnavailable(f"{db}: cannot read the audit log: {exc}") from exc
    finally:
        conn.close()
