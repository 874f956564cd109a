"""The README's console screenshots (docs/screenshots/*.png), made in the
distribution's Chromium against a real ``passbridge serve --simulate`` (the
browser tests' site: tests/browser_support.py), after a few decisions made
through the tester panel itself.

    .venv/bin/python scripts/console_screenshots.py [--out docs/screenshots]
"""

from __future__ import annotations

import argparse
import sys
import tempfile
from pathlib import Path

PROJECT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(PROJECT))

from tests.browser_support import (  # noqa: E402 (the project root first)
    CHROMIUM,
    CHROMIUM_MISSING,
    WAIT_MS,
    browser,
    console_server,
    signed_in,
)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--out", type=Path, default=PROJECT / "docs" / "screenshots")
    args = parser.parse_args()
    if not CHROMIUM.exists():
        print(CHROMIUM_MISSING, file=sys.stderr)
        return 1
    args.out.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(prefix="pb-shots-") as tmp:
        server = console_server(Path(tmp))
        try:
            with browser(1280, 860) as context:
                page = signed_in(context, server)
                page.wait_for_selector('li.door[data-door="front"]', timeout=WAIT_MS)

                def tester() -> None:
                    page.click('#tabs a[data-view="tester"]')
                    page.select_option('#tester-where select[name="door"]', "front")

                def answer(text: str) -> None:
                    page.wait_for_function(
                        "t => document.getElementById('tester-answer').textContent"
                        ".startsWith(t)", arg=text, timeout=WAIT_MS)

                tester()
                page.select_option('#tester-where select[name="door"]', "side")
                page.fill('#badge-form input[name="number"]', "20002")
                page.click('#badge-form button[type="submit"]')
                answer("Granted")
                page.fill('#badge-form input[name="number"]', "55555")
                page.click('#badge-form button[type="submit"]')
                answer("Denied")
                page.select_option('#tester-where select[name="door"]', "front")
                page.click("#tap-nfc")
                answer("Waiting")
                page.click('#tabs a[data-view="doors"]')
                page.wait_for_selector("li.door .pending", timeout=WAIT_MS)
                page.screenshot(path=str(args.out / "doors.png"))

                tester()
                for key in "2468":
                    page.click(f'#keypad button[data-key="{key}"]')
                page.click('#keypad button[data-key="enter"]')
                answer("Granted")
                page.screenshot(path=str(args.out / "tester.png"))

                page.click('#tabs a[data-view="live"]')
                page.wait_for_selector("#live-table tbody tr", timeout=WAIT_MS)
                page.screenshot(path=str(args.out / "live.png"))

                page.click('#tabs a[data-view="admin"]')
                page.fill('#enrol-form input[name="user"]', "alice")
                page.click('#enrol-form button[type="submit"]')
                page.wait_for_selector("#enrol-qr svg", timeout=WAIT_MS)
                page.locator("#enrol-form").scroll_into_view_if_needed()
                page.screenshot(path=str(args.out / "admin.png"))

                page.set_viewport_size({"width": 390, "height": 844})
                page.click('#tabs a[data-view="doors"]')
                page.screenshot(path=str(args.out / "phone.png"))
        finally:
            server.process.kill()
            server.process.communicate()
    for name in ("doors", "live", "tester", "admin", "phone"):
        print(args.out / f"{name}.png")
    return 0


if __name__ == "__main__":
    sys.exit(main())
