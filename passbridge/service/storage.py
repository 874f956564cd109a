"""What ``serve`` keeps on disk, in one SQLite file: the audit log and the key
store (PIN key, in-process bridge key, phone enrolments, extra trust)."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from passbridge.adapters.audit_chain import AuditHead
from passbridge.adapters.audit_sqlite import AuditLog, AuditUnavailable
from passbridge.adapters.keystore import KeyStoreError, SqliteKeyStore
from passbridge.core.decision import Decision
from passbridge.errors import PassbridgeError
from passbridge.service.events import Event


class StartupError(PassbridgeError):
    """The service cannot start; the message is one line for the operator."""


class SqliteEventStore:
    """The SQLite audit log behind the service's EventStore protocol."""

    def __init__(self, log: AuditLog, keystore: SqliteKeyStore | None = None) -> None:
        self.log = log
        self._keystore = keystore

    async def record(self, decision: Decision) -> int:
        return await self.log.record(decision)

    async def record_change(self, kind: str, payload: Mapping[str, Any]) -> int:
        return await self.log.record_change(kind, payload)

    async def page(self, after_seq: int, limit: int) -> list[Event]:
        return await asyncio.to_thread(self.log.events, after_seq, limit)

    async def head(self) -> AuditHead | None:
        return await asyncio.to_thread(self.log.head)

    # What the fleet link reads and keeps (passbridge.fleet.site_link): the
    # stored rows with their hashes and its cursors, all through this log's
    # own connections.

    async def rows_after(self, seq: int, limit: int) -> list[tuple[Any, ...]]:
        return await asyncio.to_thread(self.log.rows, seq, limit)

    async def latest_seq(self) -> int:
        return await asyncio.to_thread(self.log.latest_seq)

    async def fleet_cursors(self) -> dict[str, int]:
        return await asyncio.wrap_future(self.log.fleet_cursors())

    async def set_fleet_cursors(self, cursors: Mapping[str, int]) -> None:
        await asyncio.wrap_future(self.log.set_fleet_cursors(cursors))

    async def close(self) -> None:
        """Commit what is queued and close; the key store shares the file, so it goes too."""
        await asyncio.to_thread(self.close_now)

    def close_now(self) -> None:
        self.log.close()
        if self._keystore is not None:
            self._keystore.close()


@dataclass
class Storage:
    events: SqliteEventStore
    keystore: SqliteKeyStore

    def close_now(self) -> None:
        self.events.close_now()


def open_storage(db_path: Path) -> Storage:
    try:
        db_path.parent.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise StartupError(
            f"cannot create the database folder {db_path.parent}: {exc.strerror or exc}"
        ) from exc
    try:
        log = AuditLog(db_path)
    except AuditUnavailable as exc:
        raise StartupError(str(exc)) from exc
    try:
        keystore = SqliteKeyStore(db_path)
        # Read the secrets now so a broken store fails at start-up, not on a door.
        keystore.pin_key()
        keystore.bridge_key()
    except KeyStoreError as exc:
        log.close()
        raise StartupError(str(exc)) from exc
    except Exception as exc:
        log.close()
        with contextlib.suppress(Exception):
            keystore.close()
        raise StartupError(f"cannot read the key store in {db_path}: {exc}") from exc
    return Storage(SqliteEventStore(log, keystore), keystore)
