"""``scripts/fleet-demo.sh`` (issue 12 "Done when"): NATS, PostgreSQL, a hub and
two simulated sites from this checkout, a remote unlock through the hub opens a
door at each site, and on exit nothing of it is left running or on disk."""

from __future__ import annotations

import os
import re
import subprocess

import pytest

from tests.conftest import PROJECT

pytestmark = pytest.mark.slow


def test_the_demo_unlocks_a_door_at_each_site_through_the_hub_and_cleans_up() -> None:
    done = subprocess.run(["bash", str(PROJECT / "scripts" / "fleet-demo.sh")],
                          capture_output=True, text=True, timeout=240, stdin=subprocess.DEVNULL,
                          env={**os.environ, "FLEET_DEMO_WAIT": "0"}, check=False)
    out = done.stdout + done.stderr
    assert done.returncode == 0, out
    granted = re.findall(r"^granted access_granted door=(\S+)", done.stdout, re.MULTILINE)
    assert granted == ["garage", "loading-dock"], out
    # Under per-site NATS users (hub nats-config), and no password printed.
    assert "each site its own user" in done.stdout, out
    assert re.search(r"nats://\S*@", out) is None
    work = re.search(r"removed (\S+passbridge-fleet-demo\.\w+)", done.stdout)
    assert work is not None, out
    assert not os.path.exists(work.group(1))
    running = subprocess.run(["ps", "-eo", "args"], capture_output=True, text=True,
                             check=False).stdout
    assert work.group(1) not in running
