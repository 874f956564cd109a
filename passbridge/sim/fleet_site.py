"""Simulated fleet sites: lightweight publishers that follow the fleet contract.

A real site (``passbridge serve --fleet``) publishes the rows of its SQLite
audit log; a simulated one makes rows of the same shape, chains them with
``audit_chain.chain_hash`` exactly as the audit store does, and publishes
them as a site would (subject per site, ``Nats-Msg-Id``, acknowledged by
JetStream), with status heartbeats and, if asked, a remote-unlock
responder that answers a fixed decision. Tests, the scale test and the
fleet benchmark use them to stand in for many sites without running many
services; none of this is on the production path.

``python -m passbridge.sim.fleet_site --nats URL --sites N --records R``
runs N of them in one process (the scale test starts a few).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

from passbridge.adapters.audit_chain import GENESIS, chain_hash
from passbridge.fleet import wire

EPOCH = datetime(2026, 11, 29, 8, 0, tzinfo=UTC)


def audit_row(seq: int, *, door: str = "front", user: str = "alice",
              result: str = "granted") -> tuple[str | int | None, ...]:
    """One decision row, ``audit_chain.COLUMNS`` values in order (deterministic by seq)."""
    at = (EPOCH + timedelta(milliseconds=seq)).isoformat()
    return (seq, "decision", at, f"d-{seq:012d}", result,
            "access_granted" if result == "granted" else "no_access", door, "in", user,
            f"{user}-phone", "remote", "normal", "schedule:0", "r1", 5 if result == "granted"
            else None, "simulated", json.dumps({"sim": True, "seq": seq}))


@dataclass
class SimulatedSite:
    """One site's audit chain and its NATS side (see the module docstring)."""

    site: str
    seq: int = 0
    acked: int = 0
    previous: bytes = GENESIS
    revision: str = "r1"
    messages: list[wire.AuditMessage] = field(default_factory=list)

    def next_record(self, **row: Any) -> wire.AuditMessage:
        """The next record of this site, chained to the one before."""
        self.seq += 1
        values = audit_row(self.seq, **row)
        digest = chain_hash(self.previous, values)
        self.previous = digest
        message = wire.AuditMessage.from_row(self.site, (*values, digest.hex()))
        self.messages.append(message)
        return message

    async def publish(self, js: Any, message: wire.AuditMessage) -> None:
        """As a site does: JetStream publish with ``Nats-Msg-Id``; returns once
        the stream acknowledged (the site's cursor would move then)."""
        await js.publish(message.subject, message.to_bytes(),
                         headers={"Nats-Msg-Id": message.msg_id})
        self.acked = max(self.acked, message.seq)

    async def keep_publishing(self, js: Any, done: asyncio.Event, *,
                              retry: float = 0.2) -> None:
        """What a site's link does: publish every record the stream has not
        acknowledged, oldest first, retrying through outages, until ``done`` is
        set and nothing is left."""
        import nats.errors

        while True:
            if self.acked < self.seq:
                try:
                    await self.publish(js, self.messages[self.acked])
                except (nats.errors.Error, OSError):  # timeouts are both
                    await asyncio.sleep(retry)
            elif done.is_set():
                return
            else:
                await asyncio.sleep(0.01)

    async def publish_new(self, js: Any, count: int, **row: Any) -> None:
        for _ in range(count):
            await self.publish(js, self.next_record(**row))

    def status(self) -> wire.StatusMessage:
        return wire.StatusMessage(self.site, self.revision, self.seq, self.acked,
                                  datetime.now(UTC))

    async def heartbeat(self, nc: Any) -> None:
        await nc.publish(wire.status_subject(self.site), self.status().to_bytes())

    async def answer_remote_unlocks(self, nc: Any, status: int = 200) -> Any:
        """Subscribe like a site (queue group) and answer every request with a
        fixed decision naming the door: for tests and the bench's hub overhead."""

        async def respond(msg: Any) -> None:
            request = wire.RemoteUnlockRequest.from_bytes(msg.data)
            body = {"result": "granted", "door": request.door, "site": self.site}
            await msg.respond(wire.RemoteUnlockReply(status, body).to_bytes())

        return await nc.subscribe(wire.remote_unlock_subject(self.site),
                                  queue=wire.SITE_QUEUE_GROUP, cb=respond)


async def settled(nc: Any, timeout: float = 10.0) -> None:
    """Return once the NATS server has taken every command ``nc`` sent before.

    ``nc.flush()`` does not promise that with nats-py (2.16): it writes its
    PING to the socket at once, ahead of the SUBSCRIBE and PUBLISH commands
    still queued for the client's flusher task. So its PONG can come back
    before the server has read a subscription just made; on a loaded
    machine a message published elsewhere in between never reaches it (a
    responder not there yet, a spy that misses what it watches). A message
    to a fresh inbox of this connection is queued behind those commands, and
    the server takes one connection's commands in order: once it is back,
    all of them were taken. Needs the connection's echo (on unless it was
    made with ``no_echo``).
    """
    inbox = nc.new_inbox()
    probe = await nc.subscribe(inbox)
    try:
        await nc.publish(inbox, b"")
        await probe.next_msg(timeout=timeout)
    finally:
        await probe.unsubscribe()


async def _run(nats_url: str, names: Sequence[str], records: int, heartbeats: int,
               concurrency: int, answer: bool) -> int:
    import nats

    nc = await nats.connect(nats_url, max_reconnect_attempts=-1, reconnect_time_wait=0.5)
    js = nc.jetstream()
    sites = [SimulatedSite(name) for name in names]
    for site in sites:
        if answer:
            await site.answer_remote_unlocks(nc)
        await site.heartbeat(nc)
    await settled(nc)  # "ready" promises responders the server already has
    print(json.dumps({"ready": len(sites)}), flush=True)
    gate = asyncio.Semaphore(concurrency)

    async def one(site: SimulatedSite) -> None:
        async with gate:
            await site.publish_new(js, records)

    await asyncio.gather(*(one(site) for site in sites))
    for _ in range(heartbeats):
        for site in sites:
            await site.heartbeat(nc)
        await asyncio.sleep(1.0)
    await nc.drain()
    print(json.dumps({"sites": len(sites), "records": sum(s.seq for s in sites)}), flush=True)
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m passbridge.sim.fleet_site",
                                     description="Many simulated fleet sites in one process.")
    parser.add_argument("--nats", required=True)
    parser.add_argument("--sites", type=int, required=True)
    parser.add_argument("--prefix", default="sim")
    parser.add_argument("--records", type=int, default=10)
    parser.add_argument("--heartbeats", type=int, default=1,
                        help="status rounds after publishing, one a second")
    parser.add_argument("--concurrency", type=int, default=20)
    parser.add_argument("--answer", action="store_true",
                        help="answer remote unlocks (granted) while running")
    args = parser.parse_args(argv)
    names = [f"{args.prefix}-{i:03d}" for i in range(args.sites)]
    return asyncio.run(_run(args.nats, names, args.records, args.heartbeats, args.concurrency,
                            args.answer))


if __name__ == "__main__":
    sys.exit(main())
