"""Site documents and phone enrolments to sites: signed statements in KV buckets.

Each site has its own bucket (``wire.kv_bucket``); a value is a compact JWS
signed with a fleet admin key (``wire.sign_statement``), which the site
checks against the admin public keys it was given. The hub holds that
private key and nothing else that sites trust: it can change a site's
configuration (which the site validates like a local reload and audits)
but cannot sign an unlock.

``seq`` orders a site's statements across all its keys; the site refuses a
``seq`` not above the last it applied. So seqs come from PostgreSQL (they
survive a hub restart and a second hub), and one site's statements are
published one at a time (a PostgreSQL advisory lock held from the seq to
the KV put): two concurrent publishes could otherwise reach the bucket out
of seq order, and the site would refuse the older as stale.
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import json
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec

from passbridge.errors import PassbridgeError
from passbridge.fleet import wire
from passbridge.fleet.hub.metrics import HubMetrics
from passbridge.fleet.hub.store import HubStore
from passbridge.fleet.streams import site_bucket
from passbridge.p256 import load_public_key


class PublishError(PassbridgeError):
    """A statement the hub will not publish; ``field`` names what is wrong."""

    def __init__(self, field: str, message: str) -> None:
        super().__init__(f"{field}: {message}")
        self.field = field
        self.message = message


@dataclass(frozen=True)
class AdminSigner:
    """The fleet admin private key (ES256) and its ``kid``."""

    kid: str
    key: ec.EllipticCurvePrivateKey

    @classmethod
    def from_file(cls, path: Path, kid: str | None = None) -> AdminSigner:
        """``kid``: the file name without ``.key.pem`` (``passbridge hub keys create``
        writes ``<kid>.key.pem``), unless given."""
        try:
            key = serialization.load_pem_private_key(path.read_bytes(), password=None)
        except (ValueError, TypeError) as exc:
            raise PublishError(str(path), "not an unencrypted PEM private key") from exc
        if not isinstance(key, ec.EllipticCurvePrivateKey) or not isinstance(key.curve,
                                                                             ec.SECP256R1):
            raise PublishError(str(path), "a fleet admin key must be P-256 (ES256)")
        name = path.name
        default = name[: -len(".key.pem")] if name.endswith(".key.pem") else path.stem
        return cls(kid or default, key)

    def sign(self, claims: dict[str, Any]) -> str:
        return wire.sign_statement(self.key, self.kid, claims)


@dataclass(frozen=True, slots=True)
class Published:
    site: str
    seq: int
    key: str
    typ: str

    def to_json(self) -> dict[str, Any]:
        return {"site": self.site, "seq": self.seq, "key": self.key, "typ": self.typ}


def document_site_id(text: str) -> str:
    """The ``site.id`` a site document (YAML or JSON text) names; PublishError if none.

    The hub checks only what it must to address the statement; the site
    validates the whole document as it would a local reload, and refuses
    (and audits) one it cannot use.
    """
    try:
        data = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        raise PublishError("document", f"not valid YAML or JSON ({exc})") from None
    site = data.get("site") if isinstance(data, dict) else None
    site_id = site.get("id") if isinstance(site, dict) else None
    if not isinstance(site_id, str) or not site_id:
        raise PublishError("document", "site.id is missing (a site document names its site)")
    return site_id


def phone_point(text: object) -> bytes:
    """A phone's public key from the API: base64url (or hex) of the 65-byte point."""
    if not isinstance(text, str) or not text:
        raise PublishError("public_key", "expected base64url of the 65-byte P-256 point")
    try:
        point = (bytes.fromhex(text) if len(text) == 130
                 else base64.urlsafe_b64decode(text + "=" * (-len(text) % 4)))
        load_public_key(point)
    except (ValueError, binascii.Error):
        raise PublishError("public_key", "not a P-256 point (65 bytes, uncompressed)") from None
    return point


class Publisher:
    """Signs and puts statements; one site at a time, seq from PostgreSQL."""

    def __init__(self, store: HubStore, js: Any, signer: AdminSigner | None,
                 metrics: HubMetrics, *, clock: Callable[[], float] = time.time) -> None:
        self.store = store
        self.js = js
        self.signer = signer
        self.metrics = metrics
        self.clock = clock
        self._buckets: dict[str, Any] = {}
        self._locks: dict[str, asyncio.Lock] = {}

    async def site_document(self, site: str, document: str) -> Published:
        named = document_site_id(document)
        if named != site:
            raise PublishError("document", f"site.id is {named!r}, not {site!r}")
        return await self._publish(
            site, wire.SITE_KEY, "site", f"site document ({len(document)} characters)",
            lambda seq, iat: wire.site_claims(site, seq, document, iat))

    async def enrol(self, site: str, phone: str, user: str, public_key: bytes) -> Published:
        _need("user", user)
        return await self._publish(
            site, wire.phone_key(phone), "phone", json.dumps({"enrol": phone, "user": user}),
            lambda seq, iat: wire.phone_enrol_claims(site, seq, phone, user, public_key, iat))

    async def revoke(self, site: str, phone: str, user: str | None) -> Published:
        if user is None:
            user = await self._enrolled_user(site, phone)
        _need("user", user)
        assert user is not None
        return await self._publish(
            site, wire.phone_key(phone), "phone", json.dumps({"revoke": phone, "user": user}),
            lambda seq, iat: wire.phone_revoke_claims(site, seq, phone, user, iat))

    async def _enrolled_user(self, site: str, phone: str) -> str | None:
        """The user of this phone's last enrolment published here, if any."""
        summary = await self.store.pool.fetchval(
            "SELECT summary FROM config_published WHERE site = $1 AND key = $2 "
            "ORDER BY seq DESC LIMIT 1", site, wire.phone_key(phone))
        if summary is None:
            return None
        user = json.loads(summary).get("user")
        return user if isinstance(user, str) else None

    async def bucket(self, site: str) -> Any:
        """The site's KV bucket, created if missing (kept once known)."""
        bucket = self._buckets.get(site)
        if bucket is None:
            bucket = await site_bucket(self.js, site)
            self._buckets[site] = bucket
        return bucket

    async def _publish(self, site: str, key: str, typ: str, summary: str,
                       claims: Callable[[int, int], dict[str, Any]]) -> Published:
        if self.signer is None:
            raise PublishError("admin key", "the hub has no fleet admin key (--admin-key)")
        _need("site", site)
        lock = self._locks.setdefault(site, asyncio.Lock())
        async with lock, self.store.pool.acquire() as connection:
            await connection.execute("SELECT pg_advisory_lock(hashtext($1))", site)
            try:
                async with connection.transaction():
                    seq = await self.store.next_config_seq(connection, site)
                statement = self.signer.sign(claims(seq, int(self.clock())))
                bucket = await self.bucket(site)
                await bucket.put(key, statement.encode("ascii"))
                await self.store.record_published(connection, site, seq, key, typ, summary,
                                                  statement)
            finally:
                await connection.execute("SELECT pg_advisory_unlock(hashtext($1))", site)
        self.metrics.published.labels(typ).inc()
        return Published(site, seq, key, typ)


def _need(field: str, value: str | None) -> None:
    if not isinstance(value, str) or not value:
        raise PublishError(field, "must be a non-empty string")
