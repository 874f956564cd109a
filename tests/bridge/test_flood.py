"""The reusable flood limits (passbridge/bridge/flood.py) on an injected clock."""

from __future__ import annotations

import logging
from datetime import UTC, datetime

import pytest

from passbridge.bridge.flood import FloodGate, FloodSettings, RateLimitFilter, TokenBucket
from passbridge.clock import ManualClock

START = datetime(2027, 3, 1, 8, 0, tzinfo=UTC)


def test_token_bucket_paces_past_its_burst() -> None:
    clock = ManualClock(START)
    bucket = TokenBucket(rate=2.0, capacity=3, clock=clock)
    assert [bucket.take() for _ in range(3)] == [0.0, 0.0, 0.0]
    assert bucket.take() == pytest.approx(0.5)  # one token short at 2 a second
    clock.advance(0.5)
    assert bucket.take() == pytest.approx(0.5)
    clock.advance(10)
    assert bucket.take() == 0.0  # refilled, never beyond the capacity
    assert [bucket.take() for _ in range(2)] == [0.0, 0.0]
    assert bucket.take() > 0


def test_gate_audits_one_per_burst_and_summarises_the_rest() -> None:
    clock = ManualClock(START)
    counted: list[str] = []
    gate = FloodGate({"door": "front"}, clock, FloodSettings(quiet=10, summary_every=60),
                     on_suppressed=counted.append)
    assert gate.admit("nfc_auth_failed", "unknown_credential") is True
    for i in range(100):
        clock.advance(0.5)
        assert gate.admit("nfc_auth_failed", "malformed" if i % 3 else "unknown_credential") \
            is False
    assert gate.admit("nfc_field_held") is True  # another kind, its own burst
    assert gate.summaries() == []  # 50 s of burst: nothing due before 60 s unreported...
    assert gate.active("nfc_auth_failed")
    clock.advance(10)  # ... and now it ended: one summary with the counts
    [summary] = gate.summaries()
    assert summary["event"] == "nfc_auth_failed_summary"
    assert summary["suppressed"] == 100 and summary["ended"] is True
    assert summary["details"] == {"malformed": 66, "unknown_credential": 34}
    assert summary["door"] == "front"
    assert counted == ["nfc_auth_failed"] * 100
    assert not gate.active("nfc_auth_failed")
    assert gate.admit("nfc_auth_failed") is True  # a new burst gets its own audited record


def test_gate_reports_a_long_burst_periodically() -> None:
    clock = ManualClock(START)
    gate = FloodGate({}, clock, FloodSettings(quiet=10, summary_every=60))
    gate.admit("k")
    reports = []
    for _ in range(130):
        clock.advance(1)
        gate.admit("k")
        reports += gate.summaries()
    assert [r["suppressed"] for r in reports] == [60, 60]
    assert all(r["ended"] is False for r in reports)
    [last] = gate.summaries(final=True)
    assert last["suppressed"] == 10 and last["ended"] is True


def test_log_filter_keeps_a_few_lines_then_counts() -> None:
    now = [0.0]
    limiter = RateLimitFilter(("nfc",), burst=2, per=60, monotonic=lambda: now[0])

    def record(name: str, msg: str) -> logging.LogRecord:
        return logging.LogRecord(name, logging.WARNING, __file__, 1, msg, None, None)

    kept = [limiter.filter(record("nfc.tag.tt4", "ISO-DEP timeout error (#%d)")) for _ in range(50)]
    assert kept.count(True) == 2
    assert limiter.filter(record("passbridge.core", "x")) is True  # not a radio logger
    now[0] = 61
    back = record("nfc.tag.tt4", "ISO-DEP timeout error (#%d)")
    assert limiter.filter(back) is True
    assert "(48 similar lines suppressed)" in str(back.msg)
