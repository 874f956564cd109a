"""Per-site NATS permissions: a nats-server ``authorization`` block that
locks each site to its own subjects, and the hub to what it needs.

Fleet mode's subjects carry the site in their names (``wire``), but NATS
only enforces that if each site connects as its own user with permissions
limited to those names. Without them any site's credentials could publish
audit records on another site's subject, answer the hub's remote unlocks
for another site or read and write another site's KV bucket. The set here
is the smallest a real ``serve --fleet`` site works with (found against
nats-server 2.15 with nats-py; tests/fleet/test_nats_permissions.py proves
both that it works and that the attacks fail), printed by ``passbridge hub
nats-config`` so that the operator copies the very set the tests run.

A site may only:
- publish its audit records (``passbridge.audit.<t>``) and its status;
- ask JetStream about the audit stream (``STREAM.INFO``), never create or
  change it: the hub creates it, a site that came first waits;
- look at its own KV bucket's stream and make and delete the ordered
  consumer that watches it, never write to a bucket (statements come from
  the hub, signed) nor create one;
- receive the hub's remote unlocks for itself, and answer them
  (``allow_responses``: only to the reply subject of a request it got);
- receive replies only on its own inbox prefix (``wire.site_inbox_prefix``):
  with ``_INBOX.>`` it could read the replies and KV deliveries of others.

Passwords are not in the block: each is a nats-server variable
(``$PASSBRIDGE_NATS_...``) it resolves from its environment, so the
generated file holds no secret and a missing one stops the server at start.
"""

from __future__ import annotations

import json
import re
from collections.abc import Sequence
from dataclasses import dataclass

from passbridge.fleet import wire

HUB_USER = "passbridge-hub"
PASSWORD_VARIABLE_PREFIX = "PASSBRIDGE_NATS_PASSWORD_"  # noqa: S105 (a name, no secret)
JS_API = "$JS.API"
USER_NAME = re.compile(r"[A-Za-z0-9_-]+")


@dataclass(frozen=True)
class Permissions:
    """One NATS user's allowed subjects (everything else is denied)."""

    publish: tuple[str, ...]
    subscribe: tuple[str, ...]
    allow_responses: bool = False


def site_user(site_id: str) -> str:
    """The NATS user name of a site (its token: safe in a URL and a config)."""
    return f"passbridge-site-{wire.site_token(site_id)}"


def password_variable(user: str) -> str:
    """The nats-server variable (an environment variable) holding ``user``'s password."""
    return PASSWORD_VARIABLE_PREFIX + user.replace("-", "_").upper()


def site_permissions(site_id: str) -> Permissions:
    """What a ``serve --fleet`` site needs, and nothing of another site's."""
    kv_stream = f"KV_{wire.kv_bucket(site_id)}"
    return Permissions(
        publish=(
            wire.audit_subject(site_id),
            wire.status_subject(site_id),
            f"{JS_API}.STREAM.INFO.{wire.AUDIT_STREAM}",
            f"{JS_API}.STREAM.INFO.{kv_stream}",
            f"{JS_API}.CONSUMER.CREATE.{kv_stream}",
            f"{JS_API}.CONSUMER.CREATE.{kv_stream}.>",
            f"{JS_API}.CONSUMER.INFO.{kv_stream}.*",
            f"{JS_API}.CONSUMER.DELETE.{kv_stream}.*",
        ),
        subscribe=(wire.remote_unlock_subject(site_id),
                   f"{wire.site_inbox_prefix(site_id)}.>"),
        allow_responses=True,
    )


def hub_permissions(site_ids: Sequence[str]) -> Permissions:
    """The hub: the JetStream API (it creates the stream, its consumer and the
    buckets), acks of what it ingested, writes to the sites' buckets (each
    named: a bucket name is one subject token, no wildcard can cover just
    ours), remote unlock requests to any site; it reads statuses and its replies."""
    return Permissions(
        publish=(f"{JS_API}.>", f"$JS.ACK.{wire.AUDIT_STREAM}.>",
                 *(f"$KV.{wire.kv_bucket(s)}.>" for s in dict.fromkeys(site_ids)),
                 "passbridge.site.*.remote-unlock"),
        subscribe=(wire.STATUS_SUBJECTS, "_INBOX.>"),
    )


def _user(name: str, permissions: Permissions) -> str:
    quoted = [json.dumps(s) for s in permissions.publish]
    publish = f"        publish: {{ allow: [{', '.join(quoted)}] }}"
    subscribe = ("        subscribe: { allow: ["
                 + ", ".join(json.dumps(s) for s in permissions.subscribe) + "] }")
    lines = [f"    {{ user: {json.dumps(name)}, password: ${password_variable(name)},",
             "      permissions: {", publish, subscribe]
    if permissions.allow_responses:
        lines.append("        allow_responses: true")
    lines += ["      } }"]
    return "\n".join(lines)


def authorization_block(site_ids: Sequence[str], hub_user: str = HUB_USER) -> str:
    """The nats-server ``authorization`` block for the hub and ``site_ids``,
    with comments naming each password variable and the URL its user takes."""
    if not USER_NAME.fullmatch(hub_user):
        raise ValueError(f"hub user {hub_user!r}: letters, digits, '-' and '_' only")
    unique = list(dict.fromkeys(site_ids))
    header = ["# passbridge fleet: each site locked to its own subjects (passbridge hub "
              "nats-config).",
              "# Set each password in nats-server's environment (letters and digits, "
              "starting with a letter:",
              "# nats-server reads the value as a config value). Users and their URLs:"]
    for user, role in [(hub_user, "passbridge hub --nats"),
                       *((site_user(s), f"serve --fleet (site {s!r})") for s in unique)]:
        header.append(f"#   {password_variable(user)}: {role} "
                      f"nats://{user}:PASSWORD@HOST:4222")
    users = [_user(hub_user, hub_permissions(unique))]
    for site_id in unique:
        users.append(f"    # site {site_id!r}\n" + _user(site_user(site_id),
                                                         site_permissions(site_id)))
    return ("\n".join(header) + "\nauthorization {\n  users: [\n" + "\n".join(users)
            + "\n  ]\n}\n")
