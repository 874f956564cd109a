"""The nats-server fixture itself: JetStream works, and a restart keeps the stream."""

from __future__ import annotations

import nats
import pytest

from passbridge.sim.local_engines import NatsServer

pytestmark = pytest.mark.slow


async def test_jetstream_stream_survives_a_restart(nats_server: NatsServer) -> None:
    client = await nats.connect(nats_server.url)
    js = client.jetstream()
    await js.add_stream(name="T", subjects=["t.>"])
    await js.publish("t.a", b"one", headers={"Nats-Msg-Id": "1"})
    again = await js.publish("t.a", b"one", headers={"Nats-Msg-Id": "1"})
    assert again.duplicate
    await client.close()
    nats_server.restart()
    client = await nats.connect(nats_server.url)
    info = await client.jetstream().stream_info("T")
    assert info.state.messages == 1
    await client.close()
