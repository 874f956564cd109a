"""The hub's HTTP API: remote unlock forwarded to sites, the fleet view, publishing.

``passbridge hub`` serves it (cli/hub.py). The hub decides nothing: a remote
unlock is the app backend's own signed request, handed to the site over
NATS request/reply exactly as received, and the site's answer comes back
as is. A site that does not answer in time gets a 504 ``site_timeout``
with no decision in it (the site may still have decided; its audit stream
will say). A site with no subscriber on the bus is 503 ``site_offline``:
then nothing can have decided.

Every other route is for fleet operators: a bearer JWT signed by an
operator key the hub trusts (``--operator-key ID=FILE``), checked like a
site checks its backends (PyJWT, pinned algorithm, ``aud`` =
``passbridge-hub``, life <= 60 s, single-use ``jti``), with
``role: fleet_operator``. ``/healthz`` and ``/metrics`` are open, like a
site's.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import AsyncIterator, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from aiohttp import hdrs, web

from passbridge.clock import Clock, SystemClock
from passbridge.core.tokens import ReplayCache
from passbridge.core.tokens.backend_requests import verify_backend_request
from passbridge.core.tokens.jws import TokenRejection
from passbridge.core.tokens.trust import VerificationKey
from passbridge.fleet import wire
from passbridge.fleet.hub.ingest import Ingest
from passbridge.fleet.hub.metrics import HubMetrics
from passbridge.fleet.hub.openapi import document
from passbridge.fleet.hub.publish import AdminSigner, Publisher, PublishError, phone_point
from passbridge.fleet.hub.store import AuditQuery, HubStore, alert_json, record_json
from passbridge.service.app import metrics
from passbridge.service.http import (
    LIMITS,
    MAX_BODY_BYTES,
    ApiError,
    HttpLimits,
    bearer,
    json_body,
    json_errors,
    read_body,
    set_server_header,
)
from passbridge.service.metrics import METRICS_REGISTRY, app_registry

log = logging.getLogger(__name__)

HUB_AUDIENCE = "passbridge-hub"
OPERATOR_ROLE = "fleet_operator"
MAX_PAGE = 1000
STATUS_SAVE_SECONDS = 1.0


@dataclass
class SiteStatus:
    """The newest status heartbeat of one site, and when the hub heard it."""

    status: wire.StatusMessage
    heard: datetime


@dataclass
class HubConfig:
    nats_url: str
    pg_url: str
    operator_keys: Mapping[str, VerificationKey] = field(default_factory=dict)
    signer: AdminSigner | None = None
    unlock_timeout: float = wire.REMOTE_UNLOCK_TIMEOUT_S
    gap_grace: float | None = None
    ack_wait: float | None = None
    nats_options: Mapping[str, Any] = field(default_factory=dict)


class Hub:
    """NATS, PostgreSQL, ingestion, the status view and the publisher of one hub."""

    def __init__(self, config: HubConfig, *, clock: Clock | None = None) -> None:
        self.config = config
        self.clock = clock or SystemClock()
        self.metrics = HubMetrics(self.fleet_gauges)
        self.replay = ReplayCache()
        self.statuses: dict[str, SiteStatus] = {}
        self._unsaved: dict[str, SiteStatus] = {}
        self._saver: asyncio.Task[None] | None = None
        # Sites whose KV bucket exists or is being created (see _on_status).
        self._bucketed: set[str] = set()
        self._bucket_tasks: set[asyncio.Task[None]] = set()
        self.started = time.monotonic()
        self.nc: Any = None
        self.store: HubStore | None = None
        self.ingest: Ingest | None = None
        self.publisher: Publisher | None = None

    async def start(self) -> None:
        import nats

        self.store = await HubStore.open(self.config.pg_url)
        options: dict[str, Any] = {"max_reconnect_attempts": -1, "reconnect_time_wait": 0.5,
                                   "name": "passbridge-hub", **self.config.nats_options}
        self.nc = await nats.connect(self.config.nats_url, **options)
        js = self.nc.jetstream()
        self.ingest = Ingest(self.store, self.metrics)
        if self.config.gap_grace is not None:
            self.ingest.gap_grace = self.config.gap_grace
        if self.config.ack_wait is not None:
            self.ingest.ack_wait = self.config.ack_wait
        await self.ingest.start(js)
        # Before the status subscription: a heartbeat makes it create the site's bucket.
        self.publisher = Publisher(self.store, js, self.config.signer, self.metrics)
        await self.nc.subscribe(wire.STATUS_SUBJECTS, cb=self._on_status)
        self._saver = asyncio.create_task(self._save_statuses(), name="hub-statuses")

    async def stop(self) -> None:
        for task in list(self._bucket_tasks):
            task.cancel()
        if self._saver is not None:
            self._saver.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._saver
        if self.ingest is not None:
            await self.ingest.stop()
        if self.nc is not None:
            with contextlib.suppress(Exception):
                await self.nc.close()
        if self.store is not None:
            await self.store.close()

    async def _on_status(self, msg: Any) -> None:
        try:
            status = wire.StatusMessage.from_bytes(msg.data)
            if wire.site_from_subject(msg.subject) != status.site:
                raise wire.WireError(f"status of {status.site!r} on {msg.subject}")
        except wire.WireError as exc:
            log.debug("status message refused: %s", exc)
            return
        heard = self.clock.now().astimezone(UTC)
        self.statuses[status.site] = SiteStatus(status, heard)
        self._unsaved[status.site] = self.statuses[status.site]
        if status.site not in self._bucketed and self.publisher is not None:
            self._bucketed.add(status.site)
            task = asyncio.create_task(self._create_bucket(status.site),
                                       name=f"hub-bucket-{status.site}")
            self._bucket_tasks.add(task)
            task.add_done_callback(self._bucket_tasks.discard)

    async def _create_bucket(self, site: str) -> None:
        """The site's KV bucket, created on its first heartbeat: a site locked to
        its own subjects (``hub nats-config``) may not create it, and would
        otherwise retry (a permissions violation each time) until the hub first
        publishes to it. In a task, so that heartbeats never wait on JetStream;
        a failure is tried again on the site's next heartbeat."""
        assert self.publisher is not None
        try:
            await self.publisher.bucket(site)
        except asyncio.CancelledError:
            raise
        except Exception as exc:  # noqa: BLE001 (the next heartbeat tries again)
            log.warning("KV bucket of site %r not created (%s); trying again on its "
                        "next heartbeat", site, exc)
            self._bucketed.discard(site)

    async def _save_statuses(self) -> None:
        """Every second, the heartbeats heard since, in one statement: the NATS
        callback never waits for PostgreSQL (a database outage would otherwise
        stall the heartbeats and show every site offline)."""
        assert self.store is not None
        while True:
            await asyncio.sleep(STATUS_SAVE_SECONDS)
            batch, self._unsaved = self._unsaved, {}
            if not batch:
                continue
            try:
                await self.store.record_statuses([
                    (site, s.status.revision, s.status.last_seq, s.status.acked_seq,
                     s.status.at, s.heard) for site, s in batch.items()])
            except asyncio.CancelledError:
                raise
            except Exception as exc:  # noqa: BLE001 (kept for the next round)
                log.debug("site statuses not stored (%s); kept in memory", exc)
                self._unsaved = {**batch, **self._unsaved}

    def online(self, heard: datetime | None) -> bool:
        if heard is None:
            return False
        return (self.clock.now() - heard).total_seconds() <= wire.ONLINE_WITHIN_S

    def fleet_gauges(self) -> dict[str, float]:
        online = [s for s in self.statuses.values() if self.online(s.heard)]
        return {
            "sites_known": float(len(self.statuses)),
            "sites_online": float(len(online)),
            "audit_backlog_records": float(sum(
                max(0, s.status.last_seq - s.status.acked_seq) for s in online)),
            "max_link_lag_seconds": max(
                ((s.heard - s.status.at).total_seconds() for s in online), default=0.0),
        }


