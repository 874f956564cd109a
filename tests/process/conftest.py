"""The process tests' shared fixture: one ``passbridge serve --simulate``."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.process.test_service_process import Server, start_server


@pytest.fixture
def server(tmp_path: Path) -> Iterator[Server]:
    """A real ``serve --simulate`` process for one test, killed after it if still up."""
    srv = start_server(tmp_path, extra=("--simulate",))
    yield srv
    if srv.process.poll() is None:
        srv.process.kill()
        srv.process.communicate()
