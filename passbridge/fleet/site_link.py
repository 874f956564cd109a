"""The site's side of fleet mode (``serve --fleet``): one NATS connection, four duties.

1. Audit to the hub, exactly once: every record of the site's audit log is
   published to JetStream (``passbridge.audit.<site_token>``, ``Nats-Msg-Id``
   ``<site_token>:<seq>``) oldest first; the last seq the stream acknowledged
   is kept in the site's own database (``fleet_cursor``, written by the audit
   log's writer thread on its own connection), so after an outage, a restart
   or a kill -9 the backlog goes out from there. A record published twice
   (acknowledged, then killed before the cursor was stored) is dropped by
   JetStream's duplicate window or, after it, by the hub's (site, seq) key.
2. Remote unlock through the hub: requests on ``passbridge.site.<t>.remote-unlock``
   run the very code of ``POST /v1/doors/{door}/remote-unlock``.
3. Status every ``STATUS_INTERVAL_S``: revision, newest and acknowledged seq.
4. Signed statements from the site's KV bucket: site documents and phone
   enrolments/revocations, each verified against the fleet admin keys
   (``--fleet-admin-key``), refused and audited (``fleet_refused``) when
   unsigned, unknown, for another site or stale.

Local decisions never wait for any of it: the audit hook only sets an
event, and while NATS is down the site decides, audits and serves its API as
before, reporting the link in /metrics, /healthz and a ``fleet`` change
record per transition (at most one per ``LINK_RECORD_INTERVAL_S``).

``nats`` is imported only when the link starts: a plain ``serve`` never loads it.
"""

from __future__ import annotations

import asyncio
import contextlib
import importlib.util
import logging
import ssl
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol
from urllib.parse import urlsplit, urlunsplit

from prometheus_client import Counter, Gauge

from passbridge.errors import ConfigError, PassbridgeError
from passbridge.fleet import wire
from passbridge.fleet.streams import ensure_audit_stream, site_bucket
from passbridge.fleet.wire import (
    AdminKey,
    AuditMessage,
    PhoneStatement,
    RemoteUnlockReply,
    RemoteUnlockRequest,
    SiteStatement,
    StatementRefused,
    StatusMessage,
    WireError,
)
from passbridge.service.http import error_answer
from passbridge.service.routes_decisions import decide_remote_unlock
from passbridge.service.runtime import Services

log = logging.getLogger(__name__)

# Records read from the audit log per page, and published at once (each
# publish waits for its JetStream ack; a window of them is in flight).
PAGE_ROWS = 512
PUBLISH_WINDOW = 128
PUBLISH_TIMEOUT_S = 5.0
# The acknowledged seq is stored at most this often (each store is a commit
# on the audit log's writer, beside the doors' records); a crash loses at
# most this much of the cursor, and re-publishing that is harmless.
CURSOR_STORE_INTERVAL_S = 1.0
# Without a wake-up (a record committed), the publisher still looks this often.
PUBLISH_POLL_S = 1.0
RECONNECT_WAIT_S = 1.0
CONNECT_TIMEOUT_S = 2.0
# Watch the KV bucket afresh this often even if nothing seemed wrong: an
# ordered consumer can be lost with a server restart.
KV_RESYNC_S = 60.0
LINK_RECORD_INTERVAL_S = 10.0
# Remote unlocks from the hub being decided at once; more are answered 503.
MAX_REMOTE_UNLOCKS_IN_FLIGHT = 256
CLOSE_TIMEOUT_S = 5.0

AUDIT_CURSOR = "audit"
CONFIG_CURSOR = "config"
KV_CURSOR_PREFIX = "kv."
LINK_KIND = "fleet"
REFUSED_KIND = "fleet_refused"
APPLIED_KIND = "fleet_applied"


