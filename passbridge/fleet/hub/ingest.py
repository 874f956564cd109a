"""Audit records from every site, JetStream -> PostgreSQL, each stored once, each checked.

One durable pull consumer (``passbridge-hub``) reads ``PASSBRIDGE_AUDIT``.
A fetched batch is written in one transaction (COPY into a temporary table,
then ``INSERT ... ON CONFLICT (site, seq) DO NOTHING``), and only after the
commit are its messages acknowledged. Whatever dies in between (the hub,
NATS, PostgreSQL), an unacknowledged message comes again and the unique
``(site, seq)`` drops the copy: no record is lost, none is doubled. While
PostgreSQL is down the batch in hand is retried, and nothing newer is
fetched, so records of one site are stored in the order the site sent them.

The hash chain is checked per site against the hub's own copy, in the same
transaction (docs/decisions.md, "Fleet hub: the chain check"): a record
whose predecessor is stored must satisfy ``hash = chain_hash(hash of the
predecessor, row)``, else it is stored flagged ``mismatch`` with an alert.
A record whose predecessor has not arrived is stored ``pending``
(unverified, and shown so); when the predecessor comes it is checked then.
A record still missing after ``gap_grace`` seconds (longer than a
redelivery takes) is a ``gap`` alert, and the records after it stay
flagged. A record sent again under a stored ``(site, seq)`` with another
hash is a ``conflict`` alert (the stored one is kept). A message that is
not an audit record at all is a ``malformed`` alert and is acknowledged
(it would come back for ever otherwise). Nothing is ever silently fine.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any

import asyncpg

from passbridge.adapters.audit_chain import COLUMNS, GENESIS, chain_hash
from passbridge.fleet import wire
from passbridge.fleet.hub.metrics import HubMetrics
from passbridge.fleet.hub.store import (
    CHAIN_GAP,
    CHAIN_MISMATCH,
    CHAIN_OK,
    CHAIN_PENDING,
    RECORD_COLUMNS,
    HubStore,
    SiteHead,
)
from passbridge.fleet.streams import ensure_audit_stream

log = logging.getLogger(__name__)

BATCH = 1000
FETCH_TIMEOUT = 1.0
# Longer than a redelivery (ACK_WAIT) plus a fetch: a record only late
# because a crashed hub's batch is being redelivered is not a gap.
GAP_GRACE = 60.0
ACK_WAIT = 20.0
RETRY_SECONDS = 0.5
# Waiting for a pooled connection, and for one statement: a server that went
# away mid-statement must not hold the consumer for ever.
POOL_TIMEOUT = 10.0
# The most unverified records of one site walked forward in one batch.
WALK_LIMIT = 50_000

_QUOTED = ", ".join(f'"{c}"' for c in RECORD_COLUMNS)
_CREATE_INCOMING = (
    "CREATE TEMPORARY TABLE IF NOT EXISTS incoming_audit ON COMMIT DELETE ROWS AS "  # noqa: S608
    f"SELECT {_QUOTED} FROM audit_records WITH NO DATA")
_TEXT_COLUMNS = frozenset(COLUMNS) - {"seq", "unlock_seconds"}


@dataclass
class _Incoming:
    """One batch, parsed: the records by site (seq order) and the refused messages."""

    records: dict[str, list[wire.AuditMessage]] = field(default_factory=dict)
    malformed: list[tuple[str, str]] = field(default_factory=list)  # (site or "", why)
    # Second copies of a (site, seq) within the batch: identical ones, and
    # the (site, seq, first hash, other hash) of those that differ.
    duplicates: int = 0
    conflicts: list[tuple[str, int, str, str]] = field(default_factory=list)


def parse_batch(messages: Iterable[tuple[str, bytes]]) -> _Incoming:
    """(subject, data) pairs -> records per site, in seq order, first copy of each seq."""
    incoming = _Incoming()
    seen: dict[tuple[str, int], str] = {}
    for subject, data in messages:
        try:
            site = wire.site_from_subject(subject)
        except wire.WireError as exc:
            incoming.malformed.append(("", f"{subject}: {exc}"))
            continue
        try:
            record = wire.AuditMessage.from_bytes(data)
        except wire.WireError as exc:
            incoming.malformed.append((site, str(exc)))
            continue
        if record.site != site:
            # A publisher may only speak for the site of its subject (NATS
            # permissions are per subject): a record naming another is refused.
            incoming.malformed.append(
                (site, f"record of site {record.site!r} published on {subject}"))
            continue
        problem = _type_problem(record)
        if problem is not None:
            incoming.malformed.append((site, f"record {record.seq}: {problem}"))
            continue
        first = seen.get((site, record.seq))
        if first is None:
            seen[(site, record.seq)] = record.hash
            incoming.records.setdefault(site, []).append(record)
        elif first == record.hash:
            incoming.duplicates += 1
        else:
            incoming.conflicts.append((site, record.seq, first, record.hash))
    for records in incoming.records.values():
        records.sort(key=lambda r: r.seq)
    return incoming


def _type_problem(record: wire.AuditMessage) -> str | None:
    """The hub stores exactly the values that were hashed: a column of another
    type than the site's table has would change on the way into PostgreSQL."""
    for name in COLUMNS:
        value = record.row[name]
        if value is None:
            if name in ("seq", "kind", "at"):
                return f"column {name} is null"
        elif (name in _TEXT_COLUMNS) != isinstance(value, str):
            return f"column {name} has the wrong type ({type(value).__name__})"
    return None


