"""The service's Prometheus metrics, on prometheus-client.

The library owns the exposition formats (classic text and OpenMetrics, picked
by the scraper's ``Accept`` header) and the process metrics; passbridge only
says what it counts. Each app gets its own ``CollectorRegistry`` (never the
library's global one): tests run several apps in one process, and a global
registry would mix their counts or refuse the second app's metrics as
duplicates.

Label values are bounded. Results, reasons, token paths, radios, sides and
radio events are chosen by code from fixed sets. A door label is a door of
the site or ``other``; a phone's status word is one of the ISO 7816 words the
reader knows or ``other``: nothing a caller or a card sends can create a new
time series (an attacker could otherwise grow the scrape without bound).
"""

from __future__ import annotations

from collections.abc import Callable, Container, Iterable, Iterator
from typing import Protocol

from aiohttp import web
from prometheus_client import (
    CollectorRegistry,
    Counter,
    Gauge,
    Histogram,
    PlatformCollector,
    ProcessCollector,
)
from prometheus_client.exposition import choose_encoder, generate_latest
from prometheus_client.metrics import MetricWrapperBase
from prometheus_client.metrics_core import GaugeMetricFamily, Metric
from prometheus_client.registry import Collector

from passbridge.core.decision import ENUM_TEXT, Decision
from passbridge.core.model import Reason, Side
from passbridge.protocol.apdu import SW

# Seconds; decisions include the durable audit write, so milliseconds matter,
# and a slow disk (fsync) can take seconds: those must not vanish into +Inf.
LATENCY_BUCKETS: tuple[float, ...] = (
    0.0005, 0.001, 0.002, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0,
)
TOKEN_REASONS = frozenset({Reason.TOKEN_INVALID, Reason.TOKEN_EXPIRED, Reason.TOKEN_REPLAYED})
# The label for a value outside its fixed set (an unknown door, a status word
# the reader does not know).
OTHER = "other"
_KNOWN_STATUS_WORDS = frozenset(int(sw) for sw in SW)


class WiredReaderStatus(Protocol):
    """One wired reader as /metrics shows it (service.osdp.ReaderStatus)."""

    @property
    def door(self) -> str: ...

    @property
    def side(self) -> Side: ...

    @property
    def online(self) -> bool: ...

    @property
    def last_reply_age(self) -> float | None: ...


WiredReaderSource = Callable[[], Iterable[WiredReaderStatus]]
# Where a live site reload came from (service/site_reload.py).
RELOAD_SOURCES = frozenset({"sighup", "api", "fleet"})