async def _cancel(tasks: Sequence[asyncio.Task[Any]]) -> None:
    """Cancel ``tasks`` and wait for them, cancelling again while one goes on.

    Python 3.11's ``asyncio.wait_for`` can swallow a cancellation that lands
    just as its inner future completes (nats-py's connect uses it): a task
    cancelled once may carry on, so it is cancelled until it ends (for at
    most CLOSE_TIMEOUT_S; a service that is stopping must stop).
    """
    pending = {task for task in tasks if not task.done()}
    deadline = time.monotonic() + CLOSE_TIMEOUT_S
    while pending and time.monotonic() < deadline:
        for task in pending:
            task.cancel()
        _done, pending = await asyncio.wait(pending, timeout=0.1)
    if pending:
        log.warning("fleet: %d tasks did not stop within %s s", len(pending), CLOSE_TIMEOUT_S)
    for task in tasks:
        if task.done() and not task.cancelled():
            task.exception()  # retrieved, so asyncio does not log it as never seen


class FleetSetupError(PassbridgeError, ValueError):
    """A ``--fleet*`` option that cannot be used (names the flag and the file)."""


class FleetJournal(Protocol):
    """What the link needs from the site's audit log (service.storage.SqliteEventStore)."""

    async def rows_after(self, seq: int, limit: int) -> list[tuple[Any, ...]]: ...

    async def latest_seq(self) -> int: ...

    async def fleet_cursors(self) -> dict[str, int]: ...

    async def set_fleet_cursors(self, cursors: Mapping[str, int]) -> None: ...


@dataclass(frozen=True)
class FleetSettings:
    """``serve --fleet URL`` and its options (NATS credentials and TLS, as nats takes them)."""

    url: str
    creds: Path | None = None
    tls_ca: Path | None = None
    tls_cert: Path | None = None
    tls_key: Path | None = None
    admin_keys: Mapping[str, AdminKey] = field(default_factory=dict)
    status_interval: float = wire.STATUS_INTERVAL_S

    def redacted_url(self) -> str:
        """The URL without user, password or token, for logs and the audit log."""
        parts = urlsplit(self.url)
        host = parts.hostname or ""
        netloc = f"{host}:{parts.port}" if parts.port else host
        return urlunsplit((parts.scheme, netloc, parts.path, "", ""))


def admin_kid(path: Path) -> str:
    """The kid of an admin key file given without one: its name without
    ``.pem`` and then ``.pub`` (``fleet-admin.pub.pem`` -> ``fleet-admin``, the
    kid ``passbridge hub keys create`` signs with by default)."""
    name = path.name.removesuffix(".pem")
    return name.removesuffix(".pub") or name


def load_admin_keys(specs: Sequence[str]) -> dict[str, AdminKey]:
    """``--fleet-admin-key FILE`` (kid from the name: ``admin_kid``) or
    ``KID=FILE``, repeatable."""
    keys: dict[str, AdminKey] = {}
    for spec in specs:
        kid, sep, name = spec.partition("=")
        path = Path(name if sep else spec)
        kid = kid if sep else admin_kid(path)
        try:
            pem = path.read_bytes()
        except OSError as exc:
            raise FleetSetupError(f"--fleet-admin-key {spec}: cannot read {path}: "
                                  f"{exc.strerror or exc}") from exc
        try:
            key = wire.admin_key_from_pem(kid, pem)
        except WireError as exc:
            raise FleetSetupError(f"--fleet-admin-key {spec}: {path}: {exc}") from exc
        if kid in keys:
            raise FleetSetupError(f"--fleet-admin-key {spec}: kid {kid!r} given twice")
        keys[kid] = key
    return keys


