"""Shared set-up for the service tests: a small site, a backend key, a phone,
tokens signed the way the real callers sign them."""

from __future__ import annotations

import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

import jwt
import yaml
from aiohttp import web
from aiohttp.test_utils import TestClient, TestServer
from cryptography.hazmat.primitives.asymmetric import ec
from prometheus_client.parser import text_string_to_metric_families

from passbridge.adapters.keystore import DeviceKind, MemoryKeyStore
from passbridge.clock import Clock, ManualClock
from passbridge.core.model import Side, Site
from passbridge.core.tokens import (
    FactorTokenMinter,
    generate_private_key,
    new_jti,
    p256_point,
    private_key_to_pem,
    public_key_to_pem,
)
from passbridge.protocol.ble_advert import derive_proximity_key, rotating_id, slot_at
from passbridge.service.app import create_app
from passbridge.service.runtime import Services, memory_services
from passbridge.sim.phone import SimulatedPhone
from passbridge.site_file import parse_site

PIN_KEY = b"k" * 32
BACKEND = "app-backend"
BRIDGE = "bridge-1"
# A Monday, 10:00 in Los Angeles.
MONDAY_10 = datetime(2026, 11, 30, 18, 0, tzinfo=UTC)

Client = TestClient[web.Request, web.Application]


def site_document(backend_pem: str, bridge_pem: str) -> dict[str, Any]:
    always = {"id": "always", "days": ["mon", "tue", "wed", "thu", "fri", "sat", "sun"],
              "start": "00:00", "end": "24:00", "state": "two_factor"}
    return {
        "site": {"id": "hq", "timezone": "America/Los_Angeles"},
        "doors": [
            {"id": "front", "reader": True, "keypad": True, "schedule": [always]},
            {"id": "side", "reader": True, "keypad": False},
            {"id": "vault", "reader": True, "keypad": True, "strict_two_factor": True,
             "schedule": [always]},
            {"id": "pad", "reader": True, "keypad": True},
        ],
        "trust": {
            "backends": [{"id": BACKEND, "alg": "ES256", "public_key": backend_pem}],
            "bridges": [{"id": BRIDGE, "alg": "ES256", "public_key": bridge_pem}],
        },
        "users": [
            {"id": "alice", "role": "site_admin", "cards": ["10001"], "pin": "2468",
             "phones": ["alice-phone"], "doors": "all", "remote_unlock": True},
            {"id": "bob", "cards": ["20002"], "pin": "1357", "phones": ["bob-phone"],
             "doors": ["front", "side", "pad"]},
            {"id": "carol", "cards": ["30003"], "pin": "9753", "doors": ["side", "front"],
             "remote_unlock": True},
        ],
    }


@dataclass
class Keys:
    backend: ec.EllipticCurvePrivateKey = field(
        default_factory=lambda: _p256())
    bridge: ec.EllipticCurvePrivateKey = field(default_factory=lambda: _p256())
    phones: dict[str, ec.EllipticCurvePrivateKey] = field(default_factory=dict)

    @property
    def backend_pem(self) -> str:
        return private_key_to_pem(self.backend)


def _p256() -> ec.EllipticCurvePrivateKey:
    key = generate_private_key("ES256")
    assert isinstance(key, ec.EllipticCurvePrivateKey)
    return key


def make_site(keys: Keys, pin_key: bytes = PIN_KEY) -> Site:
    doc = site_document(public_key_to_pem(keys.backend), public_key_to_pem(keys.bridge))
    return parse_site(doc, file="test-site.yaml", pin_key=pin_key)


def backend_token(key: Any, clock: Clock, *, kid: str = BACKEND, alg: str = "ES256",
                  headers: dict[str, Any] | None = None, **claims: Any) -> str:
    now = int(clock.now().timestamp())
    body: dict[str, Any] = {"iss": BACKEND, "aud": "hq", "iat": now, "exp": now + 30,
                            "jti": new_jti()}
    body.update(claims)
    body = {k: v for k, v in body.items() if v is not None}
    return jwt.encode(body, key, algorithm=alg, headers={"kid": kid, **(headers or {})})


def remote_token(keys: Keys, clock: Clock, door: str, user: str = "alice", **claims: Any) -> str:
    return backend_token(keys.backend, clock, sub=user, door=door, **claims)


def admin_token(keys: Keys, clock: Clock, user: str = "alice", role: str = "site_admin") -> str:
    return backend_token(keys.backend, clock, sub=user, role=role)


def nearby_token(key: Any, clock: Clock, *, cred: str, door: str, adv: str,
                 kid: str | None = None, **claims: Any) -> str:
    """A phone's nearby request; the header ``kid`` is ``cred`` as the app sends it."""
    now = int(clock.now().timestamp())
    body: dict[str, Any] = {"cred": cred, "door": door, "adv": adv, "iat": now,
                            "exp": now + 30, "jti": new_jti()}
    body.update(claims)
    return jwt.encode(body, key, algorithm="ES256", headers={"kid": cred if kid is None else kid})