class Metrics:
    """What the controller (decisions), the routes (token refusals), the
    radios and the HTTP edge count; a prometheus-client collector.

    The metric objects are not registered anywhere by themselves: an app
    registers this collector on its own registry (:func:`app_registry`).
    prometheus-client's metrics are thread safe, which matters because the
    NFC reader thread counts radio events.
    """

    def __init__(self, doors: Callable[[], Container[str]]) -> None:
        """``doors``: the site's door ids now (the only door label values)."""
        self._doors = doors
        # Counter names drop ``_total``; the library adds it back on the
        # samples, so the exported names are the ones the docs list.
        self._decisions = Counter(
            "passbridge_decisions", "Door decisions answered, by result and reason.",
            ("result", "reason"), registry=None)
        self._latency = Histogram(
            "passbridge_decision_seconds", "Time from input to recorded decision.",
            buckets=LATENCY_BUCKETS, registry=None)
        self._token_failures = Counter(
            "passbridge_token_failures", "Signed tokens and requests refused.",
            ("path", "reason"), registry=None)
        self._exchange_refused = Counter(
            "passbridge_nfc_exchange_refused",
            "Door statuses a phone refused (it showed nothing), by door, status sent and "
            "the phone's status word.", ("door", "status", "status_word"), registry=None)
        self._radio_events = Counter(
            "passbridge_radio_events", "Hostile or unusual radio activity by reader.",
            ("radio", "door", "side", "event"), registry=None)
        self._connections_open = Gauge(
            "passbridge_http_connections_open", "Client connections open now.", registry=None)
        self._connections_refused = Counter(
            "passbridge_http_connections_refused",
            "Connections closed at once because --max-connections were open.", registry=None)
        self._site_reloads = Counter(
            "passbridge_site_reloads",
            "Live site reloads by source (sighup, api, fleet, other) and result "
            "(applied, unchanged, refused).", ("source", "result"), registry=None)
        self._one_time_refused = Counter(
            "passbridge_one_time_code_failures",
            "Sign-in links and enrolment codes refused (unknown, used, expired, "
            "rate_limited, not_site_admin), by kind: counted, never written to the audit log.",
            ("kind", "reason"), registry=None)
        # Wired (OSDP) readers, read at scrape time from each running bus.
        self._wired: list[WiredReaderSource] = []
        # Exposition order: decisions and their latency first, as before the library.
        self._all: tuple[MetricWrapperBase, ...] = (
            self._decisions, self._latency, self._token_failures, self._exchange_refused,
            self._radio_events, self._connections_open, self._connections_refused,
            self._site_reloads, self._one_time_refused)

    def add(self, *collectors: MetricWrapperBase) -> None:
        """More metrics in the same scrape, from an opt-in part (the fleet
        link): they are only there when that part runs."""
        self._all = (*self._all, *collectors)

    def _door(self, door: str) -> str:
        return door if door in self._doors() else OTHER

    def observe_decision(self, decision: Decision, latency: float) -> None:
        """A DoorController observer: every answered decision, with its latency."""
        reason = decision.reason
        self._decisions.labels(ENUM_TEXT[decision.result], ENUM_TEXT[reason]).inc()
        self._latency.observe(latency)
        if reason in TOKEN_REASONS:
            self._token_failures.labels("factor", ENUM_TEXT[reason]).inc()

    def token_failure(self, path: str, reason: Reason) -> None:
        """A caller's token refused before any decision (remote, nearby, admin)."""
        self._token_failures.labels(path, reason.value).inc()

    def nfc_exchange_refused(self, door: str, status: int, status_word: int) -> None:
        """A phone at ``door`` refused the door status ``status`` (bridge.nfc_tap).

        ``status`` is the reader's own value; ``status_word`` is whatever the
        phone answered, so only the words the reader knows get their own
        series (the log line names the exact word)."""
        word = f"{status_word:04X}" if status_word in _KNOWN_STATUS_WORDS else OTHER
        self._exchange_refused.labels(self._door(door), f"{status:04X}", word).inc()

    def radio_event(self, radio: str, door: str, side: str, event: str) -> None:
        """Something a radio in the field did to a reader: ``nfc_field_held``
        (a card overstayed), ``nfc_auth_failed_summarised`` (a denial counted in
        a burst summary instead of its own audit row), ``auth_paced`` (the
        reader paused for failed authentications); for Bluetooth, each session
        that ended without an authenticated phone (``ble_no_answer_<reason>``,
        ``ble_not_authenticated``, ``ble_preempted``: bridge.ble_approach)."""
        self._radio_events.labels(radio, self._door(door), side, event).inc()

    def site_reload(self, source: str, result: str) -> None:
        """A live reload (service/site_reload.py); ``source`` outside the known
        ones is counted as ``other``, so a caller cannot add series."""
        known = source if source in RELOAD_SOURCES else OTHER
        self._site_reloads.labels(known, result).inc()
    def one_time_refused(self, kind: str, reason: str) -> None:
        """A sign-in link or enrolment code refused; ``kind`` and ``reason``
        come from fixed sets in the code (service/one_time.py)."""
        self._one_time_refused.labels(kind, reason).inc()

    def connections_open(self, count: int) -> None:
        self._connections_open.set(count)

    def connection_refused(self) -> None:
        self._connections_refused.inc()

    def watch_wired_readers(self, source: WiredReaderSource) -> None:
        """Show these wired readers (one OSDP bus) in the scrape while it runs."""
        self._wired.append(source)

    def unwatch_wired_readers(self, source: WiredReaderSource) -> None:
        if source in self._wired:
            self._wired.remove(source)

    def wired_readers(self) -> list[WiredReaderStatus]:
        """Every wired reader of the running buses now (the doors API shows
        which are online, door by door)."""
        return [reader for source in list(self._wired) for reader in source()]

    def _wired_families(self) -> tuple[GaugeMetricFamily, GaugeMetricFamily]:
        online = GaugeMetricFamily(
            "passbridge_osdp_readers_online",
            "Wired OSDP readers online now (secure channel up where required).")
        age = GaugeMetricFamily(
            "passbridge_osdp_reader_last_reply_seconds",
            "Seconds since each wired OSDP reader last replied to a poll "
            "(absent until it first replies).", labels=("door", "side"))
        count = 0
        for reader in self.wired_readers():
            count += reader.online
            if reader.last_reply_age is not None:
                age.add_metric((self._door(reader.door), reader.side.value),
                               round(reader.last_reply_age, 3))
        online.add_metric((), count)
        return online, age

    def collect(self) -> Iterator[Metric]:
        """The prometheus-client collector protocol."""
        for metric in self._all:
            yield from metric.collect()
        yield from self._wired_families()

    def describe(self) -> Iterable[Metric]:
        """Names for the registry's duplicate check, without sampling."""
        for metric in self._all:
            yield from metric.describe()
        yield from self._wired_families()

    def render(self) -> str:
        """The classic text exposition of these metrics alone (tests, debugging)."""
        return generate_latest(self).decode()


METRICS_REGISTRY = web.AppKey("metrics_registry", CollectorRegistry)


def app_registry(metrics: Collector) -> CollectorRegistry:
    """One app's registry (the site service's Metrics, the fleet hub's
    HubMetrics): its own metrics, the process (CPU, memory,
    open files, from /proc where the platform has it) and the Python platform."""
    registry = CollectorRegistry()
    registry.register(metrics)
    ProcessCollector(registry=registry)
    PlatformCollector(registry=registry)
    return registry


def exposition(registry: CollectorRegistry, accept: str) -> tuple[bytes, str]:
    """The scrape body and its content type: OpenMetrics when the scraper
    asks for ``application/openmetrics-text``, the classic text otherwise."""
    encoder, content_type = choose_encoder(accept)
    return encoder(registry), content_type