def tls_context(settings: FleetSettings) -> ssl.SSLContext | None:
    """The client TLS context for ``--fleet-tls-ca/-cert/-key`` (None: none given)."""
    if settings.tls_ca is None and settings.tls_cert is None and settings.tls_key is None:
        return None
    if (settings.tls_cert is None) != (settings.tls_key is None):
        raise FleetSetupError("--fleet-tls-cert and --fleet-tls-key go together")
    try:
        context = ssl.create_default_context(
            cafile=str(settings.tls_ca) if settings.tls_ca is not None else None)
    except (OSError, ssl.SSLError) as exc:
        raise FleetSetupError(f"--fleet-tls-ca {settings.tls_ca}: {exc}") from exc
    if settings.tls_cert is not None and settings.tls_key is not None:
        try:
            context.load_cert_chain(str(settings.tls_cert), str(settings.tls_key))
        except (OSError, ssl.SSLError) as exc:
            raise FleetSetupError(f"--fleet-tls-cert {settings.tls_cert} / --fleet-tls-key "
                                  f"{settings.tls_key}: {exc}") from exc
    return context


def check_settings(settings: FleetSettings) -> None:
    """Fail at start-up, naming the flag, on what could only fail later."""
    scheme = urlsplit(settings.url).scheme
    if scheme not in ("nats", "tls", "ws", "wss") or not urlsplit(settings.url).hostname:
        raise FleetSetupError(f"--fleet {settings.redacted_url()}: expected "
                              "nats://HOST:PORT (or tls://, ws://, wss://)")
    if settings.creds is not None:
        if not settings.creds.is_file():
            raise FleetSetupError(f"--fleet-creds {settings.creds}: no such file")
        if importlib.util.find_spec("nkeys") is None:
            raise FleetSetupError("--fleet-creds needs the nkeys package "
                                  "(pip install nkeys), which nats-py uses for them")
    tls_context(settings)


class LinkMetrics:
    """The link in /metrics: up or down, backlog, what it published and answered."""

    def __init__(self) -> None:
        self.up = Gauge("passbridge_fleet_link_up",
                        "1 while the NATS link to the fleet is connected, else 0.",
                        registry=None)
        self.backlog = Gauge("passbridge_fleet_audit_backlog",
                             "Audit records the hub's stream has not acknowledged yet.",
                             registry=None)
        self.published = Counter("passbridge_fleet_audit_published",
                                 "Audit records the hub's stream acknowledged.", registry=None)
        self.remote_unlocks = Counter("passbridge_fleet_remote_unlocks",
                                      "Remote unlocks answered for the hub, by HTTP status.",
                                      ("status",), registry=None)
        self.statements = Counter("passbridge_fleet_statements",
                                  "Signed fleet statements applied or refused.",
                                  ("outcome",), registry=None)
        self.transitions = Counter("passbridge_fleet_link_transitions",
                                   "Times the NATS link went up or down.", ("to",),
                                   registry=None)

    def all(self) -> tuple[Gauge | Counter, ...]:
        return (self.up, self.backlog, self.published, self.remote_unlocks, self.statements,
                self.transitions)


