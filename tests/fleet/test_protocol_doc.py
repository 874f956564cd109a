"""protocols/fleet/README.md's examples are real: each parses with wire.py, the
audit record's hash chains, and the signed statements verify with the key shown."""

from __future__ import annotations

import json
import re

from passbridge.adapters.audit_chain import GENESIS, chain_hash
from passbridge.fleet import wire
from tests.conftest import PROJECT

DOC = PROJECT / "protocols" / "fleet" / "README.md"


def _examples() -> dict[str, str]:
    text = DOC.read_text()
    found = re.findall(r"<!-- example: ([\w-]+) -->\n```\w*\n(.*?)\n```", text, re.DOTALL)
    return dict(found)


def test_every_example_is_there() -> None:
    assert sorted(_examples()) == sorted([
        "audit", "remote-unlock-request", "remote-unlock-reply", "status", "admin-key",
        "site-statement", "enrol-statement", "revoke-statement"])


def test_the_payload_examples_parse_and_the_audit_record_chains() -> None:
    examples = _examples()
    record = wire.AuditMessage.from_bytes(examples["audit"])
    assert record.subject == "passbridge.audit.s6871" and record.msg_id == f"s6871:1:{record.hash}"
    assert chain_hash(GENESIS, record.row_values()).hex() == record.hash
    request = wire.RemoteUnlockRequest.from_bytes(examples["remote-unlock-request"])
    assert request.door == "front" and request.authorization.startswith("Bearer ")
    assert wire.RemoteUnlockReply.from_bytes(examples["remote-unlock-reply"]).status == 200
    status = wire.StatusMessage.from_bytes(examples["status"])
    assert (status.last_seq - status.acked_seq) == 2
    assert json.loads(examples["status"])["v"] == wire.WIRE_VERSION


def test_the_signed_examples_verify_with_the_example_admin_key() -> None:
    examples = _examples()
    keys = {"fleet-admin": wire.admin_key_from_pem("fleet-admin", examples["admin-key"])}
    site = wire.verify_statement(examples["site-statement"], keys, "hq", applied_seq=6,
                                 key=wire.SITE_KEY)
    assert isinstance(site, wire.SiteStatement) and site.seq == 7
    assert site.document == "site:\n  id: hq\n  timezone: Europe/Paris\n"
    phone_key = wire.phone_key("alice-phone")
    assert phone_key == "phone.s616c6963652d70686f6e65"
    enrol = wire.verify_statement(examples["enrol-statement"], keys, "hq", applied_seq=7,
                                  key=phone_key)
    assert isinstance(enrol, wire.PhoneStatement) and (enrol.op, enrol.seq) == ("enrol", 8)
    assert enrol.public_key is not None and len(enrol.public_key) == 65
    revoke = wire.verify_statement(examples["revoke-statement"], keys, "hq", applied_seq=8,
                                   key=phone_key)
    assert isinstance(revoke, wire.PhoneStatement) and (revoke.op, revoke.seq) == ("revoke", 9)
    # What the doc says a site refuses: another site, an old seq.
    assert not wire.verify_statement(examples["site-statement"], keys, "annex",
                                     applied_seq=0).ok
    assert not wire.verify_statement(examples["revoke-statement"], keys, "hq",
                                     applied_seq=9).ok


def test_the_permission_table_is_what_nats_config_prints() -> None:
    """The doc's site permissions are nats_permissions' own (with ``<site>`` for hq)."""
    from passbridge.fleet.nats_permissions import site_permissions

    text = DOC.read_text()
    table = text[text.index("| may | subjects |"):]
    table = table[:table.index("\n\n")]
    rows: dict[str, list[str]] = {}
    for line in table.splitlines()[2:]:
        may, subjects = (cell.strip() for cell in line.strip("|").split("|"))
        names = [n.replace("<site>", wire.site_token("hq"))
                 for n in re.findall(r"`([^`]+)`", subjects)]
        rows[may] = [n.replace("...CREATE.", "$JS.API.CONSUMER.CREATE.") for n in names]
    permissions = site_permissions("hq")
    assert sorted(rows["publish"] + rows["publish (JetStream API)"]) == sorted(
        permissions.publish)
    assert sorted(rows["subscribe"]) == sorted(permissions.subscribe)
    assert permissions.allow_responses and "allow_responses" in rows["answer"]
