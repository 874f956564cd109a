"""/metrics through a real aiohttp server: the exposition format the scraper
asks for, the process metrics, one registry per app, and label values an
outsider cannot grow."""

from __future__ import annotations

import asyncio
import logging
import re
import time
from collections.abc import Callable
from pathlib import Path

import pytest
from aiohttp.test_utils import TestClient, TestServer
from prometheus_client.openmetrics.parser import (
    text_string_to_metric_families as openmetrics_families,
)
from prometheus_client.parser import text_string_to_metric_families

from passbridge.bridge import nfc_tap
from passbridge.clock import SystemClock
from passbridge.core.model import Side
from passbridge.service.app import create_app
from passbridge.service.hardware import NfcDoorReader, Placement
from passbridge.service.metrics import OTHER
from passbridge.service.openapi import document
from passbridge.sim.nfc_card import SimulatedCard
from tests.bridge.test_nfc_door_status_paths import SITE as NFC_SITE
from tests.service_support import (
    Client,
    Rig,
    make_rig,
    metric_sample,
    remote_token,
    services_with_phones,
)

OPENMETRICS = "application/openmetrics-text"
# What Prometheus itself sends when it prefers OpenMetrics.
PROMETHEUS_ACCEPT = ("application/openmetrics-text;version=1.0.0,"
                     "application/openmetrics-text;version=0.0.1;q=0.75,"
                     "text/plain;version=0.0.4;q=0.5,*/*;q=0.1")


def _server(rig: Rig) -> TestServer:
    return TestServer(create_app(rig.services), host="127.0.0.1")


async def _unlock(client: Client, rig: Rig, door: str, user: str = "carol") -> int:
    resp = await client.post(f"/v1/doors/{door}/remote-unlock", headers={
        "Authorization": f"Bearer {remote_token(rig.keys, rig.clock, door, user)}"})
    return resp.status


async def test_classic_text_unless_the_scraper_asks_for_openmetrics() -> None:
    rig = make_rig()
    async with TestClient(_server(rig)) as client:
        assert await _unlock(client, rig, "front") == 200
        for accept in ("", "text/plain", "*/*"):
            resp = await client.get("/metrics", headers={"Accept": accept} if accept else {})
            assert resp.status == 200
            assert resp.headers["Content-Type"].startswith("text/plain; version=0.0.4")
            assert resp.headers["Vary"] == "Accept"
            text = await resp.text()
            assert "# EOF" not in text
            assert "# TYPE passbridge_decisions_total counter" in text
            assert metric_sample(text, "passbridge_decisions_total",
                                 result="granted", reason="bypass_remote") == 1
        for accept in (OPENMETRICS, PROMETHEUS_ACCEPT):
            resp = await client.get("/metrics", headers={"Accept": accept})
            assert resp.status == 200
            assert resp.headers["Content-Type"].startswith(OPENMETRICS + "; version=1.0.0")
            assert resp.headers["Vary"] == "Accept"
            text = await resp.text()
            assert text.endswith("# EOF\n")
            # OpenMetrics names the counter family without _total, the sample with it.
            assert "# TYPE passbridge_decisions counter" in text
            families = {f.name: f for f in openmetrics_families(text)}
            granted = [s for s in families["passbridge_decisions"].samples
                       if s.name == "passbridge_decisions_total"]
            assert [(s.labels, s.value) for s in granted] == [
                ({"result": "granted", "reason": "bypass_remote"}, 1)]
            assert families["passbridge_decision_seconds"].type == "histogram"


@pytest.mark.skipif(not Path("/proc/self/stat").exists(), reason="no /proc on this platform")
async def test_process_and_platform_metrics_are_exported() -> None:
    async with TestClient(_server(make_rig())) as client:
        text = await (await client.get("/metrics")).text()
    resident = metric_sample(text, "process_resident_memory_bytes")
    assert resident is not None and resident > 1_000_000
    assert metric_sample(text, "process_open_fds") is not None
    assert metric_sample(text, "process_cpu_seconds_total") is not None
    names = {f.name for f in text_string_to_metric_families(text)}
    assert "python_info" in names


