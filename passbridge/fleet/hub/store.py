"""The hub's PostgreSQL: aggregated audit, alerts, sites, and the config sequence.

PostgreSQL is the hub's only memory: a hub restarted (or a second hub on the
same database) picks up where the last one stopped. The uniqueness of
``(site, seq)`` in ``audit_records`` is the durable half of exactly-once
delivery (JetStream's ``Nats-Msg-Id`` window is the quick half): a record
delivered twice is inserted once, whatever crashed in between.

The schema is plain SQL in ``MIGRATIONS``, applied in order at start under
an advisory lock (two hubs starting together do not race) and recorded in
``schema_migrations``; a migration is never edited once released, only
followed by a new one.

Every audit record keeps the columns of the site's SQLite row as the site
sent them (text, integer or null), so the hub, or anyone with read access,
can recompute the site's hash chain from this table alone.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import asyncpg

from passbridge.adapters.audit_chain import COLUMNS

# Chain states of a stored record (docs/decisions.md "Fleet hub: the chain check"):
CHAIN_OK = "ok"  # chains to the hub's copy of the record before it
CHAIN_MISMATCH = "mismatch"  # does not: edited, or moved (an alert names it)
CHAIN_PENDING = "pending"  # the record before it has not arrived yet: unverified
CHAIN_GAP = "gap"  # still missing after the grace time: unverified, alerted
UNVERIFIED = (CHAIN_PENDING, CHAIN_GAP)

# Seconds one statement may take; a server that vanished mid-statement must
# not hang the hub (asyncpg then raises, and the caller retries).
COMMAND_TIMEOUT = 60.0
# Heartbeats are written in the background; a slow or absent database
# only delays them (the hub answers from memory meanwhile).
STATUS_TIMEOUT = 5.0
# An arbitrary constant: the advisory lock the migrations run under.
_MIGRATION_LOCK = 0x70617373

MIGRATIONS: tuple[str, ...] = (
    # 1: the first schema.
    """
    CREATE TABLE audit_records (
        site           text        NOT NULL,
        seq            bigint      NOT NULL,
        kind           text        NOT NULL,
        at             text        NOT NULL,
        decision_id    text,
        result         text,
        reason         text,
        door           text,
        side           text,
        "user"         text,
        credential     text,
        factor         text,
        state          text,
        state_source   text,
        revision       text,
        unlock_seconds bigint,
        detail         text,
        payload        text,
        hash           text        NOT NULL,
        chain          text        NOT NULL,
        received_at    timestamptz NOT NULL DEFAULT now(),
        id             bigserial   UNIQUE,
        CONSTRAINT audit_records_site_seq UNIQUE (site, seq)
    );
    CREATE INDEX audit_records_unverified ON audit_records (site, seq)
        WHERE chain IN ('pending', 'gap');
    CREATE INDEX audit_records_door ON audit_records (door, id);
    CREATE INDEX audit_records_user ON audit_records ("user", id);

    CREATE TABLE audit_alerts (
        id          bigserial   PRIMARY KEY,
        site        text        NOT NULL,
        kind        text        NOT NULL,
        seq         bigint,
        seq_to      bigint,
        detail      text        NOT NULL,
        raised_at   timestamptz NOT NULL DEFAULT now(),
        resolved_at timestamptz,
        resolution  text
    );
    CREATE UNIQUE INDEX audit_alerts_once ON audit_alerts (site, kind, seq)
        WHERE resolved_at IS NULL;

    -- One row per site the hub has heard of: the chain head it has verified
    -- (every record up to verified_seq is here and checked), and the newest
    -- status heartbeat.
    CREATE TABLE sites (
        site          text        PRIMARY KEY,
        verified_seq  bigint      NOT NULL DEFAULT 0,
        verified_hash text,
        revision      text,
        last_seq      bigint,
        acked_seq     bigint,
        status_at     timestamptz,
        last_heard    timestamptz
    );

    -- The config sequence per site (strictly increasing across all keys of
    -- the site's bucket), and every statement published.
    CREATE TABLE config_seq (
        site text   PRIMARY KEY,
        seq  bigint NOT NULL
    );
    CREATE TABLE config_published (
        site         text        NOT NULL,
        seq          bigint      NOT NULL,
        key          text        NOT NULL,
        typ          text        NOT NULL,
        summary      text        NOT NULL,
        statement    text        NOT NULL,
        published_at timestamptz NOT NULL DEFAULT now(),
        PRIMARY KEY (site, seq)
    );
    """,
)

# The columns a record is written with, in order (COPY and INSERT ... SELECT).
RECORD_COLUMNS: tuple[str, ...] = ("site", *COLUMNS, "hash", "chain")
_QUOTED = ", ".join(f'"{c}"' for c in RECORD_COLUMNS)


async def migrate(connection: asyncpg.Connection) -> int:
    """Apply the migrations not applied yet; the schema version now."""
    async with connection.transaction():
        await connection.execute("SELECT pg_advisory_xact_lock($1)", _MIGRATION_LOCK)
        await connection.execute(
            "CREATE TABLE IF NOT EXISTS schema_migrations ("
            " version integer PRIMARY KEY, applied_at timestamptz NOT NULL DEFAULT now())")
        done = await connection.fetchval(
            "SELECT coalesce(max(version), 0) FROM schema_migrations")
        for version, sql in enumerate(MIGRATIONS, start=1):
            if version > done:
                await connection.execute(sql)
                await connection.execute(
                    "INSERT INTO schema_migrations (version) VALUES ($1)", version)
    return len(MIGRATIONS)


@dataclass(frozen=True, slots=True)
class SiteHead:
    """What the hub has verified of one site's chain: every record up to ``seq``."""

    seq: int
    hash: bytes


@dataclass(frozen=True, slots=True)
class AuditQuery:
    """A page of the aggregated audit: filters, and ``after`` = the last ``id`` seen."""

    site: str | None = None
    door: str | None = None
    user: str | None = None
    result: str | None = None
    kind: str | None = None
    after: int = 0
    limit: int = 100


class HubStore:
    """The hub's tables over an asyncpg pool."""

    def __init__(self, pool: asyncpg.Pool) -> None:
        self.pool = pool

    @classmethod
    async def open(cls, url: str, *, min_size: int = 1, max_size: int = 10) -> HubStore:
        pool = await asyncpg.create_pool(url, min_size=min_size, max_size=max_size,
                                         command_timeout=COMMAND_TIMEOUT)
        store = cls(pool)
        async with pool.acquire() as connection:
            await migrate(connection)
        return store

    async def close(self) -> None:
        await self.pool.close()

    # --- chain heads and unverified records ------------------------------------------

    async def heads(self) -> dict[str, SiteHead]:
        rows = await self.pool.fetch("SELECT site, verified_seq, verified_hash FROM sites")
        return {r["site"]: SiteHead(r["verified_seq"], bytes.fromhex(r["verified_hash"] or ""))
                for r in rows}

    # --- the fleet view --------------------------------------------------------------

    async def record_statuses(
            self, statuses: list[tuple[str, str, int, int, datetime, datetime]]) -> None:
        """The newest heartbeat of each site: (site, revision, last_seq,
        acked_seq, the site's time, when the hub heard it)."""
        async with self.pool.acquire(timeout=STATUS_TIMEOUT) as connection:
            await connection.executemany(
                """INSERT INTO sites (site, revision, last_seq, acked_seq, status_at, last_heard)
                   VALUES ($1, $2, $3, $4, $5, $6)
                   ON CONFLICT (site) DO UPDATE SET revision = $2, last_seq = $3,
                       acked_seq = $4, status_at = $5, last_heard = $6""",
                statuses, timeout=STATUS_TIMEOUT)

    async def sites(self) -> list[asyncpg.Record]:
        return list(await self.pool.fetch(
            """SELECT s.site, s.revision, s.last_seq, s.acked_seq, s.status_at, s.last_heard,
                      s.verified_seq,
                      (SELECT count(*) FROM audit_records a WHERE a.site = s.site) AS stored,
                      (SELECT count(*) FROM audit_alerts l
                        WHERE l.site = s.site AND l.resolved_at IS NULL) AS open_alerts
               FROM sites s ORDER BY s.site"""))

    async def audit_page(self, query: AuditQuery) -> list[asyncpg.Record]:
        """Records in arrival order (``id``), filtered; keyset paging by ``after``."""
        where: list[str] = ["id > $1"]
        args: list[object] = [query.after]
        for column, value in (("site", query.site), ("door", query.door),
                              ('"user"', query.user), ("result", query.result),
                              ("kind", query.kind)):
            if value is not None:
                args.append(value)
                where.append(f"{column} = ${len(args)}")
        args.append(query.limit)
        sql = (f"SELECT id, {_QUOTED}, received_at FROM audit_records "  # noqa: S608
               f"WHERE {' AND '.join(where)} ORDER BY id LIMIT ${len(args)}")
        return list(await self.pool.fetch(sql, *args))

    async def alerts(self, *, site: str | None = None, open_only: bool = False,
                     after: int = 0, limit: int = 100) -> list[asyncpg.Record]:
        where: list[str] = ["id > $1"]
        args: list[object] = [after]
        if site is not None:
            args.append(site)
            where.append(f"site = ${len(args)}")
        if open_only:
            where.append("resolved_at IS NULL")
        args.append(limit)
        return list(await self.pool.fetch(
            f"SELECT * FROM audit_alerts WHERE {' AND '.join(where)} "  # noqa: S608
            f"ORDER BY id LIMIT ${len(args)}", *args))

    async def counts(self) -> Mapping[str, int]:
        """Stored records per site (tests and the fleet view)."""
        rows = await self.pool.fetch("SELECT site, count(*) AS n FROM audit_records GROUP BY site")
        return {r["site"]: int(r["n"]) for r in rows}

    # --- config sequence -------------------------------------------------------------

    async def next_config_seq(self, connection: asyncpg.Connection, site: str) -> int:
        """The next seq of ``site``'s bucket, committed before it is used: a seq is
        never handed out twice, even if the KV put after it fails (a gap is harmless;
        the site only needs seqs to grow)."""
        value = await connection.fetchval(
            """INSERT INTO config_seq (site, seq) VALUES ($1, 1)
               ON CONFLICT (site) DO UPDATE SET seq = config_seq.seq + 1 RETURNING seq""",
            site)
        return int(value)

    async def record_published(self, connection: asyncpg.Connection, site: str, seq: int,
                               key: str, typ: str, summary: str, statement: str) -> None:
        await connection.execute(
            """INSERT INTO config_published (site, seq, key, typ, summary, statement)
               VALUES ($1, $2, $3, $4, $5, $6)""", site, seq, key, typ, summary, statement)


def record_json(record: asyncpg.Record) -> dict[str, Any]:
    """An audit record as the API answers it: the site's columns, hash, chain state."""
    out: dict[str, Any] = {"id": record["id"], "site": record["site"]}
    for column in (*COLUMNS, "hash", "chain"):
        out[column] = record[column]
    out["received_at"] = record["received_at"].isoformat()
    return out


def alert_json(record: asyncpg.Record) -> dict[str, Any]:
    out = dict(record)
    for name in ("raised_at", "resolved_at"):
        if out[name] is not None:
            out[name] = out[name].isoformat()
    return out

