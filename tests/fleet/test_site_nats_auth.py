"""``serve --fleet`` with the NATS security a real deployment has (issue 12
item 1: "credentials or TLS options as NATS clients take them"): TLS with a
client certificate, and a ``.creds`` file under decentralised auth."""

from __future__ import annotations

import ssl
from pathlib import Path

import nats
import pytest

from passbridge.fleet import wire
from tests.fleet.nats_auth import make_decentralised, make_tls
from tests.fleet.nats_fixture import running_nats
from tests.fleet.support import FleetSite, eventually, fleet_site

pytestmark = pytest.mark.slow


async def _all_acked(site: FleetSite) -> bool:
    return site.link.connected and site.link.acked_seq == max(await site.db_seqs())


async def test_tls_with_a_client_certificate(tmp_path: Path) -> None:
    tls = make_tls(tmp_path / "tls")
    with running_nats(tmp_path, *tls.server_args()) as server:
        url = f"tls://127.0.0.1:{server.port}"
        files = {"tls_ca": tls.ca, "tls_cert": tls.client_cert, "tls_key": tls.client_key}
        async with fleet_site(tmp_path / "site.sqlite3", url, **files) as site:
            await site.decide(5)
            await eventually(lambda: _all_acked(site), 20, "records over TLS")
            seqs = await site.db_seqs()
        context = ssl.create_default_context(cafile=str(tls.ca))
        context.load_cert_chain(str(tls.client_cert), str(tls.client_key))
        nc = await nats.connect(url, tls=context)
        try:
            info = await nc.jetstream().stream_info(wire.AUDIT_STREAM)
        finally:
            await nc.close()
        assert info.state.messages == len(seqs)
        # Without the client certificate the server refuses the site, which
        # keeps deciding and says so.
        async with fleet_site(tmp_path / "other.sqlite3", url, tls_ca=tls.ca) as site:
            await _refused(site)


async def test_a_creds_file_under_decentralised_auth(tmp_path: Path) -> None:
    auth = make_decentralised(tmp_path / "auth")
    with running_nats(tmp_path, *auth.server_args()) as server:
        async with fleet_site(tmp_path / "site.sqlite3", server.url, creds=auth.creds) as site:
            await site.decide(5)
            await eventually(lambda: _all_acked(site), 20, "records with a creds file")
            seqs = await site.db_seqs()
        nc = await nats.connect(server.url, user_credentials=str(auth.creds))
        try:
            info = await nc.jetstream().stream_info(wire.AUDIT_STREAM)
        finally:
            await nc.close()
        assert info.state.messages == len(seqs)
        # Anonymous: refused by the server.
        async with fleet_site(tmp_path / "anon.sqlite3", server.url) as site:
            await _refused(site)


async def _refused(site: FleetSite) -> None:
    """The server refuses the link: the site decides, says it is down, never up."""
    await site.decide(2)

    async def down_recorded() -> list[str]:
        page = await site.services.audit.page(0, 100)
        return [e["payload"]["link"] for e in page if e["kind"] == "fleet"]

    async def down() -> bool:
        return await down_recorded() == ["down"]
    await eventually(down, 15, "a 'down' record")
    assert not site.link.connected and site.link.health() is not None
