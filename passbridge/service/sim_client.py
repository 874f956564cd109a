"""The HTTP side of ``passbridge sim``: what a badge reader, a keypad and an app
backend send to a running service, made the way the real ones make it."""

from __future__ import annotations

import json
import ssl
import time
from pathlib import Path
from typing import Any
from urllib.parse import quote

import aiohttp
import jwt

from passbridge.core.tokens import BACKEND_MAX_LIFETIME, PrivateKey, load_private_key_pem, new_jti
from passbridge.errors import PassbridgeError

TIMEOUT = aiohttp.ClientTimeout(total=10)
# How https services are verified: the system's CAs (True), or a context that
# trusts one CA file (``sim --cacert``). Verification is never switched off.
_tls: ssl.SSLContext | bool = True


class SimError(PassbridgeError):
    """A request the service refused or could not be reached for; one line to print."""


def trust_ca_file(path: Path) -> None:
    """Verify https services against the CA certificate(s) in ``path`` (PEM)."""
    global _tls
    try:
        _tls = ssl.create_default_context(cafile=str(path))
    except (OSError, ssl.SSLError) as exc:
        reason = getattr(exc, "strerror", None) or getattr(exc, "reason", None) or exc
        raise SimError(f"--cacert {path}: {reason}") from exc


def load_backend_key(path: Path) -> tuple[PrivateKey, str]:
    """A backend's private key and its algorithm, read from a PEM file."""
    try:
        pem = path.read_bytes()
    except OSError as exc:
        raise SimError(f"cannot read key file {path}: {exc.strerror or exc}") from exc
    for alg in ("ES256", "EdDSA"):
        try:
            return load_private_key_pem(pem, alg), alg
        except ValueError:
            continue
    raise SimError(f"{path}: not an unencrypted P-256 or Ed25519 private key (PEM)")


def backend_token(
    key: PrivateKey, alg: str, *, backend: str, site: str, user: str, door: str | None,
    side: str = "in", lifetime: int = 30, role: str | None = None, now: float,
) -> str:
    """A backend-signed request token: ``iss`` = backend id = ``kid``, ``aud`` = site."""
    lifetime = min(lifetime, int(BACKEND_MAX_LIFETIME))
    claims: dict[str, Any] = {
        "iss": backend, "aud": site, "sub": user, "iat": int(now), "exp": int(now) + lifetime,
        "jti": new_jti(),
    }
    if door is not None:
        claims["door"] = door
    if side != "in":
        claims["side"] = side
    if role is not None:
        claims["role"] = role
    return jwt.encode(claims, key, algorithm=alg, headers={"kid": backend, "typ": "JWT"})


async def _request(
    method: str, url: str, *, headers: dict[str, str] | None = None, body: Any = None,
) -> dict[str, Any]:
    try:
        async with aiohttp.ClientSession(timeout=TIMEOUT) as session, session.request(
            method, url, headers=headers, json=body, ssl=_tls
        ) as resp:
            text = await resp.text()
            try:
                data = json.loads(text)
            except ValueError:
                data = None
            if resp.status != 200 or not isinstance(data, dict):
                error = data.get("error") if isinstance(data, dict) else None
                if isinstance(error, dict):
                    code, message = error.get("code"), error.get("message")
                    raise SimError(f"HTTP {resp.status} {code}: {message}")
                raise SimError(f"HTTP {resp.status}: {text[:200]}")
            return data
    except aiohttp.ClientError as exc:
        raise SimError(f"cannot reach {url}: {exc}") from exc
    except TimeoutError as exc:
        raise SimError(f"no answer from {url} within {TIMEOUT.total:g} s") from exc


async def site_id(base: str) -> str:
    health = await _request("GET", f"{base}/healthz")
    site = health.get("site")
    if not isinstance(site, str):
        raise SimError(f"{base}/healthz did not name a site")
    return site