class SiteLink:
    """The fleet link, run for the life of the app like a radio (services.radios)."""

    health_name = "fleet"

    def __init__(self, services: Services, settings: FleetSettings,
                 journal: FleetJournal) -> None:
        self.services = services
        self.settings = settings
        self.journal = journal
        self.metrics = LinkMetrics()
        services.metrics.add(*self.metrics.all())
        self.site_id = services.site.id
        self._wake = asyncio.Event()
        self._resync = asyncio.Event()
        self._tasks: list[asyncio.Task[None]] = []
        self._spawned: set[asyncio.Task[Any]] = set()
        self._nc: Any = None
        self._connected = False
        self._down_since: float | None = None
        self._started_at = time.time()
        self._acked = 0
        self._stored_acked = 0
        self._stored_at = 0.0
        self._latest = 0
        self._cursors: dict[str, int] = {}
        self._seen_revisions: dict[str, int] = {}
        # Link records: the state last recorded, when, and whether one is due.
        self._recorded_state: str | None = None
        self._recorded_at = 0.0
        self._record_pending = False
        self._transitions = 0
        self._stopping = False
        self._last_error = ""
        self._last_error_at = 0.0
        self._unlocks_in_flight = 0
        self._unlocks: set[asyncio.Task[None]] = set()
        self._unlock_sub: Any = None
        self._publish_problem: str | None = None

    # -- lifetime ---------------------------------------------------------------

    async def start(self) -> None:
        """Read the cursors and start connecting in the background (never blocks on NATS)."""
        if self._tasks:
            return
        self._cursors = dict(await self.journal.fleet_cursors())
        self._acked = self._stored_acked = self._cursors.get(AUDIT_CURSOR, 0)
        self._latest = await self.journal.latest_seq()
        self._update_backlog()
        self.services.audit.on_durable.append(self._on_durable)
        self._tasks = [asyncio.create_task(self._run(), name="fleet-link")]

    async def stop(self) -> None:
        """Take no new remote unlocks, let those being decided answer (like
        HTTP's drain), then stop the rest and store the cursor."""
        self._stopping = True  # closing the connection is no link transition to record
        with contextlib.suppress(ValueError):
            self.services.audit.on_durable.remove(self._on_durable)
        if self._unlock_sub is not None:
            with contextlib.suppress(Exception):
                await asyncio.wait_for(self._unlock_sub.unsubscribe(), CLOSE_TIMEOUT_S)
        if self._unlocks:
            await asyncio.wait(set(self._unlocks), timeout=CLOSE_TIMEOUT_S)
        await _cancel([*self._tasks, *self._spawned, *self._unlocks])
        self._tasks = []
        await self._store_cursor(force=True)
        nc, self._nc = self._nc, None
        if nc is not None:
            with contextlib.suppress(Exception):
                await asyncio.wait_for(nc.close(), CLOSE_TIMEOUT_S)

    def health(self) -> str | None:
        if self._connected:
            if self._publish_problem is None:
                return None
            # Connected, yet the stream takes nothing (no JetStream, limits,
            # permissions): the hub hears the site but gets no audit.
            return (f"NATS link up but audit publishing paused: {self._publish_problem}; "
                    f"{self._latest - self._acked} audit records wait for the hub")
        since = self._down_since if self._down_since is not None else self._started_at
        when = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(since))
        return (f"NATS link to {self.settings.redacted_url()} down since {when}; deciding "
                f"locally, {self._latest - self._acked} audit records wait for the hub")

    @property
    def connected(self) -> bool:
        return self._connected

    @property
    def acked_seq(self) -> int:
        return self._acked

    def _on_durable(self, seq: int) -> None:
        if seq > self._latest:
            self._latest = seq
            self._update_backlog()
        self._wake.set()

    def _update_backlog(self) -> None:
        self.metrics.backlog.set(max(self._latest - self._acked, 0))

    def _spawn(self, coro: Any) -> None:
        task = asyncio.create_task(coro)
        self._spawned.add(task)
        task.add_done_callback(self._spawned.discard)

    # -- connection ----------------------------------------------------------------

    async def _run(self) -> None:
        from nats.aio.client import Client

        options: dict[str, Any] = {
            "servers": [self.settings.url],
            "name": f"passbridge-site {self.site_id}",
            # Replies on the site's own inboxes only (NATS permissions can then
            # keep other sites from reading them: nats_permissions).
            "inbox_prefix": wire.site_inbox_prefix(self.site_id),
            "allow_reconnect": True,
            "max_reconnect_attempts": -1,
            "reconnect_time_wait": RECONNECT_WAIT_S,
            "connect_timeout": CONNECT_TIMEOUT_S,
            "disconnected_cb": self._disconnected,
            "reconnected_cb": self._reconnected,
            "error_cb": self._error,
            "closed_cb": self._disconnected,
        }
        if self.settings.creds is not None:
            options["user_credentials"] = str(self.settings.creds)
        context = tls_context(self.settings)
        if context is not None:
            options["tls"] = context
        # nats-py retries the first connect by itself (max_reconnect_attempts=-1)
        # and returns only once connected: say "down" if that takes a while.
        self._spawn(self._first_connect_grace())
        while True:
            try:
                # The client first, then connect: stop() can close it even
                # while it is still retrying its first connection.
                self._nc = Client()
                await self._nc.connect(**options)
                break
            except asyncio.CancelledError:
                raise
            except Exception as exc:
                log.warning("fleet: cannot connect to NATS at %s (%s); deciding locally, "
                            "retrying", self.settings.redacted_url(), exc)
                self._set_state(False)
                await asyncio.sleep(RECONNECT_WAIT_S)
        log.info("fleet: connected to %s", self.settings.redacted_url())
        self._set_state(True)
        nc = self._nc
        self._unlock_sub = await nc.subscribe(wire.remote_unlock_subject(self.site_id),
                                              queue=wire.SITE_QUEUE_GROUP,
                                              cb=self._remote_unlock_message)
        work = [asyncio.create_task(self._publisher(nc), name="fleet-audit"),
                asyncio.create_task(self._status(nc), name="fleet-status"),
                asyncio.create_task(self._config(nc), name="fleet-config")]
        try:
            await asyncio.gather(*work)
        finally:
            for task in work:
                task.cancel()
            for task in work:
                with contextlib.suppress(asyncio.CancelledError, Exception):
                    await task

    async def _first_connect_grace(self) -> None:
        await asyncio.sleep(CONNECT_TIMEOUT_S + RECONNECT_WAIT_S)
        if not self._connected and self._recorded_state is None:
            log.warning("fleet: NATS at %s not reachable yet; deciding locally, retrying",
                        self.settings.redacted_url())
            self._set_state(False)

    async def _disconnected(self) -> None:
        if self._connected and not self._stopping:
            log.warning("fleet: NATS link down; deciding locally, audit is kept for the hub")
        self._set_state(False)

    async def _reconnected(self) -> None:
        log.info("fleet: NATS link up again")
        self._set_state(True)
        self._wake.set()
        self._resync.set()

    async def _error(self, exc: Exception) -> None:
        """nats-py's errors (refused connections while retrying, a refused
        login): each distinct one logged once a minute, not once per retry."""
        text = f"{type(exc).__name__}: {exc}"
        now = time.monotonic()
        if text != self._last_error or now - self._last_error_at > 60:
            log.warning("fleet: NATS client: %s", text)
            self._last_error, self._last_error_at = text, now

    def _set_state(self, up: bool) -> None:
        """Record a transition in the metrics now, and in the audit log at
        most once per LINK_RECORD_INTERVAL_S (a flapping link coalesces)."""
        if self._stopping:
            return
        if up != self._connected or self._recorded_state is None:
            if up != self._connected:
                self._transitions += 1
                self.metrics.transitions.labels("up" if up else "down").inc()
            self._connected = up
            self._down_since = None if up else time.time()
            self.metrics.up.set(1 if up else 0)
            if not self._record_pending:
                self._record_pending = True
                self._spawn(self._record_link())

    async def _record_link(self) -> None:
        try:
            wait = self._recorded_at + LINK_RECORD_INTERVAL_S - time.monotonic()
            if self._recorded_state is not None and wait > 0:
                await asyncio.sleep(wait)
        finally:
            self._record_pending = False
        state = "up" if self._connected else "down"
        if state == self._recorded_state:
            return
        flaps, self._transitions = self._transitions, 0
        self._recorded_state, self._recorded_at = state, time.monotonic()
        payload: dict[str, Any] = {"link": state, "nats": self.settings.redacted_url(),
                                   "at": self.services.clock.now().isoformat()}
        if flaps > 1:
            payload["transitions"] = flaps
        try:
            await self.services.audit.record_change(LINK_KIND, payload)
        except Exception as exc:
            log.error("fleet: could not record the link going %s: %s", state, exc)

    # -- 1. audit to the hub -------------------------------------------------------

    async def _publisher(self, nc: Any) -> None:
        js = nc.jetstream(timeout=PUBLISH_TIMEOUT_S)
        stream_ready = False
        while True:
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._wake.wait(), PUBLISH_POLL_S)
            self._wake.clear()
            if not nc.is_connected:
                await self._store_cursor()
                continue
            try:
                if not stream_ready:
                    await self._ensure_stream(js)
                    stream_ready = True
                await self._publish_backlog(js)
                self._publish_problem = None
            except asyncio.CancelledError:
                raise
            except Exception as exc:
                stream_ready = False
                problem = f"{type(exc).__name__}: {exc}" if str(exc) else type(exc).__name__
                if nc.is_connected and problem != self._publish_problem:
                    log.warning("fleet: audit publishing paused (%s); %d records wait",
                                problem, self._latest - self._acked)
                self._publish_problem = problem if nc.is_connected else None
                await asyncio.sleep(RECONNECT_WAIT_S)
            await self._store_cursor()

    async def _ensure_stream(self, js: Any) -> None:
        """The audit stream, created with the contract's config if it is missing."""
        await ensure_audit_stream(js)

    async def _publish_backlog(self, js: Any) -> None:
        """Everything after the acknowledged seq, oldest first, a window at a time."""
        while True:
            rows = await self.journal.rows_after(self._acked, PAGE_ROWS)
            if not rows:
                return
            for start in range(0, len(rows), PUBLISH_WINDOW):
                window = [AuditMessage.from_row(self.site_id, row)
                          for row in rows[start:start + PUBLISH_WINDOW]]
                results = await asyncio.gather(
                    *(js.publish(m.subject, m.to_bytes(), headers={"Nats-Msg-Id": m.msg_id})
                      for m in window), return_exceptions=True)
                for message, result in zip(window, results, strict=True):
                    if isinstance(result, BaseException):
                        raise result if isinstance(result, Exception) else RuntimeError(result)
                    # Only a contiguous prefix counts: the cursor never skips a record.
                    self._acked = message.seq
                    self.metrics.published.inc()
                self._latest = max(self._latest, self._acked)
                self._update_backlog()
                await self._store_cursor()

    async def _store_cursor(self, *, force: bool = False) -> None:
        if self._acked == self._stored_acked:
            return
        now = time.monotonic()
        if not force and now - self._stored_at < CURSOR_STORE_INTERVAL_S:
            return
        acked = self._acked
        try:
            await self.journal.set_fleet_cursors({AUDIT_CURSOR: acked})
        except Exception as exc:  # the audit log is closing or failed: re-publish later
            log.warning("fleet: could not store the audit cursor: %s", exc)
            return
        self._stored_acked, self._stored_at = acked, now

    # -- 2. remote unlock through the hub ------------------------------------------

    async def _remote_unlock_message(self, msg: Any) -> None:
        # Each request on its own task: the subscription's callbacks run one
        # at a time, and one slow audit commit must not hold up the next door.
        # Bounded, like --max-connections on HTTP: whoever may publish on the
        # subject cannot grow the site's tasks without limit.
        if self._unlocks_in_flight >= MAX_REMOTE_UNLOCKS_IN_FLIGHT:
            self.metrics.remote_unlocks.labels("503").inc()
            if msg.reply:
                with contextlib.suppress(Exception):
                    await msg.respond(RemoteUnlockReply(503, {"error": {
                        "code": "busy", "message": "too many remote unlocks in flight; "
                        "nothing was decided"}}).to_bytes())
            return
        self._unlocks_in_flight += 1
        task = asyncio.create_task(self._answer_remote_unlock(msg))
        self._unlocks.add(task)
        task.add_done_callback(self._unlocks.discard)

    async def _answer_remote_unlock(self, msg: Any) -> None:
        try:
            reply = await self.remote_unlock(msg.data)
        finally:
            self._unlocks_in_flight -= 1
        self.metrics.remote_unlocks.labels(str(reply.status)).inc()
        if msg.reply:
            try:
                await msg.respond(reply.to_bytes())
            except Exception as exc:  # decided and audited; the hub times out (504)
                log.warning("fleet: remote unlock answer not sent: %s", exc)

    async def remote_unlock(self, data: bytes) -> RemoteUnlockReply:
        """One forwarded request, answered exactly as the HTTP route would."""
        try:
            request = RemoteUnlockRequest.from_bytes(data)
        except WireError as exc:
            return RemoteUnlockReply(400, {"error": {"code": "malformed_body",
                                                     "message": str(exc)}})
        try:
            decision = await decide_remote_unlock(self.services, request.door,
                                                  request.authorization)
        except Exception as exc:
            answer = error_answer(exc)
            if answer is None:
                log.exception("fleet: remote unlock failed")
                return RemoteUnlockReply(500, {"error": {
                    "code": "internal_error", "message": "internal error; see the site log"}})
            return RemoteUnlockReply(*answer)
        return RemoteUnlockReply(200, decision.to_json())

    # -- 3. status -------------------------------------------------------------------

    async def _status(self, nc: Any) -> None:
        subject = wire.status_subject(self.site_id)
        while True:
            if nc.is_connected:
                try:
                    self._latest = max(self._latest, await self.journal.latest_seq())
                    self._update_backlog()
                    status = StatusMessage(self.site_id, self.services.site.revision,
                                           self._latest, self._acked,
                                           self.services.clock.now())
                    await nc.publish(subject, status.to_bytes())
                except asyncio.CancelledError:
                    raise
                except Exception as exc:
                    log.debug("fleet: status not sent: %s", exc)
            await asyncio.sleep(self.settings.status_interval)

    # -- 4. signed statements from the KV bucket -----------------------------------

    async def _config(self, nc: Any) -> None:
        """Watch the bucket; start over after a reconnect and every KV_RESYNC_S."""
        js = nc.jetstream()
        while True:
            self._resync.clear()
            watcher = None
            try:
                if nc.is_connected:
                    watcher = await self._watch(js)
                    await self._follow(watcher)
                else:
                    await asyncio.wait_for(self._resync.wait(), KV_RESYNC_S)
            except asyncio.CancelledError:
                raise
            except TimeoutError:
                pass  # no reconnect within KV_RESYNC_S: look again
            except Exception as exc:
                log.info("fleet: KV watch interrupted (%s); watching again", exc)
                await asyncio.sleep(RECONNECT_WAIT_S)
            finally:
                if watcher is not None:
                    with contextlib.suppress(Exception):
                        await watcher.stop()

    async def _watch(self, js: Any) -> Any:
        kv = await site_bucket(js, self.site_id)
        return await kv.watchall()

    async def _follow(self, watcher: Any) -> None:
        """The latest value of every key first, applied in seq order once the
        watcher's end-of-catch-up marker (None) arrives; then each update."""
        catch_up: list[Any] | None = []
        deadline = time.monotonic() + KV_RESYNC_S
        while not self._resync.is_set():
            left = deadline - time.monotonic()
            if left <= 0:
                return
            try:
                entry = await watcher.updates(timeout=min(left, 1.0))
            except TimeoutError:  # nats.errors.TimeoutError is one too
                continue
            if catch_up is None:
                if entry is not None:
                    await self._apply_entries([entry])
            elif entry is None:
                await self._apply_entries(catch_up)
                catch_up = None
            else:
                catch_up.append(entry)

    async def _apply_entries(self, entries: list[Any]) -> None:
        checked: list[tuple[Any, wire.FleetStatement | StatementRefused]] = []
        for entry in entries:
            if entry.operation is not None or entry.value is None:
                continue  # a delete or purge marker: statements are never withdrawn that way
            if self._seen_revisions.get(entry.key) == entry.revision:
                continue
            self._seen_revisions[entry.key] = entry.revision
            # The stale check happens at apply time, in seq order.
            checked.append((entry, wire.verify_statement(
                entry.value, self.settings.admin_keys, self.site_id, applied_seq=0,
                key=entry.key)))
        checked.sort(key=lambda item: item[1].seq or 0)
        for entry, statement in checked:
            await self._apply(entry.key, statement)

    async def _apply(self, key: str, statement: wire.FleetStatement | StatementRefused) -> None:
        applied = self._cursors.get(CONFIG_CURSOR, 0)
        if not isinstance(statement, StatementRefused):
            if statement.seq == self._cursors.get(KV_CURSOR_PREFIX + key):
                return  # the very statement applied from this key before (a catch-up)
            if statement.seq <= applied:
                statement = StatementRefused(
                    wire.Refusal.STALE, f"seq {statement.seq} is not after the last "
                    f"applied {applied}", statement.seq, statement.kid)
        if isinstance(statement, StatementRefused):
            await self._refuse(key, statement)
            return
        try:
            detail = await self._apply_statement(statement)
        except ConfigError as exc:
            await self._refuse(key, StatementRefused(
                wire.Refusal.INVALID, "; ".join(str(p) for p in exc.problems[:5]),
                statement.seq, statement.kid))
            return
        except Exception as exc:
            await self._refuse(key, StatementRefused(
                wire.Refusal.INVALID, f"not applied: {exc}", statement.seq, statement.kid))
            return
        # Its record, then the cursor: a crash in between applies it again on
        # the next start (enrolments and revocations are idempotent, an
        # unchanged site document writes nothing), never leaves it unrecorded.
        await self.services.audit.record_change(APPLIED_KIND, {
            "key": key, "seq": statement.seq, "kid": statement.kid,
            "at": self.services.clock.now().isoformat(), **detail})
        self._cursors[CONFIG_CURSOR] = statement.seq
        self._cursors[KV_CURSOR_PREFIX + key] = statement.seq
        await self.journal.set_fleet_cursors({CONFIG_CURSOR: statement.seq,
                                              KV_CURSOR_PREFIX + key: statement.seq})
        self.metrics.statements.labels("applied").inc()

    async def _apply_statement(self, statement: wire.FleetStatement) -> dict[str, Any]:
        if isinstance(statement, PhoneStatement):
            keystore = self.services.keystore
            if statement.op == "revoke":
                await asyncio.to_thread(keystore.revoke_phone, statement.phone)
            else:
                assert statement.public_key is not None
                await asyncio.to_thread(keystore.enroll_phone, statement.phone,
                                        statement.user, statement.public_key)
            log.info("fleet: phone %s %s (statement %d)", statement.phone,
                     "revoked" if statement.op == "revoke" else "enrolled", statement.seq)
            return {"typ": "phone", "op": statement.op, "phone": statement.phone,
                    "user": statement.user}
        assert isinstance(statement, SiteStatement)
        return await self._apply_site(statement)

    async def _apply_site(self, statement: SiteStatement) -> dict[str, Any]:
        """The same validation and atomic swap as a local reload (its own
        ``site_reloaded`` or ``site_reload_refused`` record included)."""
        from passbridge.service.site_reload import reload_site

        outcome = await reload_site(
            self.services, statement.document, source="fleet",
            actor=f"fleet:{statement.kid}", origin=f"fleet site document (seq {statement.seq})")
        return {"typ": "site", "revision": outcome.new_revision, "changed": outcome.changed}

    async def _refuse(self, key: str, refused: StatementRefused) -> None:
        log.warning("fleet: statement under %s refused: %s (%s)", key, refused.why.value,
                    refused.detail)
        self.metrics.statements.labels("refused").inc()
        await self.services.audit.record_change(REFUSED_KIND, {
            "key": key, "why": refused.why.value, "detail": refused.detail,
            "seq": refused.seq, "kid": refused.kid,
            "at": self.services.clock.now().isoformat()})