@dataclass(frozen=True, slots=True)
class _Alert:
    site: str
    kind: str
    seq: int | None
    seq_to: int | None
    detail: str


class Ingest:
    """The consumer loop and the per-batch transaction (see the module docstring)."""

    def __init__(self, store: HubStore, metrics: HubMetrics, *, batch: int = BATCH,
                 gap_grace: float = GAP_GRACE, ack_wait: float = ACK_WAIT) -> None:
        self.store = store
        self.metrics = metrics
        self.batch = batch
        self.gap_grace = gap_grace
        self.ack_wait = ack_wait
        self._tasks: list[asyncio.Task[None]] = []
        self._held: asyncpg.Connection | None = None
        self.stored = 0

    async def start(self, js: Any) -> None:
        from nats.js.api import AckPolicy, ConsumerConfig

        await ensure_audit_stream(js)
        # Created, or updated if it exists (pull_subscribe alone would bind to
        # an existing consumer and silently keep its old ack wait).
        await js.add_consumer(wire.AUDIT_STREAM, ConsumerConfig(
            durable_name=wire.HUB_CONSUMER, filter_subject=wire.AUDIT_SUBJECTS,
            ack_policy=AckPolicy.EXPLICIT, ack_wait=self.ack_wait,
            max_ack_pending=self.batch * 4))
        subscription = await js.pull_subscribe(
            wire.AUDIT_SUBJECTS, durable=wire.HUB_CONSUMER, stream=wire.AUDIT_STREAM)
        self._tasks = [asyncio.create_task(self._consume(subscription), name="hub-ingest"),
                       asyncio.create_task(self._watch_gaps(), name="hub-gaps")]

    async def stop(self) -> None:
        for task in self._tasks:
            task.cancel()
        for task in self._tasks:
            with contextlib.suppress(asyncio.CancelledError):
                await task
        self._tasks = []
        await self._drop_connection()

    async def _consume(self, subscription: Any) -> None:
        """Fetch and parse the next batch while the current one commits (the
        database works in its own process meanwhile); commits stay in order."""
        import nats.errors

        fetching = asyncio.create_task(self._fetch(subscription))
        try:
            while True:
                messages, incoming = await fetching
                fetching = asyncio.create_task(self._fetch(subscription))
                if not messages:
                    continue
                await self._commit_until_done(incoming)
                # Acknowledged only now: a batch lost before this line comes again.
                for message in messages:
                    with contextlib.suppress(nats.errors.Error, OSError):
                        await message.ack()
        finally:
            fetching.cancel()

    async def _fetch(self, subscription: Any) -> tuple[list[Any], _Incoming]:
        """The next batch, parsed; empty when there was nothing or NATS is away."""
        import nats.errors

        try:
            messages = await subscription.fetch(self.batch, timeout=FETCH_TIMEOUT)
        except TimeoutError:
            return [], _Incoming()  # nothing new (nats.errors.TimeoutError is one too)
        except (nats.errors.Error, OSError) as exc:
            # NATS is down or reconnecting: the client reconnects by itself.
            log.debug("audit fetch failed (%s); retrying", exc)
            await asyncio.sleep(RETRY_SECONDS)
            return [], _Incoming()
        return messages, parse_batch((m.subject, m.data) for m in messages)

    async def _commit_until_done(self, incoming: _Incoming) -> None:
        """Retry one batch until PostgreSQL takes it; nothing newer is committed
        meanwhile (one batch is prefetched at most), so each site's records go
        in in order."""
        while True:
            try:
                await self.commit(incoming)
                return
            except asyncio.CancelledError:
                raise
            except Exception as exc:  # noqa: BLE001
                # Whatever went wrong (connection lost, server restarting, a
                # driver error), the transaction did not commit or the retry
                # is a no-op (unique (site, seq)): retrying is always safe, and
                # stopping would leave every later record unstored.
                self.metrics.store_errors.inc()
                log.warning("audit batch not stored (%s: %s); retrying",
                            type(exc).__name__, exc)
                await asyncio.sleep(RETRY_SECONDS)

    # --- one batch, one transaction ------------------------------------------------------

    async def commit(self, incoming: _Incoming) -> None:
        """Store, check and alert one batch atomically (also the bench's entry point)."""
        sites = sorted(incoming.records)
        alerts: list[_Alert] = [
            _Alert(site or "?", "malformed", None, None, why) for site, why in incoming.malformed]
        alerts += [_conflict(site, seq, other, first)
                   for site, seq, first, other in incoming.conflicts]
        if not sites and not alerts:
            return
        connection = await self._connection()
        try:
            async with connection.transaction():
                inserted, rows = await self._commit_in(connection, sites, incoming, alerts)
        except BaseException:
            await self._drop_connection()  # a new one for the retry
            raise
        self.stored += len(inserted)
        self.metrics.records.labels("stored").inc(len(inserted))
        self.metrics.records.labels("duplicate").inc(
            len(rows) - len(inserted) + incoming.duplicates + len(incoming.conflicts))
        for alert in alerts:
            self.metrics.alerts.labels(alert.kind).inc()
            log.warning("audit alert: site %r %s at %s: %s", alert.site, alert.kind,
                        alert.seq, alert.detail)

    async def _commit_in(self, connection: asyncpg.Connection, sites: list[str],
                         incoming: _Incoming, alerts: list[_Alert],
                         ) -> tuple[set[tuple[str, int]], list[tuple[Any, ...]]]:
        """The batch's statements, inside the caller's transaction."""
        heads, unverified = await _lock_heads(connection, sites)
        rows: list[tuple[Any, ...]] = []
        advanced: dict[str, SiteHead] = {}
        for site in sites:
            head, site_rows, site_alerts = check_chain(site, heads[site],
                                                       incoming.records[site])
            rows.extend(site_rows)
            alerts.extend(site_alerts)
            advanced[site] = head
        inserted = await _insert(connection, rows)
        alerts.extend(await _conflicts(connection, rows, inserted))
        # Sites with records waiting for a predecessor (in this batch, or
        # stored before, perhaps by another hub on the same database):
        # what now follows their head is checked in the same transaction.
        unverified |= {r[0] for r in rows if r[-1] == CHAIN_PENDING}
        for site in sorted(unverified):
            head, walk_alerts = await _walk_forward(connection, site, advanced[site])
            advanced[site] = head
            alerts.extend(walk_alerts)
        await _save_heads(connection, heads, advanced)
        await _raise_alerts(connection, alerts)
        return inserted, rows

    async def _connection(self) -> asyncpg.Connection:
        """The connection ingestion keeps (its temporary table made once)."""
        if self._held is None:
            connection = await self.store.pool.acquire(timeout=POOL_TIMEOUT)
            try:
                await connection.execute(_CREATE_INCOMING)
            except BaseException:
                await self.store.pool.release(connection)
                raise
            self._held = connection
        return self._held

    async def _drop_connection(self) -> None:
        held, self._held = self._held, None
        if held is not None:
            with contextlib.suppress(Exception):
                await self.store.pool.release(held, timeout=POOL_TIMEOUT)

    # --- gaps that stay open -------------------------------------------------------------

    async def _watch_gaps(self) -> None:
        while True:
            await asyncio.sleep(max(0.2, min(5.0, self.gap_grace / 2)))
            try:
                await self.check_gaps()
            except asyncio.CancelledError:
                raise
            except Exception as exc:  # noqa: BLE001 (checked again next round)
                log.debug("gap check failed (%s); retrying", exc)

    async def check_gaps(self) -> int:
        """Alert each site whose next record is still missing after the grace time;
        flag the records waiting behind it ``gap``. The number of new alerts."""
        raised = 0
        async with self.store.pool.acquire() as connection, connection.transaction():
            rows = await connection.fetch(
                """SELECT r.site, min(r.seq) AS first, s.verified_seq
                   FROM audit_records r JOIN sites s USING (site)
                   WHERE r.chain = 'pending'
                     AND r.received_at < now() - make_interval(secs => $1)
                   GROUP BY r.site, s.verified_seq""", self.gap_grace)
            for row in rows:
                site, first, verified = row["site"], row["first"], row["verified_seq"]
                if first > verified + 1:
                    missing = (f"records {verified + 1} to {first - 1}" if first - 1 > verified + 1
                               else f"record {verified + 1}")
                    status = await connection.execute(
                        """INSERT INTO audit_alerts (site, kind, seq, seq_to, detail)
                           VALUES ($1, 'gap', $2, $3, $4)
                           ON CONFLICT (site, kind, seq) WHERE resolved_at IS NULL
                           DO NOTHING""",
                        site, verified + 1, first - 1,
                        f"{missing} never arrived (the records after them are unverified)")
                    if status.endswith(" 1"):
                        raised += 1
                        self.metrics.alerts.labels("gap").inc()
                        log.warning("audit alert: site %r gap: %s missing", site, missing)
                await connection.execute(
                    "UPDATE audit_records SET chain = $3 WHERE site = $1 AND seq >= $2 "
                    "AND chain = 'pending'", site, first, CHAIN_GAP)
        return raised


