"""The audit log as the service sees it: durable records, pages, a live feed.

The controller writes through ``PublishingAudit``: each record is made
durable by the wrapped store first and only then fanned out to live
subscribers, so a live event is never something the log could lose. Pages
come from the store itself. The event shape is the same in both, the
SQLite log's row shape: a decision is ``{"seq", "kind": "decision", ...the
decision shape}``, a change is ``{"seq", "kind", "at", "payload"}`` with
``kind`` ``override`` or ``lockdown``.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import AsyncIterator, Callable, Mapping
from typing import Any, Protocol

from passbridge.adapters.audit_chain import AuditHead
from passbridge.core.decision import Decision

log = logging.getLogger(__name__)

Event = dict[str, Any]

LIVE_QUEUE_MAX = 1000


def decision_event(seq: int, decision: Decision) -> Event:
    return {"seq": seq, "kind": "decision", **decision.to_json()}


def change_event(seq: int, kind: str, payload: Mapping[str, Any]) -> Event:
    at = payload.get("at")
    return {"seq": seq, "kind": kind, "at": at if isinstance(at, str) else None,
            "payload": dict(payload)}


class EventStore(Protocol):
    """What the service needs from a durable audit log."""

    async def record(self, decision: Decision) -> int: ...

    async def record_change(self, kind: str, payload: Mapping[str, Any]) -> int: ...

    async def page(self, after_seq: int, limit: int) -> list[Event]: ...

    async def head(self) -> AuditHead | None:
        """The newest record's seq and chain hash; None if this store keeps no chain."""
        ...

    async def close(self) -> None: ...


class MemoryEventStore:
    """An audit log in memory: scenarios and tests (nothing survives the process)."""

    def __init__(self) -> None:
        self._events: list[Event] = []

    async def record(self, decision: Decision) -> int:
        seq = len(self._events) + 1
        self._events.append(decision_event(seq, decision))
        return seq

    async def record_change(self, kind: str, payload: Mapping[str, Any]) -> int:
        seq = len(self._events) + 1
        self._events.append(change_event(seq, kind, payload))
        return seq

    async def page(self, after_seq: int, limit: int) -> list[Event]:
        start = max(after_seq, 0)
        return [dict(e) for e in self._events[start : start + limit]]

    async def head(self) -> AuditHead | None:
        """Nothing to anchor: this log does not outlive the process."""
        return None

    async def close(self) -> None:
        return None


class PublishingAudit:
    """The controller's audit sink: durable first, then live subscribers.

    ``on_durable`` callbacks hear the ``seq`` of every record once it is
    durable (the fleet link wakes its publisher with it); they must be quick
    and never raise into a decision.
    """

    def __init__(self, store: EventStore) -> None:
        self.store = store
        self._subscribers: set[asyncio.Queue[Event | None]] = set()
        self.on_durable: list[Callable[[int], None]] = []

    async def record(self, decision: Decision) -> int:
        seq = await self.store.record(decision)
        if self._subscribers:
            self._publish(decision_event(seq, decision))
        self._durable(seq)
        return seq

    async def record_change(self, kind: str, payload: Mapping[str, Any]) -> int:
        seq = await self.store.record_change(kind, payload)
        if self._subscribers:
            self._publish(change_event(seq, kind, payload))
        self._durable(seq)
        return seq

    def _durable(self, seq: int) -> None:
        for callback in self.on_durable:
            try:
                callback(seq)
            except Exception:  # a listener never fails a decision already made
                log.exception("audit listener failed")

    async def page(self, after_seq: int, limit: int) -> list[Event]:
        return await self.store.page(after_seq, limit)

    async def head(self) -> AuditHead | None:
        return await self.store.head()

    def _publish(self, event: Event) -> None:
        for queue in list(self._subscribers):
            try:
                queue.put_nowait(event)
            except asyncio.QueueFull:
                # A reader too slow to keep up is cut off rather than slow the doors.
                self._subscribers.discard(queue)
                with contextlib.suppress(asyncio.QueueFull):
                    queue.get_nowait()
                    queue.put_nowait(None)

    @contextlib.asynccontextmanager
    async def subscribe(self) -> AsyncIterator[asyncio.Queue[Event | None]]:
        """A queue of live events; ``None`` means the feed ended (shutdown, too slow)."""
        queue: asyncio.Queue[Event | None] = asyncio.Queue(LIVE_QUEUE_MAX)
        self._subscribers.add(queue)
        try:
            yield queue
        finally:
            self._subscribers.discard(queue)

    def end_feeds(self) -> None:
        """Tell every live reader the feed is over (the service is stopping)."""
        for queue in list(self._subscribers):
            with contextlib.suppress(asyncio.QueueFull):
                queue.put_nowait(None)
        self._subscribers.clear()
