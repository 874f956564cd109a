"""What a wired reader's card decision says in the audit log (bridge/wired_reader.py):
the format and facility code the card was read with, never the card number
(rules.md keeps full card numbers out of logs)."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime

from passbridge.bridge.wired_reader import WiredReader
from passbridge.clock import ManualClock
from passbridge.core.model import Reason, Result, Side
from passbridge.protocol.wiegand import encode_card
from tests.service_support import services_with_phones

SITE = """
site: {id: hq, timezone: UTC}
doors:
  - {id: garage, reader: true}
users:
  - {id: alice, cards: ["10001"], doors: [garage]}
"""
WAIT = 10.0


async def decided(fields: dict[str, object]) -> tuple[Result, Reason, str | None, object]:
    clock = ManualClock(datetime(2026, 11, 30, 9, 0, tzinfo=UTC))
    services, _keys, _phones = services_with_phones(SITE, clock, {})
    reader = WiredReader(services.controller, clock, "garage", Side.IN, name="bus:3")
    reader.start()
    try:
        future = reader.next_decision()
        reader.card(fields)
        decision = await asyncio.wait_for(future, WAIT)
        [logged] = [e for e in await services.audit.store.page(0, 100) if e["kind"] == "decision"]
        return decision.result, decision.reason, decision.detail, logged["detail"]
    finally:
        await reader.stop()


async def test_a_good_read_names_format_and_facility_not_the_number() -> None:
    result, reason, detail, logged = await decided(
        encode_card(10001, "h10301", facility=12).event_fields())
    assert (result, reason) == (Result.GRANTED, Reason.ACCESS_GRANTED)
    assert detail == logged == "wired reader bus:3: 26-bit h10301 card, facility 12"
    assert "10001" not in detail


async def test_an_unknown_card_keeps_the_read_beside_the_denial() -> None:
    result, reason, detail, _ = await decided(
        encode_card(4242, "wiegand34", facility=300).event_fields())
    assert (result, reason) == (Result.DENIED, Reason.UNKNOWN_CREDENTIAL)
    assert detail is not None and detail.endswith("34-bit wiegand34 card, facility 300")
    assert "4242" not in detail


async def test_a_raw_read_says_it_has_no_facility_code() -> None:
    _, _, detail, _ = await decided(encode_card(10001, "raw", bits=40).event_fields())
    assert detail is not None and detail.endswith("40-bit raw card")