HUB = web.AppKey("hub", Hub)


def operator_keys(entries: Mapping[str, VerificationKey]) -> dict[str, VerificationKey]:
    """Operator keys with their id bound as issuer (a key cannot speak for another)."""
    return {kid: VerificationKey(kid, key.alg, key.key, kid) for kid, key in entries.items()}


def require_operator(request: web.Request) -> str:
    """The operator's ``iss:sub``, or 401 (no or bad token) / 403 (not an operator)."""
    hub = request.app[HUB]
    token = bearer(request)
    checked = verify_backend_request(
        token, hub.config.operator_keys, site_id=HUB_AUDIENCE, clock=hub.clock,
        replay_cache=hub.replay, require_door=False)
    if isinstance(checked, TokenRejection):
        raise ApiError(401, checked.reason.value, checked.detail)
    if checked.role != OPERATOR_ROLE:
        raise ApiError(403, "forbidden", f"fleet operators only (role {OPERATOR_ROLE})")
    return f"{checked.issuer}:{checked.user}"


# --- remote unlock ------------------------------------------------------------------------


async def remote_unlock(request: web.Request) -> web.Response:
    import nats.errors

    hub = request.app[HUB]
    site, door = request.match_info["site"], request.match_info["door"]
    raw = await read_body(request)
    body: dict[str, Any] | None = None
    if raw.strip():
        body = await json_body(request)
    forward = wire.RemoteUnlockRequest(
        door, request.headers.get(hdrs.AUTHORIZATION, ""), body)
    started = time.perf_counter()
    try:
        reply = await hub.nc.request(wire.remote_unlock_subject(site), forward.to_bytes(),
                                     timeout=hub.config.unlock_timeout)
    except nats.errors.NoRespondersError:
        hub.metrics.remote_unlocks.labels("site_offline").inc()
        raise ApiError(503, "site_offline",
                       f"site {site!r} is not connected to the fleet; nothing was decided"
                       ) from None
    except TimeoutError:
        hub.metrics.remote_unlocks.labels("site_timeout").inc()
        raise ApiError(504, "site_timeout",
                       f"site {site!r} did not answer within {hub.config.unlock_timeout:g} s; "
                       "no decision is known here (the site may have decided: see its audit)"
                       ) from None
    except (nats.errors.ConnectionClosedError, nats.errors.ConnectionReconnectingError,
            nats.errors.Error) as exc:
        hub.metrics.remote_unlocks.labels("site_offline").inc()
        raise ApiError(503, "fleet_unavailable",
                       f"the hub is not connected to NATS ({type(exc).__name__}); "
                       "nothing was decided") from None
    try:
        answer = wire.RemoteUnlockReply.from_bytes(reply.data)
    except wire.WireError as exc:
        hub.metrics.remote_unlocks.labels("bad_reply").inc()
        raise ApiError(502, "bad_site_reply", f"site {site!r} answered outside the "
                       f"contract ({exc})") from None
    hub.metrics.remote_latency.observe(time.perf_counter() - started)
    hub.metrics.remote_unlocks.labels(str(answer.status)).inc()
    return web.json_response(answer.body, status=answer.status)


