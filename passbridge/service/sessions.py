"""Console sessions: how a person in a browser acts as a site admin.

Browsers cannot sign backend JWTs, so a person signs in with a single-use
link (service/one_time.py) and gets a session cookie instead. The rules:

- The cookie ``passbridge_session`` is HttpOnly (no script reads it),
  SameSite=Strict (no other site's page sends it), Path=/, and Secure when
  the service is reached over TLS.
- A session ends after 15 minutes without a request (idle) and 8 hours
  after sign-in whatever happens (absolute), on sign-out, and as soon as its
  user is no longer an enabled site admin of the site the service runs
  *now* (checked on every request, so a reload that removes the role or
  disables the user ends it).
- Every state-changing request made with the cookie carries the session's
  CSRF token in ``X-CSRF-Token`` (compared in constant time), and, where
  the browser says where the request came from (``Origin``,
  ``Sec-Fetch-Site``), it must be this service's own page.

Sessions live in this process's memory (docs/decisions.md, "Console
sessions"): a restart signs everybody out, and a session id from another
service instance means nothing here. Only the SHA-256 of a session id is
kept, so even this memory holds nothing a cookie could be rebuilt from.
"""

from __future__ import annotations

import hashlib
import hmac
import secrets
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any
from urllib.parse import urlsplit

from aiohttp import web

from passbridge.clock import Clock
from passbridge.core.model import Site
from passbridge.service.http import ApiError
from passbridge.service.one_time import enabled_site_admin

COOKIE = "passbridge_session"
CSRF_HEADER = "X-CSRF-Token"
IDLE_SECONDS = 15 * 60.0
ABSOLUTE_SECONDS = 8 * 3600.0
SESSION_ID_BYTES = 32
SAFE_METHODS = frozenset({"GET", "HEAD", "OPTIONS"})
# The action records of a session name the person so: ``session:<user id>``.
ACTOR_PREFIX = "session:"


@dataclass(slots=True)
class Session:
    user: str
    site: str
    csrf_token: str = field(repr=False)
    started: float  # clock.elapsed()
    started_at: datetime
    last_seen: float
    digest: bytes = field(repr=False)

    @property
    def actor(self) -> str:
        return f"{ACTOR_PREFIX}{self.user}"


class SessionStore:
    """The live sessions of one service, by the hash of their id."""

    def __init__(self, clock: Clock, *, idle: float = IDLE_SECONDS,
                 absolute: float = ABSOLUTE_SECONDS) -> None:
        self._clock = clock
        self.idle = idle
        self.absolute = absolute
        self._sessions: dict[bytes, Session] = {}

    @staticmethod
    def _digest(session_id: str) -> bytes:
        return hashlib.sha256(session_id.encode("utf-8", "replace")).digest()

    def start(self, user: str, site: str) -> tuple[str, Session]:
        """A new session; returns its id (the cookie value, given out once)."""
        self._prune()
        session_id = secrets.token_urlsafe(SESSION_ID_BYTES)
        now = self._clock.elapsed()
        session = Session(user, site, secrets.token_urlsafe(32), now, self._clock.now(), now,
                          self._digest(session_id))
        self._sessions[session.digest] = session
        return session_id, session

    def _expired(self, session: Session, now: float) -> bool:
        return now - session.last_seen >= self.idle or now - session.started >= self.absolute

    def _prune(self) -> None:
        now = self._clock.elapsed()
        for key in [k for k, s in self._sessions.items() if self._expired(s, now)]:
            del self._sessions[key]

    def find(self, session_id: str) -> Session | None:
        """The live session with this id (an expired one is ended now)."""
        session = self._sessions.get(self._digest(session_id))
        if session is None:
            return None
        if self._expired(session, self._clock.elapsed()):
            self.end(session)
            return None
        return session

    def alive(self, session: Session) -> bool:
        """Still signed in (not signed out, not expired): a live event stream asks."""
        return (self._sessions.get(session.digest) is session
                and not self._expired(session, self._clock.elapsed()))

    def touch(self, session: Session) -> None:
        session.last_seen = self._clock.elapsed()

    def end(self, session: Session) -> None:
        self._sessions.pop(session.digest, None)

    def __len__(self) -> int:
        return len(self._sessions)

    def idle_expires(self, session: Session) -> datetime:
        return self._at(session.last_seen + self.idle)

    def absolute_expires(self, session: Session) -> datetime:
        return self._at(session.started + self.absolute)

    def _at(self, elapsed: float) -> datetime:
        """An elapsed-clock instant as a wall-clock time, for the client to show."""
        moment = self._clock.moment()
        return moment.utc + timedelta(seconds=elapsed - moment.elapsed)

    def to_json(self, session: Session) -> dict[str, Any]:
        return {
            "user": session.user,
            "csrf_token": session.csrf_token,
            "idle_expires": self.idle_expires(session).isoformat(),
            "absolute_expires": self.absolute_expires(session).isoformat(),
        }


SESSIONS = web.AppKey("sessions", SessionStore)


def set_cookie(request: web.Request, response: web.StreamResponse, session_id: str,
               max_age: float) -> None:
    response.set_cookie(COOKIE, session_id, path="/", httponly=True, samesite="Strict",
                        secure=request.secure, max_age=int(max_age))


def clear_cookie(request: web.Request, response: web.StreamResponse) -> None:
    response.del_cookie(COOKIE, path="/", httponly=True, samesite="Strict",
                        secure=request.secure)


def _same_origin(request: web.Request) -> bool:
    """What the browser says about where a state-changing request came from,
    where it says anything: Origin naming this host, Sec-Fetch-Site
    ``same-origin``. (SameSite=Strict already keeps other sites' requests
    cookie-less; this is the second lock.)"""
    fetch_site = request.headers.get("Sec-Fetch-Site")
    if fetch_site is not None and fetch_site != "same-origin":
        return False
    origin = request.headers.get("Origin")
    if origin is None:
        return True
    parts = urlsplit(origin)
    return parts.scheme in ("http", "https") and parts.netloc == request.host


def check_csrf(request: web.Request, session: Session) -> None:
    """403 unless a state-changing request carries the session's CSRF token
    and comes from this service's own page."""
    if request.method in SAFE_METHODS:
        return
    sent = request.headers.get(CSRF_HEADER, "")
    if not hmac.compare_digest(sent.encode("utf-8", "replace"),
                               session.csrf_token.encode("ascii")):
        raise ApiError(403, "csrf_failed", f"a session's changes need the {CSRF_HEADER} header "
                       "the session was given")
    if not _same_origin(request):
        raise ApiError(403, "cross_origin", "a session's changes must come from this "
                       "service's own pages")


def current_session(request: web.Request, site: Site) -> Session:
    """The request's live session, still held by an enabled site admin of
    ``site`` (the site the service runs now), or 401. A session whose user
    lost the role is ended here, for good. The session is touched (idle
    expiry starts again) only once the caller is known to be allowed."""
    store = request.app[SESSIONS]
    session_id = request.cookies.get(COOKIE)
    if not session_id:
        raise ApiError(401, "missing_credentials",
                       "expected Authorization: Bearer <token> or a console session")
    session = store.find(session_id)
    if session is None:
        raise ApiError(401, "session_expired", "no such session here: it ended, expired, "
                       "or belongs to another service; sign in again")
    if session.site != site.id or not enabled_site_admin(site, session.user):
        store.end(session)
        raise ApiError(401, "session_ended", "the session ended: its user is no longer an "
                       "enabled site admin of this site")
    return session
