"""The console in a real browser (headless Chromium driven by Playwright)
against a real ``passbridge serve --simulate``: sign in through a link, a
two-factor door, a simulated phone tap and the keypad, the grant arriving
live, an override, sign-out; and the links and cookies that must not work.

Skipped, saying why, where the distribution's Chromium is absent (a laptop
without it still passes; CI installs it through scripts/setup.sh).
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from tests.browser_support import (
    CHROMIUM,
    CHROMIUM_MISSING,
    WAIT_MS,
    browser,
    console_server,
    sign_in_link,
    signed_in,
)
from tests.process.test_service_process import Server

pytestmark = [
    pytest.mark.slow,
    pytest.mark.skipif(not CHROMIUM.exists(), reason=CHROMIUM_MISSING),
]
SCENARIOS = Path(__file__).resolve().parents[1] / "scenarios"


@pytest.fixture
def server(tmp_path: Path) -> Iterator[Server]:
    srv = console_server(tmp_path)
    yield srv
    if srv.process.poll() is None:
        srv.process.kill()
        srv.process.communicate()


def expect(page: Any) -> Any:
    from playwright.sync_api import expect as playwright_expect

    playwright_expect.set_options(timeout=WAIT_MS)
    return playwright_expect(page)


def door_card(page: Any, door: str) -> Any:
    return page.locator(f'li.door[data-door="{door}"]')


def test_sign_in_tap_type_the_code_see_it_live_override_sign_out(server: Server) -> None:
    with browser() as context:
        page = context.new_page()
        problems: list[str] = []
        page.on("response", lambda r: problems.append(f"{r.status} {r.url}")
                if r.status >= 400 and r.status != 401 else None)
        page.on("pageerror", lambda e: problems.append(str(e)))

        # Sign in through a link: the fragment is redeemed, then taken off the address.
        page.goto(sign_in_link(server))
        page.wait_for_url(f"{server.url}/console", timeout=WAIT_MS)
        expect(page.locator("#who")).to_contain_text("Signed in as alice")
        cookie = next(c for c in context.cookies() if c["name"] == "passbridge_session")
        assert cookie["httpOnly"] and cookie["sameSite"] == "Strict"

        # The front door is in two-factor, set by its schedule window.
        front = door_card(page, "front")
        expect(front.locator('[data-field="state"]')).to_have_text("Card and code")
        expect(front.locator('[data-field="source"]')).to_contain_text("schedule window")
        expect(front.locator('[data-field="two-factor"]')).to_have_text("Two-factor on")

        # The live view is connected before anything happens.
        page.click('#tabs a[data-view="live"]')
        expect(page.locator("#live-state")).to_contain_text("Live")

        # A simulated phone taps: the door now waits for the entry code.
        page.click('#tabs a[data-view="tester"]')
        page.select_option('#tester-where select[name="door"]', "front")
        page.select_option('#tester-where select[name="phone"]', "alice-phone")
        page.click("#tap-nfc")
        expect(page.locator("#tester-answer")).to_have_text(
            re.compile(r"^Waiting: Entry code needed"))
        page.click('#tabs a[data-view="doors"]')
        expect(front.locator(".pending")).to_contain_text("Entry code needed: alice")

        # The code typed on the on-screen keypad (mouse for three keys, keyboard for one).
        page.click('#tabs a[data-view="tester"]')
        for key in "246":
            page.click(f'#keypad button[data-key="{key}"]')
        page.focus('#keypad button[data-key="6"]')
        page.keyboard.press("8")
        expect(page.locator("#keypad-display")).to_have_text("••••")
        page.click('#keypad button[data-key="enter"]')
        expect(page.locator("#tester-answer")).to_have_text(
            re.compile(r"^Granted: Card and entry code accepted"))

        # An uploaded scenario file runs in its own rig, with a row per step.
        page.set_input_files('#scenario-form input[name="file"]',
                             str(SCENARIOS / "lockdown-and-admin.yaml"))
        page.click('#scenario-form button[type="submit"]')
        expect(page.locator("#scenario-summary")).to_contain_text("passed")
        expect(page.locator("#scenario-table tbody tr").first).to_contain_text("card lobby")

        # The grant arrived live (server-sent events), newest first, and was announced.
        page.click('#tabs a[data-view="live"]')
        newest = page.locator("#live-table tbody tr").first
        expect(newest).to_contain_text("Card and entry code accepted")
        expect(newest).to_contain_text("alice")
        expect(page.locator("#announce")).to_contain_text("Granted")
        page.select_option('#live-filters select[name="result"]', "pending")
        expect(page.locator("#live-table tbody tr:visible").first).to_contain_text(
            "Entry code needed")
        page.select_option('#live-filters select[name="result"]', "")

        # An override, after the confirmation step; the door shows it at once.
        page.click('#tabs a[data-view="admin"]')
        page.select_option('#override-form select[name="door"]', "front")
        page.select_option('#override-form select[name="state"]', "locked")
        page.fill('#override-form input[name="minutes"]', "10")
        page.click('#override-form button[type="submit"]')
        expect(page.locator("#confirm")).to_be_visible()
        expect(page.locator("#confirm-text")).to_contain_text("Set door front to “Locked”")
        page.click("#confirm-ok")
        expect(page.locator("#status")).to_contain_text("Door front is now “Locked”")
        page.click('#tabs a[data-view="doors"]')
        expect(front.locator('[data-field="state"]')).to_have_text("Locked")
        expect(front.locator('[data-field="source"]')).to_contain_text("an override until")

        # Sign out: the session is over for this browser.
        page.click("#sign-out")
        page.wait_for_url(re.compile(r"/console/sign-in"), timeout=WAIT_MS)
        expect(page.locator("#sign-in-status")).to_have_text("You are signed out.")
        page.goto(f"{server.url}/console")
        expect(page.locator("#signed-out")).to_be_visible()
        assert not problems, problems  # no failed request (401: the signed-out checks), no error


def test_a_used_or_expired_link_is_refused(server: Server) -> None:
    from passbridge.cli.common import open_store
    from passbridge.service.one_time import mint_sign_in_link

    link = sign_in_link(server)
    store = open_store(str(server.db))
    try:
        expired, _ = mint_sign_in_link(store, "alice", issued_by="test", base=server.url,
                                       now=datetime.now(UTC) - timedelta(minutes=10),
                                       seconds=60)
    finally:
        store.close()
    with browser() as context:
        page = context.new_page()
        page.goto(link)
        page.wait_for_url(f"{server.url}/console", timeout=WAIT_MS)
        expect(page.locator("#who")).to_contain_text("alice")
        for refused in (link, expired):  # used once already; expired ten minutes ago
            context.clear_cookies()
            page.goto(refused)
            expect(page.locator("#sign-in-status")).to_contain_text("cannot be used")
            expect(page.locator("#sign-in-help")).to_be_visible()
            assert "token=" not in page.url  # taken off the address bar all the same
            page.goto(f"{server.url}/console")
            expect(page.locator("#signed-out")).to_be_visible()


def test_a_session_cookie_of_another_service_is_refused(server: Server, tmp_path: Path) -> None:
    (tmp_path / "other").mkdir()
    other = console_server(tmp_path / "other")
    try:
        with browser() as context:
            page = context.new_page()
            # Both listen on 127.0.0.1, and cookies do not tell ports apart: the
            # other service's cookie is sent to this one too.
            page.goto(sign_in_link(other))
            page.wait_for_url(f"{other.url}/console", timeout=WAIT_MS)
            expect(page.locator("#who")).to_contain_text("alice")
            assert [c["name"] for c in context.cookies(server.url)] == ["passbridge_session"]
            page.goto(f"{server.url}/console")
            expect(page.locator("#signed-out")).to_be_visible()
            expect(page.locator("#tabs")).to_be_hidden()
    finally:
        other.process.kill()
        other.process.communicate()


def test_administer_lockdown_enrolment_reload_and_the_phone_radios(server: Server) -> None:
    site_file = server.db.parent.parent / "site.yaml"
    with browser() as context:
        page = signed_in(context, server)
        lobby = door_card(page, "lobby")
        expect(lobby.locator('[data-field="state"]')).to_have_text("Unlocked")

        # Nearby and Bluetooth from the tester panel: the real verification paths.
        page.click('#tabs a[data-view="tester"]')
        page.select_option('#tester-where select[name="door"]', "front")
        page.click("#tap-nearby")
        expect(page.locator("#tester-answer")).to_have_text(
            re.compile(r"^Granted: Opened from the phone nearby"))
        page.select_option('#tester-where select[name="door"]', "side")
        page.fill("#rssi", "-120")
        page.click("#tap-ble")
        expect(page.locator("#tester-answer")).to_have_text(
            re.compile(r"^Denied: Phone too far from the door"))

        # A lockdown of one door, confirmed; then cancelled when asked to end it.
        page.click('#tabs a[data-view="admin"]')
        page.select_option('#lockdown-form select[name="door"]', "lobby")
        page.click('#lockdown-form button[value="on"]')
        expect(page.locator("#confirm-text")).to_contain_text("Lock down door lobby?")
        page.click("#confirm-ok")
        expect(page.locator("#status")).to_contain_text("Doors in lockdown: lobby")
        page.click('#lockdown-form button[value="off"]')
        page.click('#confirm button[value="cancel"]')
        page.click('#tabs a[data-view="doors"]')
        expect(lobby.locator('[data-field="state"]')).to_have_text("Locked")
        expect(lobby.locator('[data-field="source"]')).to_contain_text("a lockdown")

        # An enrolment code for alice, as text and as a QR code.
        page.click('#tabs a[data-view="admin"]')
        page.fill('#enrol-form input[name="user"]', "alice")
        page.click('#enrol-form button[type="submit"]')
        expect(page.locator("#enrol-code")).to_have_text(re.compile(r"^[0-9A-Z]{4}(-[0-9A-Z]{4})+$"))
        expect(page.locator("#enrol-qr svg path")).to_have_count(1)
        page.click("#lockouts-refresh")
        expect(page.locator("#lockout-list")).to_have_text("Nobody is locked out.")

        # A reload: a refused document names its problems and changes nothing ...
        page.fill('#reload-form textarea[name="document"]', "site: {id: hq}\ndoors: 3\n")
        page.click('#reload-form button[type="submit"]')
        page.click("#confirm-ok")
        expect(page.locator("#reload-result")).to_contain_text("Not reloaded")
        expect(page.locator("#reload-result pre")).to_contain_text("doors")
        # ... a good one renames the lobby, and the doors view shows it.
        page.fill('#reload-form textarea[name="document"]',
                  site_file.read_text().replace("name: Lobby", "name: Main lobby"))
        page.click('#reload-form button[type="submit"]')
        page.click("#confirm-ok")
        expect(page.locator("#reload-result")).to_contain_text("Reloaded.")
        page.click('#tabs a[data-view="doors"]')
        expect(lobby.locator("h3")).to_contain_text("Main lobby")

        # Every change is in the live view too.
        page.click('#tabs a[data-view="live"]')
        expect(page.locator("#live-table tbody")).to_contain_text("Lockdown started: lobby")
        expect(page.locator("#live-table tbody")).to_contain_text("Site reloaded")


def test_a_lockout_in_plain_words_listed_and_cleared(server: Server) -> None:
    with browser() as context:
        page = signed_in(context, server)
        # With the keyboard alone: a view by its tab, a change asked for and
        # called off with Escape (nothing changes).
        page.focus('#tabs a[data-view="admin"]')
        page.keyboard.press("Enter")
        expect(page.locator("#view-admin")).to_be_visible()
        page.focus('#override-form button[type="submit"]')
        page.keyboard.press("Enter")
        expect(page.locator("#confirm")).to_be_visible()
        page.keyboard.press("Escape")
        expect(page.locator("#confirm")).to_be_hidden()
        expect(page.locator("#status")).to_be_empty()
        page.click('#tabs a[data-view="tester"]')
        page.select_option('#tester-where select[name="door"]', "front")
        answer = page.locator("#tester-answer")

        def badge() -> None:
            page.fill('#badge-form input[name="number"]', "10001")
            page.click('#badge-form button[type="submit"]')

        for _ in range(5):  # five wrong codes in a row lock alice out of the front door
            badge()
            expect(answer).to_have_text(re.compile(r"^Waiting: Entry code needed"))
            for key in "1111":
                page.click(f'#keypad button[data-key="{key}"]')
            page.click('#keypad button[data-key="enter"]')
            expect(answer).to_have_text(re.compile(r"^Denied: Wrong entry code"))
        badge()
        # The first lockout is 60 s: "1 minute" (or seconds, had the machine stalled).
        expect(answer).to_have_text(
            re.compile(r"^Denied: Locked out for (1 minute|\d+ seconds)"))

        page.click('#tabs a[data-view="admin"]')
        page.click("#lockouts-refresh")
        listed = page.locator('#lockout-list li[data-user="alice"]')
        expect(listed).to_contain_text(
            re.compile(r"alice at front, for (1 minute|\d+ seconds) more"))
        listed.locator("button").click()
        expect(page.locator("#confirm-text")).to_contain_text(
            "Clear alice's lockout at door front?")
        page.click("#confirm-ok")
        expect(page.locator("#status")).to_contain_text("alice may use door front again")
        expect(page.locator("#lockout-list")).to_have_text("Nobody is locked out.")
        page.click('#tabs a[data-view="live"]')
        expect(page.locator("#live-table tbody tr").first).to_contain_text(
            "Lockout cleared: alice at front by session:alice")
        page.click('#tabs a[data-view="tester"]')
        badge()
        expect(answer).to_have_text(re.compile(r"^Waiting: Entry code needed"))


def test_live_pages_back_through_the_audit_log(server: Server) -> None:
    from tests.process.test_serve_device_keys import post
    from tests.process.test_service_process import device_keys

    reader = device_keys(server.db)[("side", "in", "reader")]
    for _ in range(60):  # more than the 50 records the live view shows first
        status, decision = post(f"{server.url}/v1/doors/side/card", reader, {"number": "20002"})
        assert (status, decision["result"]) == (200, "granted")
    with browser() as context:
        page = signed_in(context, server)  # its session_started record is the newest
        page.click('#tabs a[data-view="live"]')
        rows = page.locator("#live-table tbody tr")
        expect(rows).to_have_count(50)
        expect(rows.first).to_contain_text("alice signed in to the console")
        newest = int(rows.first.get_attribute("data-seq") or 0)
        assert newest >= 61  # the 60 badges, the sign-in, and the readers coming online
        expect(rows.last).to_have_attribute("data-seq", str(newest - 49))
        page.click("#live-older")
        expect(rows).to_have_count(min(newest, 100))
        if newest > 100:
            page.click("#live-older")
        expect(rows).to_have_count(newest)
        expect(rows.last).to_have_attribute("data-seq", "1")
        expect(page.locator("#live-older")).to_be_hidden()
        page.fill('#live-filters input[name="user"]', "nobody")
        expect(page.locator("#live-table tbody tr:visible")).to_have_count(0)
        page.fill('#live-filters input[name="user"]', "bo")
        expect(page.locator("#live-table tbody tr:visible")).to_have_count(60)