# --- the fleet view -----------------------------------------------------------------------


def _iso(moment: datetime | None) -> str | None:
    return None if moment is None else moment.astimezone(UTC).isoformat()


async def list_sites(request: web.Request) -> web.Response:
    require_operator(request)
    hub = request.app[HUB]
    assert hub.store is not None
    degraded: dict[str, Any] = {}
    try:
        stored = {r["site"]: r for r in await hub.store.sites()}
    except Exception as exc:  # noqa: BLE001 (the live view is in memory)
        # PostgreSQL away: the heartbeats still say who is online.
        log.debug("fleet view without the database: %s", exc)
        stored, degraded = {}, {"database": f"unavailable ({type(exc).__name__})"}
    out = []
    for site in sorted(set(stored) | set(hub.statuses)):
        row = stored.get(site)
        live = hub.statuses.get(site)
        heard = live.heard if live else (row["last_heard"] if row else None)
        status_at = live.status.at if live else (row["status_at"] if row else None)
        last_seq = live.status.last_seq if live else (row["last_seq"] if row else None)
        acked = live.status.acked_seq if live else (row["acked_seq"] if row else None)
        out.append({
            "site": site,
            "online": hub.online(heard),
            "last_heard": _iso(heard),
            "link_lag_seconds": (round((heard - status_at).total_seconds(), 3)
                                 if heard is not None and status_at is not None else None),
            "revision": live.status.revision if live else (row["revision"] if row else None),
            "last_seq": last_seq,
            "acked_seq": acked,
            "audit_backlog": (max(0, last_seq - acked)
                              if last_seq is not None and acked is not None else None),
            "hub_records": int(row["stored"]) if row else 0,
            "hub_verified_seq": int(row["verified_seq"]) if row else 0,
            "open_alerts": int(row["open_alerts"]) if row else 0,
        })
    return web.json_response({"sites": out, **degraded})


def _int_param(request: web.Request, name: str, default: int, *, low: int, high: int) -> int:
    text = request.query.get(name)
    if text is None:
        return default
    try:
        value = int(text)
    except ValueError:
        raise ApiError(400, "bad_query", f"query {name}: expected an integer") from None
    if not low <= value <= high:
        raise ApiError(400, "bad_query", f"query {name}: expected {low} to {high}")
    return value


async def list_audit(request: web.Request) -> web.Response:
    """``?site=&door=&user=&result=&kind=&after=&limit=``: in arrival order;
    ``next`` is the ``after`` of the next page (null at the end)."""
    require_operator(request)
    hub = request.app[HUB]
    assert hub.store is not None
    limit = _int_param(request, "limit", 100, low=1, high=MAX_PAGE)
    query = AuditQuery(
        site=request.query.get("site"), door=request.query.get("door"),
        user=request.query.get("user"), result=request.query.get("result"),
        kind=request.query.get("kind"),
        after=_int_param(request, "after", 0, low=0, high=2**62), limit=limit)
    rows = await hub.store.audit_page(query)
    records = [record_json(r) for r in rows]
    return web.json_response({"records": records,
                              "next": records[-1]["id"] if len(records) == limit else None})


