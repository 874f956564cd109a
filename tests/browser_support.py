"""A real browser for the console tests and the README screenshots: the
distribution's Chromium (browsers cannot be downloaded here: field-notes),
driven by Playwright, with a fresh profile each time; and a ``passbridge
serve --simulate`` whose front door is in two-factor all day.

Used by tests/process/test_console_browser.py and
scripts/console_screenshots.py, so both show the same console.
"""

from __future__ import annotations

import subprocess
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import yaml

from tests.process.test_service_process import PASSBRIDGE, Server, start_server, write_site

CHROMIUM = Path("/usr/bin/chromium")
CHROMIUM_MISSING = (
    f"{CHROMIUM} is absent: the console's browser tests need the distribution's Chromium "
    "(scripts/setup.sh installs it with apt-get when run as root)"
)
# Headless, no sandbox (containers, root), and nothing that phones home.
CHROMIUM_ARGS = [
    "--no-sandbox", "--headless", "--disable-gpu", "--disable-quic", "--no-first-run",
    "--disable-background-networking", "--disable-component-update", "--disable-sync",
]
ALWAYS = ["mon", "tue", "wed", "thu", "fri", "sat", "sun"]
# How long a page may take for anything (generous: a loaded 2-core machine).
WAIT_MS = 20_000


@contextmanager
def browser(width: int = 1280, height: int = 900) -> Iterator[Any]:
    """A Playwright browser context on a fresh profile (its user-data-dir)."""
    from playwright.sync_api import sync_playwright

    with sync_playwright() as playwright, tempfile.TemporaryDirectory(
            prefix="pb-chromium-") as profile:
        context = playwright.chromium.launch_persistent_context(
            profile, executable_path=str(CHROMIUM), headless=True, args=CHROMIUM_ARGS,
            viewport={"width": width, "height": height})
        try:
            yield context
        finally:
            context.close()


def console_site(tmp: Path) -> Path:
    """The process tests' site (alice: site admin with a phone and entry
    code 2468; bob), with the front door in two-factor all day and a lobby."""
    path = write_site(tmp)
    site = yaml.safe_load(path.read_text())
    front = next(d for d in site["doors"] if d["id"] == "front")
    front["name"] = "Front entrance"
    front["schedule"] = [{"id": "all-day", "days": ALWAYS, "start": "00:00", "end": "24:00",
                          "state": "two_factor"}]
    site["doors"].append({"id": "lobby", "name": "Lobby", "reader": True, "schedule": [
        {"id": "open-hours", "days": ALWAYS, "start": "00:00", "end": "24:00",
         "state": "unlocked"}]})
    path.write_text(yaml.safe_dump(site))
    return path


def console_server(tmp: Path) -> Server:
    """``passbridge serve --simulate`` on the console site, on a free port."""
    console_site(tmp)
    return start_server(tmp, extra=("--simulate",))


def sign_in_link(server: Server, user: str = "alice") -> str:
    """A fresh single-use link, minted by ``passbridge console-link`` on the
    server's database (another process, as an operator would)."""
    made = subprocess.run([*PASSBRIDGE, "console-link", "--user", user, "--db", str(server.db),
                           "--url", server.url], capture_output=True, text=True, timeout=60)
    assert made.returncode == 0, made.stderr
    return made.stdout.strip()


def signed_in(context: Any, server: Server) -> Any:
    """A new page of ``context``, signed in to ``server``'s console as alice
    through a fresh link, on the console page once it has started.

    The page's load event comes before the console has asked the service
    for the session, the doors and the tester: until then the tabs are
    hidden. Playwright's ``focus`` does not wait for visibility (a hidden
    link is silently not focused), so a keyboard step made that early does
    nothing, which a loaded machine turned into a failed test. A tab marked
    current means main.js has shown its first view and listens for the
    others.
    """
    page = context.new_page()
    page.goto(sign_in_link(server))
    page.wait_for_url(f"{server.url}/console", timeout=WAIT_MS)
    page.locator('#tabs a[aria-current="page"]').wait_for(state="visible", timeout=WAIT_MS)
    return page
