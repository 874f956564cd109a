"""A site with a real SQLite audit log and a fleet link, for the fleet tests;
reading what reached the audit stream, as a hub would; and a real
``passbridge serve`` process (``serve_site``) for the process-level tests."""

from __future__ import annotations

import asyncio
import subprocess
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import nats
from cryptography.hazmat.primitives.asymmetric import ec

from passbridge.adapters.audit_sqlite import AuditLog
from passbridge.adapters.keystore import MemoryKeyStore
from passbridge.clock import ManualClock
from passbridge.core.model import Side
from passbridge.core.tokens import p256_point, public_key_to_pem
from passbridge.fleet import wire
from passbridge.fleet.site_link import FleetSettings, SiteLink
from passbridge.fleet.wire import AdminKey, AuditMessage
from passbridge.service.runtime import Services, assemble
from passbridge.service.storage import SqliteEventStore
from tests.process.test_service_process import PASSBRIDGE, READY, write_site
from tests.service_support import MONDAY_10, Keys, _p256, make_site

ADMIN_KID = "fleet-admin-1"


@dataclass
class FleetSite:
    keys: Keys
    clock: ManualClock
    keystore: MemoryKeyStore
    services: Services
    store: SqliteEventStore
    link: SiteLink
    admin: ec.EllipticCurvePrivateKey

    async def decide(self, count: int = 1) -> None:
        """``count`` card decisions at the front door (each durably audited)."""
        for _ in range(count):
            await self.services.controller.card("side", "10001", Side.IN)

    async def db_seqs(self) -> list[int]:
        rows = await self.store.rows_after(0, 1_000_000)
        return [int(r[0]) for r in rows]

    def statement(self, claims: dict[str, Any], kid: str = ADMIN_KID,
                  key: ec.EllipticCurvePrivateKey | None = None) -> bytes:
        return wire.sign_statement(key or self.admin, kid, claims).encode()


def admin_keys(admin: ec.EllipticCurvePrivateKey) -> dict[str, AdminKey]:
    return {ADMIN_KID: wire.admin_key_from_pem(ADMIN_KID, public_key_to_pem(admin))}


@asynccontextmanager
async def fleet_site(db: Path, url: str, *, keys: Keys | None = None,
                     admin: ec.EllipticCurvePrivateKey | None = None,
                     status_interval: float = wire.STATUS_INTERVAL_S,
                     **options: Any) -> AsyncIterator[FleetSite]:
    """A site ``hq`` on the SQLite file ``db`` with its link to ``url`` started;
    closed (link stopped, then the audit log) on exit. The same ``db`` and
    ``keys`` again is the same site restarted. ``options``: more
    FleetSettings (credentials, TLS files)."""
    keys = keys or Keys()
    admin = admin or _p256()
    clock = ManualClock(MONDAY_10)
    keystore = MemoryKeyStore(clock=clock)
    for cred, user in (("alice-phone", "alice"), ("bob-phone", "bob")):
        keys.phones.setdefault(cred, _p256())
        keystore.enroll_phone(cred, user, p256_point(keys.phones[cred]))
    store = SqliteEventStore(AuditLog(db, clock=clock))
    services = assemble(make_site(keys, keystore.pin_key()), clock=clock, keystore=keystore,
                        store=store)
    settings = FleetSettings(url=url, admin_keys=admin_keys(admin),
                             status_interval=status_interval, **options)
    link = SiteLink(services, settings, store)
    # As serve has it: among the radios (for /healthz), started before any
    # app here; an app in a test neither starts it twice nor closes the log.
    services.radios.insert(0, link)
    services.close_audit = False
    await link.start()
    try:
        yield FleetSite(keys, clock, keystore, services, store, link, admin)
    finally:
        await link.stop()
        await store.close()


async def eventually(check: Callable[[], Awaitable[bool]], within: float,
                     what: str) -> float:
    """Wait until ``check()`` holds; the seconds it took (AssertionError after ``within``)."""
    start = time.monotonic()
    while True:
        if await check():
            return time.monotonic() - start
        if time.monotonic() - start > within:
            raise AssertionError(f"not within {within} s: {what}")
        await asyncio.sleep(0.05)


async def stream_messages(url: str) -> list[AuditMessage]:
    """Every message of the audit stream, in stream order, parsed as the hub parses them."""
    nc = await nats.connect(url)
    try:
        js = nc.jetstream()
        try:
            info = await js.stream_info(wire.AUDIT_STREAM)
        except nats.js.errors.NotFoundError:
            return []
        found = []
        for seq in range(info.state.first_seq, info.state.last_seq + 1):
            try:
                raw = await js.get_msg(wire.AUDIT_STREAM, seq)
            except nats.js.errors.NotFoundError:
                continue
            assert raw.data is not None
            found.append(AuditMessage.from_bytes(raw.data))
        return found
    finally:
        await nc.close()


def exactly_once(messages: list[AuditMessage], db_seqs: list[int], site: str = "hq") -> None:
    """The stream holds each of the site's records once: the (site, seq) set is
    the database's and nothing is doubled."""
    pairs = [(m.site, m.seq) for m in messages]
    assert len(pairs) == len(set(pairs)), "a record reached the stream twice"
    assert set(pairs) == {(site, s) for s in db_seqs}


# --- a real `passbridge serve` process ----------------------------------------------

@dataclass
class Site:
    """A running ``passbridge serve`` process, its URL and its log file."""

    process: subprocess.Popen[bytes]
    url: str
    log: Path


def serve_site(tmp: Path, db: Path, *flags: str) -> Site:
    """A real ``passbridge serve`` process (the process tests' site file unless ``tmp``
    has one), with its output in a file (a long run must never block on a full pipe)."""
    site = tmp / "site.yaml" if (tmp / "site.yaml").exists() else write_site(tmp)
    log = tmp / f"serve-{time.monotonic_ns()}.log"
    with log.open("wb") as out:
        process = subprocess.Popen(
            [*PASSBRIDGE, "serve", "--site", str(site), "--db", str(db), "--port", "0",
             *flags], stdout=out, stderr=subprocess.STDOUT, cwd=tmp)
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        found = READY.search(log.read_text(errors="replace"))
        if found:
            return Site(process, f"http://{found.group(1)}:{found.group(2)}", log)
        if process.poll() is not None:
            break
        time.sleep(0.05)
    process.kill()
    raise AssertionError("serve did not start:\n" + log.read_text(errors="replace"))
