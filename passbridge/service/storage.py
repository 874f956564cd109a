"""What ``serve`` keeps on disk: the SQLite audit log (and, once the key store
lands, the PIN key, the in-process bridge key and phone enrolments).

Until a persistent key store is wired in, the PIN key and the bridge key are
made per process: PINs are hashed from the site file at load, and
in-process factor tokens live seconds, so neither has to outlive the
process. Phone enrolments need the key store; without it no phone is
enrolled and nearby requests cannot be attributed (401).
"""

from __future__ import annotations

import asyncio
import secrets
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from passbridge.adapters.audit_sqlite import AuditLog, AuditUnavailable
from passbridge.core.decision import Decision
from passbridge.core.tokens import PrivateKey
from passbridge.service.events import Event
from passbridge.service.runtime import MemoryPhones, PhoneDirectory


class StartupError(Exception):
    """The service cannot start; the message is one line for the operator."""


class SqliteEventStore:
    """The SQLite audit log behind the service's EventStore protocol."""

    def __init__(self, log: AuditLog) -> None:
        self.log = log

    async def record(self, decision: Decision) -> int:
        return await self.log.record(decision)

    async def record_change(self, kind: str, payload: Mapping[str, Any]) -> int:
        return await self.log.record_change(kind, payload)

    async def page(self, after_seq: int, limit: int) -> list[Event]:
        return await asyncio.to_thread(self.log.events, after_seq, limit)

    async def close(self) -> None:
        await asyncio.to_thread(self.log.close)


@dataclass
class Storage:
    events: SqliteEventStore
    pin_key: bytes
    bridge_key: PrivateKey | None
    phones: PhoneDirectory

    def close_now(self) -> None:
        self.events.log.close()


def open_storage(db_path: Path) -> Storage:
    try:
        db_path.parent.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise StartupError(f"cannot create the database folder {db_path.parent}: "
                           f"{exc.strerror or exc}") from exc
    try:
        log = AuditLog(db_path)
    except AuditUnavailable as exc:
        raise StartupError(str(exc)) from exc
    return Storage(
        events=SqliteEventStore(log),
        pin_key=secrets.token_bytes(32),
        bridge_key=None,
        phones=MemoryPhones(),
    )
