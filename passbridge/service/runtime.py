"""The parts one service runs with, and the two ways to get them.

``build_services`` is ``passbridge serve``: the site file, the SQLite audit
log and key store under ``--db``, the system clock. ``memory_services`` is a
scenario or a test: a site already loaded, a ManualClock, in-memory audit
and keys. ``create_app`` takes either and cannot tell them apart.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Protocol, runtime_checkable

from passbridge.adapters.ble_central import ProximityRadios
from passbridge.adapters.keystore import KeyStore, MemoryKeyStore
from passbridge.bridge.proximity import AdvertResolver
from passbridge.clock import Clock, SystemClock
from passbridge.controller import DoorController
from passbridge.core.engine import DoorCore
from passbridge.core.model import Site
from passbridge.core.tokens import (
    FactorTokenMinter,
    FactorTokenVerifier,
    ReplayCache,
    VerificationKey,
    verification_keys,
)
from passbridge.service.device_keys import DeviceKeys
from passbridge.service.events import EventStore, MemoryEventStore, PublishingAudit
from passbridge.service.metrics import Metrics

if TYPE_CHECKING:
    from passbridge.service.site_reload import ReloadOutcome

SiteListener = Callable[[Site, Site], None]


@dataclass
class SiteReloads:
    """What a live reload needs beside the site itself (service/site_reload.py).

    ``path``: the site file ``serve`` started with (SIGHUP re-reads it, and
    ``public_key_file`` entries of any new document are read relative to
    its folder); None for a service built from a site in memory.
    ``listeners`` are told ``(old, new)`` right after each swap, in the same
    step (no await): parts that keep their own copy of something in the
    site (the simulated phones; sign-in sessions of admins) follow it there.
    """

    path: Path | None = None
    lock: asyncio.Lock = field(default_factory=asyncio.Lock)
    listeners: list[SiteListener] = field(default_factory=list)
    last: ReloadOutcome | None = None


class Radio(Protocol):
    """A radio bridge run for the life of the app (NFC reader, BLE central)."""

    async def start(self) -> None: ...

    async def stop(self) -> None: ...


@runtime_checkable
class ReportsHealth(Protocol):
    """A radio that can say it is degraded (for /healthz), e.g. a held NFC field."""

    @property
    def health_name(self) -> str: ...

    def health(self) -> str | None:
        """One line for the operator while degraded; None while fine."""
        ...


@dataclass
class Services:
    clock: Clock
    core: DoorCore
    controller: DoorController
    audit: PublishingAudit
    keystore: KeyStore
    # What each door radio heard (one table per door and side).
    proximity: ProximityRadios
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
    # Live site reloads (SIGHUP, PUT /v1/site, the fleet): service/site_reload.py.
    reloads: SiteReloads = field(default_factory=SiteReloads)
    # Rotating BLE id -> enrolled credential, from the key store's proximity keys.
    resolver: AdvertResolver = field(init=False)

    def __post_init__(self) -> None:
        self.resolver = AdvertResolver(self.keystore, self.clock)

    @property
    def site(self) -> Site:
        return self.core.site

    def degraded(self) -> dict[str, str]:
        """What the radios report as degraded, by radio."""
        found: dict[str, str] = {}
        for radio in self.radios:
            if isinstance(radio, ReportsHealth):
                line = radio.health()
                if line is not None:
                    found[radio.health_name] = line
        return found


def bridge_trust(site: Site, keystore: KeyStore) -> dict[str, VerificationKey]:
    """The keys whose factor tokens the core accepts: the site's
    ``trust.bridges``, bridges trusted in the key store, and the in-process
    bridge's own key (at start and at every reload)."""
    return verification_keys([*site.bridges, *keystore.trusted_keys("bridge"),
                              keystore.bridge_key().trusted()])


def backend_trust(site: Site, keystore: KeyStore) -> dict[str, VerificationKey]:
    """The app backends' keys: the site's ``trust.backends`` and the key store's."""
    return verification_keys([*site.backends, *keystore.trusted_keys("backend")])


def assemble(
    site: Site,
    *,
    clock: Clock,
    keystore: KeyStore,
    store: EventStore,
    proximity: ProximityRadios | None = None,
    close_audit: bool = True,
) -> Services:
    """Wire core, in-process bridge, controller, audit and metrics together.

    The in-process bridge signs with the key store's bridge key; the core
    trusts it alongside the site's ``trust.bridges`` and bridges trusted in
    the key store. Backends come from the site file and the key store.

    The bridge and the core share this process, and the core still verifies
    every token the bridge mints, in full (interfaces.md: nothing is trusted
    because of where it came from).
    """
    bridge = keystore.bridge_key()
    verifier = FactorTokenVerifier(site.id, bridge_trust(site, keystore), clock=clock)
    core = DoorCore(site, pin_key=keystore.pin_key(), tokens=verifier)
    minter = FactorTokenMinter(bridge.id, bridge.private_key, alg=bridge.alg, site_id=site.id,
                               clock=clock)
    audit = PublishingAudit(store)
    controller = DoorController(core, audit, clock, minter=minter)
    metrics = Metrics(lambda: core.site.doors)
    controller.observe(metrics.observe_decision)
    return Services(
        clock=clock,
        core=core,
        controller=controller,
        audit=audit,
        keystore=keystore,
        proximity=proximity if proximity is not None else ProximityRadios(clock),
        backends=backend_trust(site, keystore),
        device_keys=DeviceKeys(keystore),
        metrics=metrics,
        close_audit=close_audit,
    )


def memory_services(
    site: Site,
    *,
    clock: Clock,
    keystore: KeyStore | None = None,
    proximity: ProximityRadios | None = None,
) -> Services:
    """Services for a scenario or a test: nothing touches the disk.

    The site must have been loaded with ``keystore.pin_key()``.
    """
    return assemble(
        site, clock=clock, keystore=keystore if keystore is not None else MemoryKeyStore(),
        store=MemoryEventStore(), proximity=proximity,
    )


def audited_services(
    site: Site,
    *,
    clock: Clock,
    keystore: KeyStore,
    audit_path: Path,
) -> Services:
    """Services whose audit log is a real SQLite file at ``audit_path``,
    with keys from ``keystore``: what a scenario runs on, so its decisions
    take the same durable audit write as ``serve`` without ``serve``'s key
    store file. The caller closes ``services.audit.store``."""
    from passbridge.adapters.audit_sqlite import AuditLog
    from passbridge.service.storage import SqliteEventStore

    store = SqliteEventStore(AuditLog(audit_path, clock=clock))
    return assemble(site, clock=clock, keystore=keystore, store=store)


def build_services(
    site_path: Path,
    db_path: Path,
    clock: Clock | None = None,
) -> Services:
    """What ``passbridge serve`` runs with; raises ConfigError for a bad site
    file and ``storage.StartupError`` for a database it cannot use."""
    from passbridge.service.storage import open_storage
    from passbridge.site_file import load_site

    clock = clock if clock is not None else SystemClock()
    storage = open_storage(db_path)
    try:
        site = load_site(site_path, pin_key=storage.keystore.pin_key())
        services = assemble(
            site, clock=clock, keystore=storage.keystore, store=storage.events,
        )
        services.reloads.path = site_path
        return services
    except BaseException:
        storage.close_now()
        raise