def check_chain(site: str, head: SiteHead, records: Sequence[wire.AuditMessage],
                ) -> tuple[SiteHead, list[tuple[Any, ...]], list[_Alert]]:
    """Check ``records`` (seq order) from the verified ``head``: the rows to
    insert with their chain state, the new head, and the alerts."""
    rows: list[tuple[Any, ...]] = []
    alerts: list[_Alert] = []
    for record in records:
        values = record.row_values()
        if record.seq == head.seq + 1:
            previous = head.hash if head.seq else GENESIS
            if chain_hash(previous, values).hex() == record.hash:
                state = CHAIN_OK
            else:
                state = CHAIN_MISMATCH
                alerts.append(_mismatch(site, record.seq))
            head = SiteHead(record.seq, bytes.fromhex(record.hash))
        elif record.seq <= head.seq:
            state = CHAIN_OK  # already stored and checked: the insert drops it
        else:
            state = CHAIN_PENDING
        rows.append((site, *values, record.hash, state))
    return head, rows, alerts


def _mismatch(site: str, seq: int) -> _Alert:
    return _Alert(site, "mismatch", seq, None,
                  f"record {seq} does not chain to record {seq - 1} "
                  "(changed, or moved from elsewhere in the log)")


async def _lock_heads(connection: asyncpg.Connection, sites: list[str],
                      ) -> tuple[dict[str, SiteHead], set[str]]:
    """Each site's verified head, its row locked until commit (a second hub on
    the same database waits instead of checking against a stale head), and
    the sites with unverified records already stored."""
    await connection.execute(
        "INSERT INTO sites (site) SELECT unnest($1::text[]) ON CONFLICT DO NOTHING", sites)
    rows = await connection.fetch(
        "SELECT site, verified_seq, verified_hash, EXISTS (SELECT 1 FROM audit_records a "
        "WHERE a.site = s.site AND a.chain IN ('pending', 'gap')) AS unverified "
        "FROM sites s WHERE site = ANY($1::text[]) ORDER BY site FOR UPDATE", sites)
    heads = {r["site"]: SiteHead(r["verified_seq"], bytes.fromhex(r["verified_hash"] or ""))
             for r in rows}
    return heads, {r["site"] for r in rows if r["unverified"]}


