"""What the hub tests share: operator tokens, a running hub with a real HTTP
server, and waiting for what arrives asynchronously."""

from __future__ import annotations

import asyncio
import time
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass
from typing import Any

import jwt
from aiohttp.test_utils import TestClient, TestServer
from cryptography.hazmat.primitives.asymmetric import ec

from passbridge.core.tokens.trust import VerificationKey
from passbridge.fleet.hub.app import HUB_AUDIENCE, OPERATOR_ROLE, Hub, HubConfig, create_hub_app
from passbridge.fleet.hub.publish import AdminSigner

OPERATOR_KID = "ops"


@dataclass
class Operator:
    """A fleet operator's signing key; ``token()`` makes a fresh bearer JWT."""

    key: ec.EllipticCurvePrivateKey
    kid: str = OPERATOR_KID

    def verification_key(self) -> VerificationKey:
        return VerificationKey(self.kid, "ES256", self.key.public_key(), self.kid)

    def token(self, *, role: str = OPERATOR_ROLE, sub: str = "carol",
              audience: str = HUB_AUDIENCE, lifetime: int = 30) -> str:
        now = int(time.time())
        claims = {"iss": self.kid, "sub": sub, "aud": audience, "iat": now,
                  "exp": now + lifetime, "jti": uuid.uuid4().hex, "role": role}
        return jwt.encode(claims, self.key, algorithm="ES256", headers={"kid": self.kid})

    def headers(self, **kw: Any) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.token(**kw)}"}


def new_operator() -> Operator:
    return Operator(ec.generate_private_key(ec.SECP256R1()))


def new_signer(kid: str = "fleet-admin") -> AdminSigner:
    return AdminSigner(kid, ec.generate_private_key(ec.SECP256R1()))


@asynccontextmanager
async def running_hub(nats_url: str, pg_url: str, *, operator: Operator | None = None,
                      signer: AdminSigner | None = None, **config: Any,
                      ) -> AsyncIterator[tuple[Hub, TestClient[Any, Any]]]:
    """A started hub and an HTTP client for it (a real server on loopback)."""
    keys = {operator.kid: operator.verification_key()} if operator else {}
    hub = Hub(HubConfig(nats_url, pg_url, operator_keys=keys, signer=signer, **config))
    client: TestClient[Any, Any] = TestClient(TestServer(create_hub_app(hub)))
    await client.start_server()
    try:
        yield hub, client
    finally:
        await client.close()


async def wait_for(check: Callable[[], Awaitable[bool]], timeout: float = 20.0,
                   what: str = "the condition") -> None:
    """Poll ``check`` until true; fail naming ``what`` after ``timeout`` s."""
    deadline = time.monotonic() + timeout
    while not await check():
        if time.monotonic() > deadline:
            raise AssertionError(f"{what} did not happen within {timeout:g} s")
        await asyncio.sleep(0.05)
