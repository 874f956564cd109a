"""``settled``: a new subscription is at the server before anything relies on it.

nats-py's ``flush()`` writes its PING ahead of a SUBSCRIBE still queued for
the client's flusher task, so a server that answers the PING and only then
reads on (busy elsewhere on a loaded machine) lets a message published in
between miss the new subscription: the fleet end-to-end test's spy missed a
forwarded unlock that way. Here a relay in front of a real nats-server
makes that slowness certain: it passes each PING a client sends at once
and what follows only ``HOLD_S`` later.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator
from typing import Any

import nats
import pytest

from passbridge.sim.fleet_site import settled
from passbridge.sim.local_engines import NatsServer

pytestmark = pytest.mark.slow  # a real nats-server, and a relay that holds 1 s

HOLD_S = 1.0
PING = b"PING\r\n"


async def _pipe(reader: asyncio.StreamReader, writer: asyncio.StreamWriter, *,
                hold_after_ping: bool) -> None:
    try:
        while data := await reader.read(65536):
            while hold_after_ping and (end := data.find(PING)) >= 0:
                writer.write(data[:end + len(PING)])
                await writer.drain()
                data = data[end + len(PING):]
                await asyncio.sleep(HOLD_S)
            writer.write(data)
            await writer.drain()
    except (ConnectionError, asyncio.CancelledError):
        pass
    finally:
        writer.close()


@contextlib.asynccontextmanager
async def slow_after_ping(server: NatsServer) -> AsyncIterator[str]:
    """A loopback relay to ``server``; yields its URL."""
    tasks: set[asyncio.Task[None]] = set()

    async def relay(client_in: asyncio.StreamReader, client_out: asyncio.StreamWriter) -> None:
        server_in, server_out = await asyncio.open_connection("127.0.0.1", server.port)
        for pipe in (_pipe(client_in, server_out, hold_after_ping=True),
                     _pipe(server_in, client_out, hold_after_ping=False)):
            task = asyncio.create_task(pipe)
            tasks.add(task)
            task.add_done_callback(tasks.discard)

    listener = await asyncio.start_server(relay, "127.0.0.1", 0)
    port = listener.sockets[0].getsockname()[1]
    try:
        yield f"nats://127.0.0.1:{port}"
    finally:
        listener.close()
        for task in list(tasks):
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)


async def test_a_message_published_once_settled_reaches_the_new_subscription(
        nats_server: NatsServer) -> None:
    async with slow_after_ping(nats_server) as url:
        watcher = await nats.connect(url)
        publisher = await nats.connect(nats_server.url)
        try:
            seen = asyncio.Event()

            async def keep(_msg: Any) -> None:
                seen.set()
            await watcher.subscribe("passbridge.test.watched", cb=keep)
            await watcher.flush()  # answered ahead of the SUBSCRIBE: not enough alone
            await settled(watcher)
            await publisher.publish("passbridge.test.watched", b"once")
            await publisher.flush()
            await asyncio.wait_for(seen.wait(), 10)
        finally:
            await publisher.close()
            await watcher.close()