async def test_two_apps_in_one_process_keep_separate_counts() -> None:
    first, second = make_rig(), make_rig()
    async with TestClient(_server(first)) as one, TestClient(_server(second)) as two:
        for _ in range(3):
            assert await _unlock(one, first, "front") == 200
        assert await _unlock(two, second, "front") == 200
        text_one = await (await one.get("/metrics")).text()
        text_two = await (await two.get("/metrics")).text()
    decisions = "passbridge_decisions_total"
    granted = {"result": "granted", "reason": "bypass_remote"}
    assert metric_sample(text_one, decisions, **granted) == 3
    assert metric_sample(text_two, decisions, **granted) == 1
    assert metric_sample(text_one, "passbridge_decision_seconds_count") == 3
    assert metric_sample(text_two, "passbridge_decision_seconds_count") == 1
    # Both registries carry the platform metrics (no clash over a global registry).
    assert "python_info{" in text_one and "python_info{" in text_two


def _label_values(text: str, label: str) -> set[str]:
    return {s.labels[label] for f in text_string_to_metric_families(text)
            for s in f.samples if label in s.labels}


async def test_a_posted_unknown_door_creates_no_series() -> None:
    """An attacker names any door it likes; the scrape does not grow with it."""
    rig = make_rig()
    ghosts = [f"ghost-{n}-{'x' * 40}" for n in range(5)]
    async with TestClient(_server(rig)) as client:
        assert await _unlock(client, rig, "front") == 200
        before = await (await client.get("/metrics")).text()
        for ghost in ghosts:
            assert await _unlock(client, rig, ghost) in (400, 401, 403, 404)
        # Radios count by door too: a door the site lacks is "other", never itself.
        rig.services.metrics.radio_event("nfc", ghosts[0], "in", "nfc_field_held")
        rig.services.metrics.nfc_exchange_refused(ghosts[1], 0x0101, 0x6A80)
        after = await (await client.get("/metrics")).text()
    assert not any(ghost in after for ghost in ghosts)
    assert _label_values(after, "door") == {OTHER}
    assert _label_values(before, "door") == set()


def _answer_with(word: bytes, process: Callable[[bytes], bytes]) -> Callable[[bytes], bytes]:
    """A phone applet that refuses the door status with ``word`` instead of its own."""
    def answer(apdu: bytes) -> bytes:
        reply = process(apdu)
        return reply[:-2] + word if reply[-2:] == b"\x67\x01" else reply
    return answer


async def test_a_phone_chosen_status_word_creates_no_series(
    monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    """The status word is the phone's to choose (65536 of them): only the
    ISO 7816 words the reader knows get a series; the log names the real one.
    Over nfcpy's udp driver, serve's reader placement, /metrics over HTTP."""
    clock = SystemClock()
    services, keystore, phones = services_with_phones(NFC_SITE, clock, {"alice-phone": "alice"})
    phone = phones["alice-phone"]
    applet = phone.applet(keystore.reader_key().public_key)
    # Any status the phone refuses (it answers 6701), then rewritten to 1234.
    monkeypatch.setattr(nfc_tap, "exchange_status", lambda result, reason: 0x0000)
    caplog.set_level(logging.WARNING, logger="passbridge.bridge.nfc_tap")
    refused = "passbridge_nfc_exchange_refused_total"
    text = ""
    with SimulatedCard(_answer_with(b"\x12\x34", applet.process)) as card:
        services.radios.append(NfcDoorReader(services, Placement(card.device, "front", Side.IN)))
        async with TestClient(TestServer(create_app(services), host="127.0.0.1")) as client:
            deadline = time.monotonic() + 20
            while time.monotonic() < deadline:
                text = await (await client.get("/metrics")).text()
                if metric_sample(text, refused, door="front", status="0000",
                                 status_word=OTHER) is not None:
                    break
                await asyncio.sleep(0.05)
    count = metric_sample(text, refused, door="front", status="0000", status_word=OTHER)
    assert count is not None and count >= 1, text
    assert _label_values(text, "status_word") == {OTHER}
    assert re.search(r"refused the door status 0000 with status word 1234", caplog.text)


def test_the_openapi_document_names_both_formats() -> None:
    content = document(simulated=False)["paths"]["/metrics"]["get"]["responses"]["200"]["content"]
    assert set(content) == {"text/plain", OPENMETRICS}