async def _insert(connection: asyncpg.Connection, rows: list[tuple[Any, ...]],
                  ) -> set[tuple[str, int]]:
    """COPY into a temporary table, then INSERT what is new; the (site, seq) inserted."""
    if not rows:
        return set()
    await connection.copy_records_to_table("incoming_audit", records=rows,
                                           columns=list(RECORD_COLUMNS))
    inserted = await connection.fetch(
        f"INSERT INTO audit_records ({_QUOTED}) SELECT {_QUOTED} FROM incoming_audit "  # noqa: S608
        "ORDER BY site, seq ON CONFLICT (site, seq) DO NOTHING RETURNING site, seq")
    return {(r["site"], r["seq"]) for r in inserted}


async def _conflicts(connection: asyncpg.Connection, rows: list[tuple[Any, ...]],
                     inserted: set[tuple[str, int]]) -> list[_Alert]:
    """Records sent again: harmless when identical, a ``conflict`` alert otherwise."""
    again = {(r[0], r[1]): r[-2] for r in rows if (r[0], r[1]) not in inserted}
    if not again:
        return []
    stored = await connection.fetch(
        "SELECT a.site, a.seq, a.hash FROM audit_records a "
        "JOIN unnest($1::text[], $2::bigint[]) AS k(site, seq) USING (site, seq)",
        [k[0] for k in again], [k[1] for k in again])
    return [_conflict(r["site"], r["seq"], again[(r["site"], r["seq"])], r["hash"])
            for r in stored if again[(r["site"], r["seq"])] != r["hash"]]


