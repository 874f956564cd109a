"""Where clients meet the service: TLS, connection limits, protocol-level errors.

aiohttp does most of this itself and is used for it: the keep-alive idle
timeout (``keepalive_timeout``), the request-line and header size limits
(``max_line_size``, ``max_field_size``, ``max_headers``), the body size limit
(``client_max_size``, in app.py), the time spent discarding a body nobody
read (``lingering_time``) and the TLS handshake timeout (asyncio's
``ssl_handshake_timeout``). Four things it does not do are added here, on
aiohttp's own ``RequestHandler`` (the protocol object of one connection):

* a header read timeout: a request head must be complete within
  ``header_timeout`` of its first byte, so a client dripping its headers a
  byte at a time cannot hold a connection for ever;
* a send timeout: a client that stops reading its answers (the socket
  buffers full, writing paused) for the body timeout is disconnected;
* a cap on open connections: one over ``max_connections`` is closed as soon
  as it is accepted, before it costs a parser or a task;
* every error aiohttp answers before any route runs (a request line or
  header it cannot parse, headers over their limits) is the API's JSON
  error shape, with ``Server: passbridge`` and no stack trace in the log.

The body read timeout is in ``http.read_body``, where handlers read bodies.
docs/decisions.md ("Connection limits") has the defaults and why.
"""

from __future__ import annotations

import asyncio
import logging
import resource
import ssl
import time
from pathlib import Path
from typing import Any

from aiohttp import web
from aiohttp.http_exceptions import BadHttpMessage, LineTooLong
from aiohttp.web_request import BaseRequest
from aiohttp.web_server import Server
from cryptography import x509
from cryptography.hazmat.primitives.serialization import load_pem_private_key

from passbridge.errors import PassbridgeError
from passbridge.service.http import (
    SERVER_HEADER,
    HttpLimits,
    error_response,
    http_exception_response,
)
from passbridge.service.metrics import Metrics

log = logging.getLogger(__name__)

# Request line and each header line; 8 KiB is aiohttp's own default and far
# above anything a passbridge client sends.
MAX_LINE_BYTES = 8190
MAX_HEADERS = 64
# File descriptors kept free for the database, the radios and the listener
# when the connection cap is fitted under the process's descriptor limit.
RESERVED_FDS = 256
REFUSAL_LOG_SECONDS = 60.0


class TlsConfigError(PassbridgeError):
    """A certificate or key ``serve`` cannot use; the message names the file."""


def tls_context(cert: Path, key: Path) -> ssl.SSLContext:
    """A server context for ``--tls-cert``/``--tls-key``: TLS 1.2 or newer,
    Python's default (secure) cipher choice. Each file is read and parsed
    first so that a problem is reported against the file that has it."""
    for flag, path in (("--tls-cert", cert), ("--tls-key", key)):
        try:
            data = path.read_bytes()
        except OSError as exc:
            raise TlsConfigError(f"{flag} {path}: {exc.strerror or exc}") from exc
        try:
            if flag == "--tls-cert":
                x509.load_pem_x509_certificates(data)
            else:
                load_pem_private_key(data, password=None)
        except (ValueError, TypeError) as exc:
            what = ("a PEM certificate" if flag == "--tls-cert"
                    else "an unencrypted PEM private key")
            raise TlsConfigError(f"{flag} {path}: not {what}") from exc
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.minimum_version = ssl.TLSVersion.TLSv1_2
    try:
        context.load_cert_chain(cert, key)
    except ssl.SSLError as exc:
        raise TlsConfigError(
            f"--tls-cert {cert} / --tls-key {key}: {exc.reason or exc} "
            "(is the key the certificate's?)") from exc
    return context