async def list_alerts(request: web.Request) -> web.Response:
    require_operator(request)
    hub = request.app[HUB]
    assert hub.store is not None
    rows = await hub.store.alerts(
        site=request.query.get("site"), open_only=request.query.get("open") in ("1", "true"),
        after=_int_param(request, "after", 0, low=0, high=2**62),
        limit=_int_param(request, "limit", 100, low=1, high=MAX_PAGE))
    return web.json_response({"alerts": [alert_json(r) for r in rows]})


# --- publishing ---------------------------------------------------------------------------


def _publisher(request: web.Request) -> Publisher:
    publisher = request.app[HUB].publisher
    assert publisher is not None
    return publisher


@contextlib.contextmanager
def _publish_errors() -> Any:
    try:
        yield
    except PublishError as exc:
        raise ApiError(422, "unprocessable", exc.message, field=exc.field) from None


async def put_document(request: web.Request) -> web.Response:
    """The body is the site document itself (YAML or JSON text), or
    ``{"document": "<text>"}``."""
    operator = require_operator(request)
    site = request.match_info["site"]
    text = (await read_body(request)).decode("utf-8", "replace")
    if request.content_type == "application/json":
        data = await json_body(request)
        if isinstance(data.get("document"), str):
            text = data["document"]
    with _publish_errors():
        published = await _publisher(request).site_document(site, text)
    log.info("%s published a site document for %r (seq %d)", operator, site, published.seq)
    return web.json_response(published.to_json())


async def enrol_phone(request: web.Request) -> web.Response:
    """``{"user": ..., "public_key": <base64url of the 65-byte point>}``."""
    operator = require_operator(request)
    site, phone = request.match_info["site"], request.match_info["phone"]
    data = await json_body(request)
    with _publish_errors():
        user = data.get("user")
        if not isinstance(user, str):
            raise PublishError("user", "must be a non-empty string")
        published = await _publisher(request).enrol(site, phone, user,
                                                    phone_point(data.get("public_key")))
    log.info("%s enrolled phone %r of %r at %r (seq %d)", operator, phone, user, site,
             published.seq)
    return web.json_response(published.to_json())


async def revoke_phone(request: web.Request) -> web.Response:
    """``?user=`` (or ``{"user": ...}``); defaults to the user of the phone's
    last enrolment published here."""
    operator = require_operator(request)
    site, phone = request.match_info["site"], request.match_info["phone"]
    data = await json_body(request, empty_ok=True)
    user = request.query.get("user") or data.get("user")
    with _publish_errors():
        published = await _publisher(request).revoke(
            site, phone, user if isinstance(user, str) else None)
    log.info("%s revoked phone %r at %r (seq %d)", operator, phone, site, published.seq)
    return web.json_response(published.to_json())


# --- health, metrics, the API document ---------------------------------------------------


async def openapi(_request: web.Request) -> web.Response:
    """Open, like the site's: app-backend developers read it to call remote unlock."""
    return web.json_response(document())


async def healthz(request: web.Request) -> web.Response:
    hub = request.app[HUB]
    nats_ok = bool(hub.nc is not None and hub.nc.is_connected)
    body: dict[str, Any] = {
        "status": "ok" if nats_ok else "degraded",
        "nats": "connected" if nats_ok else "disconnected",
        "uptime_seconds": round(time.monotonic() - hub.started, 3),
        "sites_online": int(hub.fleet_gauges()["sites_online"]),
    }
    return web.json_response(body)


async def _hub_lifetime(app: web.Application) -> AsyncIterator[None]:
    hub = app[HUB]
    await hub.start()
    try:
        yield
    finally:
        await hub.stop()


def create_hub_app(hub: Hub, *, limits: HttpLimits | None = None,
                   manage: bool = True) -> web.Application:
    """``manage``: start and stop the hub with the app (False when the caller does)."""
    app = web.Application(client_max_size=MAX_BODY_BYTES, middlewares=[json_errors])
    app[HUB] = hub
    app[LIMITS] = limits if limits is not None else HttpLimits()
    app[METRICS_REGISTRY] = app_registry(hub.metrics)
    app.on_response_prepare.append(set_server_header)
    if manage:
        app.cleanup_ctx.append(_hub_lifetime)
    app.router.add_post("/v1/sites/{site}/doors/{door}/remote-unlock", remote_unlock)
    app.router.add_get("/v1/sites", list_sites)
    app.router.add_get("/v1/audit", list_audit)
    app.router.add_get("/v1/alerts", list_alerts)
    app.router.add_put("/v1/sites/{site}/document", put_document)
    app.router.add_post("/v1/sites/{site}/phones/{phone}", enrol_phone)
    app.router.add_delete("/v1/sites/{site}/phones/{phone}", revoke_phone)
    app.router.add_get("/healthz", healthz)
    app.router.add_get("/metrics", metrics)
    app.router.add_get("/v1/openapi.json", openapi)
    return app

