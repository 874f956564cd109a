"""The hub's Prometheus metrics (one collector per app, like service/metrics.py).

No label takes a site id: site ids arrive in messages, and a label value
per site would let any publisher on the bus grow the scrape without bound.
Per-site figures are in ``GET /v1/sites``; here are the fleet's totals.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator

from prometheus_client import Counter, Histogram
from prometheus_client.metrics_core import GaugeMetricFamily, Metric

from passbridge.service.metrics import LATENCY_BUCKETS

# The alert kinds of ingest.py, and the outcomes of a remote unlock: fixed sets.
ALERT_KINDS = ("mismatch", "gap", "conflict", "malformed")


class HubMetrics:
    """Audit ingestion, alerts, remote unlocks and the fleet's liveness."""

    def __init__(self, fleet: Callable[[], dict[str, float]] | None = None) -> None:
        """``fleet``: gauge values read at scrape time (sites online, backlog ...)."""
        self._fleet = fleet
        self.records = Counter(
            "passbridge_hub_audit_records",
            "Audit records received, by outcome (stored, or a duplicate dropped).",
            ("outcome",), registry=None)
        self.alerts = Counter(
            "passbridge_hub_audit_alerts",
            "Audit chain alerts raised (mismatch, gap, conflict, malformed).",
            ("kind",), registry=None)
        self.store_errors = Counter(
            "passbridge_hub_store_errors",
            "Audit batches PostgreSQL did not take (retried until it does).", registry=None)
        self.remote_unlocks = Counter(
            "passbridge_hub_remote_unlocks",
            "Remote unlocks forwarded to sites, by outcome (the site's HTTP status, "
            "or site_timeout / no_site).", ("outcome",), registry=None)
        self.remote_latency = Histogram(
            "passbridge_hub_remote_unlock_seconds",
            "From request to the site's answer, through NATS.",
            buckets=LATENCY_BUCKETS, registry=None)
        self.published = Counter(
            "passbridge_hub_config_published",
            "Signed statements put into site buckets, by type (site, phone).",
            ("typ",), registry=None)
        for kind in ALERT_KINDS:
            self.alerts.labels(kind)
        for outcome in ("stored", "duplicate"):
            self.records.labels(outcome)
        self._all = (self.records, self.alerts, self.store_errors, self.remote_unlocks,
                     self.remote_latency, self.published)

    def collect(self) -> Iterator[Metric]:
        for metric in self._all:
            yield from metric.collect()
        if self._fleet is not None:
            for name, value in self._fleet().items():
                gauge = GaugeMetricFamily(f"passbridge_hub_{name}", _FLEET_HELP.get(name, name))
                gauge.add_metric([], value)
                yield gauge

    def describe(self) -> Iterable[Metric]:
        for metric in self._all:
            yield from metric.describe()


_FLEET_HELP = {
    "sites_known": "Sites the hub has heard from.",
    "sites_online": "Sites heard within the last 15 s.",
    "audit_backlog_records": "Records sites hold that the stream has not acknowledged yet "
                             "(sum over sites, from their status).",
    "max_link_lag_seconds": "The largest status delay among online sites.",
}