def fit_connection_cap(requested: int) -> int:
    """The connection cap this process can honour: raises the soft limit on
    open files to ``requested + RESERVED_FDS`` where the hard limit allows,
    else lowers the cap to fit and says so (one warning line)."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    wanted = requested + RESERVED_FDS
    if soft != resource.RLIM_INFINITY and soft < wanted:
        target = wanted if hard == resource.RLIM_INFINITY else min(wanted, hard)
        try:
            resource.setrlimit(resource.RLIMIT_NOFILE, (target, hard))
            soft = target
        except (ValueError, OSError):
            pass
    if soft != resource.RLIM_INFINITY and soft < wanted:
        fitted = max(1, soft - RESERVED_FDS)
        log.warning("open-file limit %d (hard %d) is too low for --max-connections %d; "
                    "capping connections at %d", soft, hard, requested, fitted)
        return fitted
    return requested


class EdgeRequestHandler(web.RequestHandler):
    """aiohttp's per-connection protocol, plus the header timeout, the
    connection cap and JSON protocol errors (see the module docstring).

    It reads three attributes of aiohttp's RequestHandler that are not
    public API (``_request_count``: request heads parsed so far,
    ``_request_in_progress``: a handler is running, ``_loop``); the edge
    tests exercise each against the installed aiohttp.
    """

    def __init__(self, manager: Server, *, site: EdgeSite, limits: HttpLimits,
                 **kwargs: Any) -> None:
        super().__init__(
            manager,
            keepalive_timeout=limits.idle_timeout,
            max_line_size=MAX_LINE_BYTES,
            max_field_size=MAX_LINE_BYTES,
            max_headers=MAX_HEADERS,
            lingering_time=limits.body_timeout,
            # Request bodies are small JSON or JWS; nobody needs to send them
            # compressed, and not decompressing leaves no decompression to abuse.
            # A compressed body is then just malformed (400).
            auto_decompress=False,
            access_log=None,  # type: ignore[arg-type]  # aiohttp: None = no access log
            **kwargs,
        )
        self._site = site
        self._header_timeout = limits.header_timeout
        self._send_timeout = limits.body_timeout
        self._admitted = False
        self._head_timer: asyncio.TimerHandle | None = None
        self._send_timer: asyncio.TimerHandle | None = None
        self._heads_when_armed = 0

    # --- the connection cap -----------------------------------------------------

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        super().connection_made(transport)
        self._admitted = self._site.admit()
        if not self._admitted:
            self.force_close()

    def connection_lost(self, exc: BaseException | None) -> None:
        self._stop_head_timer()
        self._stop_send_timer()
        if self._admitted:
            self._admitted = False
            self._site.release()
        super().connection_lost(exc)

    # --- the header read timeout ------------------------------------------------

    def data_received(self, data: bytes) -> None:
        # The first bytes of a request head start its clock; the head being
        # parsed (one more request counted) or a response finishing stops it.
        if self._head_timer is None and data and not self._request_in_progress:
            self._heads_when_armed = self._request_count
            self._head_timer = self._loop.call_later(self._header_timeout, self._head_overdue)
        super().data_received(data)
        if self._request_count != self._heads_when_armed:
            self._stop_head_timer()

    async def finish_response(
        self, request: BaseRequest, resp: web.StreamResponse, start_time: float | None
    ) -> tuple[web.StreamResponse, bool]:
        self._stop_head_timer()
        if isinstance(resp, web.HTTPException) and resp.status >= 400:
            # Raised by aiohttp before the app's middleware runs (an unmet
            # ``Expect``: 417): the same JSON shape as every other error.
            resp = http_exception_response(resp)
            resp.headers["Server"] = SERVER_HEADER
        return await super().finish_response(request, resp, start_time)

    # --- the send timeout -------------------------------------------------------

    def pause_writing(self) -> None:
        # The transport's buffer is over its high-water mark: the client has
        # stopped taking what we send (the socket buffers are full). If it has
        # not taken any of it within the body timeout, drop the connection
        # rather than hold it and its handler for ever. Armed only while
        # writing is paused, so an answer that goes straight out (nearly
        # every one) costs no timer at all.
        super().pause_writing()
        if self._send_timer is None:
            self._send_timer = self._loop.call_later(self._send_timeout, self._send_overdue)

    def resume_writing(self) -> None:
        self._stop_send_timer()
        super().resume_writing()

    def _send_overdue(self) -> None:
        self._send_timer = None
        log.debug("closing a connection that took no answer for %g s", self._send_timeout)
        if self.transport is not None:
            # aiohttp's finish_response sees the lost connection as a client
            # that went away (ConnectionResetError from its drain).
            self.transport.abort()

    def _stop_send_timer(self) -> None:
        if self._send_timer is not None:
            self._send_timer.cancel()
            self._send_timer = None

    def _head_overdue(self) -> None:
        self._head_timer = None
        if self._request_count == self._heads_when_armed and not self._request_in_progress:
            log.debug("closing a connection whose request head took over %g s",
                      self._header_timeout)
            self.force_close()

    def _stop_head_timer(self) -> None:
        if self._head_timer is not None:
            self._head_timer.cancel()
            self._head_timer = None

    # --- errors before routing --------------------------------------------------

    def handle_error(
        self,
        request: BaseRequest,
        status: int = 500,
        exc: BaseException | None = None,
        message: str | None = None,
    ) -> web.StreamResponse:
        """The JSON error for what aiohttp refuses before a route runs (and a
        last-resort 500), in place of aiohttp's text/plain or HTML page."""
        if request.writer.output_size > 0:
            # Part of a response is out already: no second one can follow.
            raise ConnectionError("response already started; cannot send an error")
        if isinstance(exc, LineTooLong) or (
            isinstance(exc, BadHttpMessage) and "too many headers" in exc.message.lower()
        ):
            response = error_response(
                431, "header_too_large",
                f"request line or header over {MAX_LINE_BYTES} bytes, or over "
                f"{MAX_HEADERS} headers")
        elif status < 500:
            # Not echoed back: the parser's message may quote the client's bytes.
            response = error_response(status, "bad_request",
                                      "the request is not well-formed HTTP/1.1")
        elif isinstance(exc, ConnectionError):
            # The client went away mid-request: nobody to answer, nothing to log
            # as an error (a client could otherwise fill the log at will).
            log.debug("client disconnected mid-request: %s", exc)
            response = error_response(500, "client_disconnected", "the connection was lost")
        else:
            self.log_exception("unhandled error on a request", exc_info=exc)
            response = error_response(500, "internal_error",
                                      "internal error; see the service log")
        if status < 500:
            log.debug("refused a malformed request: %s", exc)
        response.headers["Server"] = SERVER_HEADER
        response.force_close()
        return response


