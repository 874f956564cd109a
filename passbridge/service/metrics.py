"""Prometheus text exposition, by hand: a few counters and one histogram do
not justify a client library, and the format is small and stable."""

from __future__ import annotations

import bisect
import itertools
import threading
from collections import Counter

from passbridge.core.decision import ENUM_TEXT, Decision
from passbridge.core.model import Reason

# Seconds; decisions include the durable audit write, so milliseconds matter.
LATENCY_BUCKETS: tuple[float, ...] = (
    0.0005, 0.001, 0.002, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0,
)
TOKEN_REASONS = frozenset({Reason.TOKEN_INVALID, Reason.TOKEN_EXPIRED, Reason.TOKEN_REPLAYED})


def _label(value: str) -> str:
    return value.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n")


class Metrics:
    """Counters the controller (decisions) and the routes (token refusals) feed."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._decisions: Counter[tuple[str, str]] = Counter()
        self._token_failures: Counter[tuple[str, str]] = Counter()
        self._exchange_refused: Counter[tuple[str, str, str]] = Counter()
        # Decisions by the first bucket their latency fits (the last: none fits).
        self._first_bucket = [0] * (len(LATENCY_BUCKETS) + 1)
        self._latency_sum = 0.0
        self._latency_count = 0
        self._radio_events: Counter[tuple[str, str, str, str]] = Counter()
        # HTTP connections (edge.EdgeSite): open now, and refused at the cap.
        self._connections_open = 0
        self._connections_refused = 0

    def observe_decision(self, decision: Decision, latency: float) -> None:
        """A DoorController observer: every answered decision, with its latency."""
        reason = decision.reason
        # The first bucket the latency fits; render() sums them up cumulatively.
        first = bisect.bisect_left(LATENCY_BUCKETS, latency)
        with self._lock:
            self._decisions[(ENUM_TEXT[decision.result], ENUM_TEXT[reason])] += 1
            self._latency_sum += latency
            self._latency_count += 1
            self._first_bucket[first] += 1
            if reason in TOKEN_REASONS:
                self._token_failures[("factor", ENUM_TEXT[reason])] += 1

    def token_failure(self, path: str, reason: Reason) -> None:
        """A caller's token refused before any decision (remote, nearby, admin)."""
        with self._lock:
            self._token_failures[(path, reason.value)] += 1

    def nfc_exchange_refused(self, door: str, status: int, status_word: int) -> None:
        """A phone at ``door`` refused the door status ``status`` (bridge.nfc_tap)."""
        with self._lock:
            self._exchange_refused[(door, f"{status:04X}", f"{status_word:04X}")] += 1

    def radio_event(self, radio: str, door: str, side: str, event: str) -> None:
        """Something a radio in the field did to a reader: ``nfc_field_held``
        (a card overstayed), ``nfc_auth_failed_summarised`` (a denial counted in
        a burst summary instead of its own audit row), ``auth_paced`` (the
        reader paused for failed authentications); for Bluetooth, each session
        that ended without an authenticated phone (``ble_no_answer_<reason>``,
        ``ble_not_authenticated``, ``ble_preempted``: bridge.ble_approach)."""
        with self._lock:
            self._radio_events[(radio, door, side, event)] += 1

    def connections_open(self, count: int) -> None:
        self._connections_open = count

    def connection_refused(self) -> None:
        self._connections_refused += 1

    def render(self) -> str:
        with self._lock:
            lines = [
                "# HELP passbridge_decisions_total Door decisions answered, by result and reason.",
                "# TYPE passbridge_decisions_total counter",
            ]
            for (result, reason), n in sorted(self._decisions.items()):
                lines.append(
                    f'passbridge_decisions_total{{result="{_label(result)}",'
                    f'reason="{_label(reason)}"}} {n}'
                )
            lines += [
                "# HELP passbridge_decision_seconds Time from input to recorded decision.",
                "# TYPE passbridge_decision_seconds histogram",
            ]
            cumulative = itertools.accumulate(self._first_bucket)
            for bound, n in zip(LATENCY_BUCKETS, cumulative, strict=False):
                lines.append(f'passbridge_decision_seconds_bucket{{le="{bound:g}"}} {n}')
            lines.append(f'passbridge_decision_seconds_bucket{{le="+Inf"}} {self._latency_count}')
            lines.append(f"passbridge_decision_seconds_sum {self._latency_sum:.6f}")
            lines.append(f"passbridge_decision_seconds_count {self._latency_count}")
            lines += [
                "# HELP passbridge_token_failures_total Signed tokens and requests refused.",
                "# TYPE passbridge_token_failures_total counter",
            ]
            for (path, reason), n in sorted(self._token_failures.items()):
                lines.append(
                    f'passbridge_token_failures_total{{path="{_label(path)}",'
                    f'reason="{_label(reason)}"}} {n}'
                )
            lines += [
                "# HELP passbridge_nfc_exchange_refused_total Door statuses a phone refused "
                "(it showed nothing), by door, status sent and the phone's status word.",
                "# TYPE passbridge_nfc_exchange_refused_total counter",
            ]
            for (door, status, sw), n in sorted(self._exchange_refused.items()):
                lines.append(
                    f'passbridge_nfc_exchange_refused_total{{door="{_label(door)}",'
                    f'status="{status}",status_word="{sw}"}} {n}'
                )
            lines += [
                "# HELP passbridge_radio_events_total Hostile or unusual radio activity by reader.",
                "# TYPE passbridge_radio_events_total counter",
            ]
            for (radio, door, side, event), n in sorted(self._radio_events.items()):
                lines.append(
                    f'passbridge_radio_events_total{{radio="{_label(radio)}",'
                    f'door="{_label(door)}",side="{_label(side)}",event="{_label(event)}"}} {n}'
                )
            lines += [
                "# HELP passbridge_http_connections_open Client connections open now.",
                "# TYPE passbridge_http_connections_open gauge",
                f"passbridge_http_connections_open {self._connections_open}",
                "# HELP passbridge_http_connections_refused_total Connections closed at once "
                "because --max-connections were open.",
                "# TYPE passbridge_http_connections_refused_total counter",
                f"passbridge_http_connections_refused_total {self._connections_refused}",
            ]
        return "\n".join(lines) + "\n"
