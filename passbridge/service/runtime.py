"""The parts one service runs with, and the two ways to get them.

``build_services`` is ``passbridge serve``: the site file, the SQLite audit
log and key store under ``--db``, the system clock. ``memory_services`` is a
scenario or a test: a site already loaded, a ManualClock, in-memory audit
and keys. ``create_app`` takes either and cannot tell them apart.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Protocol

from passbridge.adapters.ble_central import ProximityTable
from passbridge.clock import Clock, SystemClock
from passbridge.controller import DoorController
from passbridge.core.engine import DoorCore
from passbridge.core.model import Site
from passbridge.core.tokens import (
    FactorTokenMinter,
    FactorTokenVerifier,
    PrivateKey,
    ReplayCache,
    VerificationKey,
    generate_private_key,
    verification_keys,
)
from passbridge.service.device_keys import DeviceKeys
from passbridge.service.events import EventStore, MemoryEventStore, PublishingAudit
from passbridge.service.metrics import Metrics

IN_PROCESS_BRIDGE = "passbridge-local"


@dataclass(frozen=True, slots=True)
class PhoneEnrolment:
    """A phone's credential key as enrolled; ``revoked`` phones are still known
    so their signed requests can be attributed and denied on the record."""

    credential: str
    user: str
    public_point: bytes  # 65-byte uncompressed P-256 point
    revoked: bool = False


class PhoneDirectory(Protocol):
    def phone(self, credential: str) -> PhoneEnrolment | None: ...


class MemoryPhones:
    def __init__(self) -> None:
        self._phones: dict[str, PhoneEnrolment] = {}

    def enrol(self, credential: str, user: str, public_point: bytes) -> None:
        self._phones[credential] = PhoneEnrolment(credential, user, public_point)

    def revoke(self, credential: str) -> None:
        found = self._phones[credential]
        self._phones[credential] = replace(found, revoked=True)

    def phone(self, credential: str) -> PhoneEnrolment | None:
        return self._phones.get(credential)


class Radio(Protocol):
    """A radio bridge run for the life of the app (NFC reader, BLE central)."""

    async def start(self) -> None: ...

    async def stop(self) -> None: ...


@dataclass
class Services:
    clock: Clock
    core: DoorCore
    controller: DoorController
    audit: PublishingAudit
    phones: PhoneDirectory
    proximity: ProximityTable
    backends: dict[str, VerificationKey]
    device_keys: DeviceKeys
    metrics: Metrics
    # Single-use ``jti`` record for backend (remote, admin) and phone (nearby) requests.
    request_replay: ReplayCache = field(default_factory=ReplayCache)
    # Started after the app starts, stopped before the audit log closes (lead's hook).
    radios: list[Radio] = field(default_factory=list)
    # Set when the app owns the audit store and must close it at shutdown.
    close_audit: bool = True
    started: float = field(default_factory=time.monotonic)

    @property
    def site(self) -> Site:
        return self.core.site


def assemble(
    site: Site,
    *,
    clock: Clock,
    pin_key: bytes,
    store: EventStore,
    phones: PhoneDirectory,
    proximity: ProximityTable | None = None,
    device_keys: DeviceKeys | None = None,
    bridge_key: PrivateKey | None = None,
    close_audit: bool = True,
) -> Services:
    """Wire core, in-process bridge, controller, audit and metrics together.

    The in-process bridge signs with ``bridge_key`` (a fresh one when None:
    its tokens live seconds, so a key that lives as long as the process is
    enough); the core trusts it alongside the site's ``trust.bridges``.
    """
    key = bridge_key if bridge_key is not None else generate_private_key("ES256")
    trusted = verification_keys(site.bridges)
    trusted[IN_PROCESS_BRIDGE] = VerificationKey(
        IN_PROCESS_BRIDGE, "ES256", key.public_key(), IN_PROCESS_BRIDGE
    )
    verifier = FactorTokenVerifier(site.id, trusted, clock=clock)
    core = DoorCore(site, pin_key=pin_key, tokens=verifier)
    minter = FactorTokenMinter(IN_PROCESS_BRIDGE, key, site_id=site.id, clock=clock)
    audit = PublishingAudit(store)
    controller = DoorController(core, audit, clock, minter=minter)
    metrics = Metrics()
    controller.observe(metrics.observe_decision)
    return Services(
        clock=clock,
        core=core,
        controller=controller,
        audit=audit,
        phones=phones,
        proximity=proximity if proximity is not None else ProximityTable(clock),
        backends=verification_keys(site.backends),
        device_keys=device_keys if device_keys is not None else DeviceKeys(),
        metrics=metrics,
        close_audit=close_audit,
    )


def memory_services(
    site: Site,
    *,
    clock: Clock,
    pin_key: bytes,
    phones: PhoneDirectory | None = None,
    proximity: ProximityTable | None = None,
    device_keys: DeviceKeys | None = None,
) -> Services:
    """Services for a scenario or a test: nothing touches the disk."""
    return assemble(
        site, clock=clock, pin_key=pin_key, store=MemoryEventStore(),
        phones=phones if phones is not None else MemoryPhones(),
        proximity=proximity, device_keys=device_keys,
    )


def build_services(
    site_path: Path,
    db_path: Path,
    clock: Clock | None = None,
    *,
    device_keys: DeviceKeys | None = None,
) -> Services:
    """What ``passbridge serve`` runs with; raises ConfigError for a bad site
    file and ``storage.StartupError`` for a database it cannot use."""
    from passbridge.service.storage import open_storage
    from passbridge.site_file import load_site

    clock = clock if clock is not None else SystemClock()
    storage = open_storage(db_path)
    try:
        site = load_site(site_path, pin_key=storage.pin_key)
        return assemble(
            site, clock=clock, pin_key=storage.pin_key, store=storage.events,
            phones=storage.phones, device_keys=device_keys, bridge_key=storage.bridge_key,
        )
    except BaseException:
        storage.close_now()
        raise