class EdgeSite(web.BaseSite):
    """A TCP listener (TLS when given a context) whose connections are
    EdgeRequestHandlers; aiohttp's TCPSite with the limits added."""

    def __init__(
        self,
        runner: web.BaseRunner,
        host: str,
        port: int,
        *,
        limits: HttpLimits,
        metrics: Metrics | None = None,
        ssl_context: ssl.SSLContext | None = None,
        backlog: int = 128,
    ) -> None:
        super().__init__(runner, ssl_context=ssl_context, backlog=backlog)
        self._host = host
        self._port = port
        self._limits = limits
        self._metrics = metrics
        self.max_connections = limits.max_connections
        self.open_connections = 0
        self._last_refusal_log = -REFUSAL_LOG_SECONDS

    @property
    def name(self) -> str:
        scheme = "https" if self._ssl_context is not None else "http"
        return f"{scheme}://{self._host}:{self._port}"

    async def start(self) -> None:
        await super().start()
        loop = asyncio.get_running_loop()
        manager = self._runner.server
        assert manager is not None  # BaseSite.__init__ checked the runner was set up

        def protocol() -> EdgeRequestHandler:
            return EdgeRequestHandler(manager, loop=loop, site=self, limits=self._limits)

        self._server = await loop.create_server(
            protocol, self._host, self._port, ssl=self._ssl_context, backlog=self._backlog,
            ssl_handshake_timeout=(self._limits.header_timeout
                                   if self._ssl_context is not None else None),
        )

    def admit(self) -> bool:
        """Count a new connection in, or refuse it when the cap is reached."""
        if self.open_connections >= self.max_connections:
            if self._metrics is not None:
                self._metrics.connection_refused()
            now = time.monotonic()
            if now - self._last_refusal_log >= REFUSAL_LOG_SECONDS:
                self._last_refusal_log = now
                log.warning("connection cap %d reached: closing new connections as they "
                            "arrive (see --max-connections)", self.max_connections)
            return False
        self.open_connections += 1
        self._report()
        return True

    def release(self) -> None:
        self.open_connections -= 1
        self._report()

    def _report(self) -> None:
        if self._metrics is not None:
            self._metrics.connections_open(self.open_connections)