def _device(device_key: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {device_key}"}


async def _wired(base: str, door: str, side: str, device_key: str) -> bool:
    """Whether the service simulates an OSDP reader at that door side (``serve
    --simulate``): then the card or code goes through it, not the HTTP route."""
    try:
        info = await _request("GET", f"{base}/v1/sim", headers=_device(device_key))
    except SimError:  # no /v1/sim: a service that simulates nothing
        return False
    wired = info.get("wired")
    return isinstance(wired, list) and f"{door}/{side}" in wired


async def card(base: str, door: str, number: str, side: str, device_key: str) -> dict[str, Any]:
    """A badge at the door side's reader: through its simulated OSDP reader when
    the service has one there, else the wired reader's HTTP route."""
    route = "v1/sim/doors" if await _wired(base, door, side, device_key) else "v1/doors"
    return await _request("POST", f"{base}/{route}/{door}/card", headers=_device(device_key),
                          body={"number": number, "side": side})


async def pin(base: str, door: str, code: str, side: str, device_key: str) -> dict[str, Any]:
    """An entry code on the door side's keypad (simulated OSDP keypad, or HTTP)."""
    route = "v1/sim/doors" if await _wired(base, door, side, device_key) else "v1/doors"
    return await _request("POST", f"{base}/{route}/{door}/keypad", headers=_device(device_key),
                          body={"code": code, "side": side})


async def remote(base: str, door: str, token: str, *, hub_site: str | None = None
                 ) -> dict[str, Any]:
    """A remote unlock at the site at ``base``; with ``hub_site``, ``base`` is a
    fleet hub asked to forward it to that site (the same token either way)."""
    path = (f"/v1/sites/{quote(hub_site, safe='')}/doors/{quote(door, safe='')}/remote-unlock"
            if hub_site is not None else f"/v1/doors/{door}/remote-unlock")
    return await _request("POST", base + path, headers={"Authorization": f"Bearer {token}"})


async def nfc(base: str, door: str, phone: str, side: str, device_key: str) -> dict[str, Any]:
    """A simulated phone taps the door's reader (the service's nfcpy reader, udp);
    ``device_key`` is that door side's reader key."""
    return await _request("POST", f"{base}/v1/sim/doors/{door}/nfc", headers=_device(device_key),
                          body={"phone": phone, "side": side})


async def ble(
    base: str, door: str, phone: str, side: str, rssi: int, device_key: str
) -> dict[str, Any]:
    """A simulated phone approaches the door's Bluetooth reader at ``rssi`` dBm."""
    return await _request("POST", f"{base}/v1/sim/doors/{door}/ble", headers=_device(device_key),
                          body={"phone": phone, "side": side, "rssi": rssi})


async def nearby(
    base: str, door: str, phone: str, rssi: int | None, key_file: Path, side: str,
    device_key: str,
) -> dict[str, Any]:
    """The door side's radio hears the phone advertise (or not, for ``rssi``
    None), then the app signs a nearby request with the phone's key (read
    from ``key_file``) and sends it, as the Pass app does."""
    try:
        key = load_private_key_pem(key_file.read_bytes(), "ES256")
    except (OSError, ValueError) as exc:
        raise SimError(f"cannot read the phone's key {key_file}: {exc}") from exc
    # The phone is heard by the door's radio on ``side``; the request names
    # no side (the service takes it from that radio).
    advert = await _request("POST", f"{base}/v1/sim/phones/{phone}/advertise",
                            headers=_device(device_key),
                            body={"rssi": rssi, "door": door, "side": side})
    now = int(time.time())
    claims: dict[str, Any] = {"cred": phone, "door": door, "adv": advert["adv"], "iat": now,
                              "exp": now + 30, "jti": new_jti()}
    token = jwt.encode(claims, key, algorithm="ES256", headers={"kid": phone})
    return await _request_text("POST", f"{base}/v1/doors/{door}/nearby-unlock", token)


async def _request_text(method: str, url: str, text: str) -> dict[str, Any]:
    try:
        async with aiohttp.ClientSession(timeout=TIMEOUT) as session, session.request(
            method, url, data=text, headers={"Content-Type": "application/jwt"}, ssl=_tls
        ) as resp:
            data = await resp.json(content_type=None)
            if resp.status != 200 or not isinstance(data, dict):
                error = data.get("error", {}) if isinstance(data, dict) else {}
                raise SimError(f"HTTP {resp.status} {error.get('code')}: {error.get('message')}")
            return data
    except aiohttp.ClientError as exc:
        raise SimError(f"cannot reach {url}: {exc}") from exc
    except (TimeoutError, ValueError) as exc:
        raise SimError(f"no usable answer from {url}: {exc}") from exc


def describe(decision: dict[str, Any]) -> str:
    """One line for a person: result, reason, who, the door and its state."""
    parts = [str(decision.get("result")), str(decision.get("reason"))]
    parts.append(f"door={decision.get('door')}")
    if decision.get("user"):
        parts.append(f"user={decision['user']}")
    if decision.get("state"):
        parts.append(f"state={decision['state']} ({decision.get('state_source')})")
    if decision.get("unlock_seconds"):
        parts.append(f"unlock={decision['unlock_seconds']}s")
    if "phone_status" in decision:  # a simulated NFC tap: what the phone was told
        parts.append(f"phone={decision['phone_status'] or 'nothing'}")
    parts.append(f"id={decision.get('decision_id')}")
    return " ".join(parts)