def phone_adv(rig: Rig, cred: str) -> bytes:
    """The rotating id ``cred``'s phone advertises now, computed on the phone's
    side (its key and the site's reader public key), as a phone app would."""
    reader = rig.keystore.reader_key().public_key
    key = derive_proximity_key(rig.keys.phones[cred], reader)
    return rotating_id(key, slot_at(rig.clock.now().timestamp()))


def bridge_minter(keys: Keys, clock: Clock) -> FactorTokenMinter:
    return FactorTokenMinter(BRIDGE, keys.bridge, site_id="hq", clock=clock)


@dataclass
class Rig:
    keys: Keys
    clock: ManualClock
    keystore: MemoryKeyStore
    services: Services

    def device(self, door: str, kind: str, side: str = "in") -> str:
        """The device key (``id.secret``) of that door side's reader or keypad."""
        slot = (door, Side(side), DeviceKind(kind))
        return next(k.token for k in self.keystore.device_keys() if k.slot == slot)


def make_rig(start: datetime = MONDAY_10) -> Rig:
    keys = Keys()
    clock = ManualClock(start)
    keystore = MemoryKeyStore(clock=clock)
    for cred, user in (("alice-phone", "alice"), ("bob-phone", "bob")):
        keys.phones[cred] = _p256()
        keystore.enroll_phone(cred, user, p256_point(keys.phones[cred]))
    services = memory_services(make_site(keys, keystore.pin_key()), clock=clock,
                               keystore=keystore)
    services.device_keys.ensure(services.site)  # as serve does on start
    return Rig(keys, clock, keystore, services)


@asynccontextmanager
async def served_rig(start: datetime = MONDAY_10) -> AsyncIterator[tuple[Rig, Client]]:
    """A fresh rig whose app runs on a real aiohttp server, with a client to it
    (the ``rig`` fixture of tests/conftest.py; for a test that needs two)."""
    rig = make_rig(start)
    async with TestClient(TestServer(create_app(rig.services))) as client:
        yield rig, client


def wall_clock_rig() -> Rig:
    """A rig on (roughly) real time, for tokens signed by another process."""
    return make_rig(datetime.fromtimestamp(int(time.time()), UTC))


async def error_of(resp: Any, status: int) -> str:
    """The error code of a response that must have ``status`` and the JSON error shape."""
    assert resp.status == status, await resp.text()
    body = await resp.json()
    assert set(body) == {"error"} and {"code", "message"} <= set(body["error"])
    return str(body["error"]["code"])


def metric_sample(text: str, name: str, **labels: str) -> float | None:
    """The value of one sample in a classic-text /metrics scrape (``name`` as
    exported, e.g. ``..._total``; exactly these labels), None when absent.
    Parsed, so label order and number formatting (``1.0``) do not matter."""
    for family in text_string_to_metric_families(text):
        for found in family.samples:
            if found.name == name and found.labels == labels:
                return float(found.value)
    return None


def services_with_phones(
    site_yaml: str, clock: Clock, phones: dict[str, str]
) -> tuple[Services, MemoryKeyStore, dict[str, SimulatedPhone]]:
    """In-memory services for a site given as YAML text, with a simulated
    phone made and enrolled for each ``phone id -> user``: the set-up every
    radio-path test starts from."""
    keystore = MemoryKeyStore(clock=clock)
    site = parse_site(yaml.safe_load(site_yaml), file="site.yaml", pin_key=keystore.pin_key())
    services = memory_services(site, clock=clock, keystore=keystore)
    made = {phone_id: SimulatedPhone.create(phone_id) for phone_id in phones}
    for phone_id, user in phones.items():
        keystore.enroll_phone(phone_id, user, made[phone_id].public_key_point)
    return services, keystore, made


async def sign_in(client: Any, keystore: Any, clock: Clock, user: str = "alice") -> str:
    """Sign ``user`` in through a fresh single-use link, as a browser does
    (POST /v1/session; the client keeps the cookie); returns the CSRF token."""
    from passbridge.service.one_time import mint_sign_in_link

    url, _ = mint_sign_in_link(keystore, user, issued_by="test", now=clock.now(),
                               base="http://test")
    resp = await client.post("/v1/session", json={"token": link_token(url)})
    assert resp.status == 200, await resp.text()
    return str((await resp.json())["csrf_token"])


def link_token(url: str) -> str:
    """The token in a sign-in link's fragment."""
    _, _, fragment = url.partition("#")
    assert fragment.startswith("token="), url
    return fragment.removeprefix("token=")