def _conflict(site: str, seq: int, other: str, kept: str) -> _Alert:
    return _Alert(site, "conflict", seq, None,
                  f"record {seq} came again with another hash ({other[:16]}..., "
                  f"kept {kept[:16]}...); the first one is kept")


async def _walk_forward(connection: asyncpg.Connection, site: str, head: SiteHead,
                        ) -> tuple[SiteHead, list[_Alert]]:
    """Check the stored unverified records that now follow the head."""
    rows = await connection.fetch(
        f"SELECT {_QUOTED} FROM audit_records WHERE site = $1 AND seq > $2 "  # noqa: S608
        "AND chain IN ('pending', 'gap') ORDER BY seq LIMIT $3", site, head.seq, WALK_LIMIT)
    alerts: list[_Alert] = []
    states: list[tuple[int, str]] = []
    for row in rows:
        seq = row["seq"]
        if seq != head.seq + 1:
            break
        values = tuple(row[name] for name in COLUMNS)
        previous = head.hash if head.seq else GENESIS
        if chain_hash(previous, values).hex() == row["hash"]:
            states.append((seq, CHAIN_OK))
        else:
            states.append((seq, CHAIN_MISMATCH))
            alerts.append(_mismatch(site, seq))
        head = SiteHead(seq, bytes.fromhex(row["hash"]))
    if states:
        await connection.execute(
            "UPDATE audit_records a SET chain = k.chain "
            "FROM unnest($2::bigint[], $3::text[]) AS k(seq, chain) "
            "WHERE a.site = $1 AND a.seq = k.seq",
            site, [s for s, _ in states], [c for _, c in states])
        await connection.execute(
            "UPDATE audit_alerts SET resolved_at = now(), resolution = $3 "
            "WHERE site = $1 AND kind = 'gap' AND resolved_at IS NULL AND seq_to <= $2",
            site, head.seq, "the missing records arrived and chain")
    return head, alerts



async def _save_heads(connection: asyncpg.Connection, before: dict[str, SiteHead],
                      after: dict[str, SiteHead]) -> None:
    changed = [(site, head) for site, head in after.items() if head != before.get(site)]
    if changed:
        await connection.execute(
            "UPDATE sites s SET verified_seq = k.seq, verified_hash = k.hash "
            "FROM unnest($1::text[], $2::bigint[], $3::text[]) AS k(site, seq, hash) "
            "WHERE s.site = k.site",
            [s for s, _ in changed], [h.seq for _, h in changed],
            [h.hash.hex() for _, h in changed])


async def _raise_alerts(connection: asyncpg.Connection, alerts: list[_Alert]) -> None:
    if alerts:
        await connection.executemany(
            """INSERT INTO audit_alerts (site, kind, seq, seq_to, detail)
               VALUES ($1, $2, $3, $4, $5)
               ON CONFLICT (site, kind, seq) WHERE resolved_at IS NULL DO NOTHING""",
            [(a.site, a.kind, a.seq, a.seq_to, a.detail) for a in alerts])
