"""``passbridge serve``: the service with its HTTP API, audit log and radios.

Start-up failures are one line on stderr and a non-zero exit (a bad site
file: each placed problem, exit 2, via cli.main); SIGINT/SIGTERM stop
accepting, let in-flight decisions finish and commit, then close the
audit log. SIGHUP re-reads the site file and puts it in force without a
restart (service/site_reload.py); a bad file is logged with its places and
the running site stays. The service's parts are imported inside the command, so that
the other commands do not load aiohttp and the service to start.
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import signal
import ssl
import sys
from collections.abc import Coroutine
from pathlib import Path
from typing import Any

from passbridge.cli.common import DEFAULT_DB, EXIT_USAGE

log = logging.getLogger(__name__)

EXIT_STARTUP = 1
SHUTDOWN_SECONDS = 10.0


def attach_radios(
    services: Any, *, nfc: list[str], ble: list[str], db: Path, nfc_settings: Any = None,
    simulate: bool = False, osdp: list[str] | None = None,
) -> Any:
    """Put the radios on ``services.radios``; the app starts them after the
    audit log opens and stops them before it closes.

    Real devices are named (``--nfc DEVICE=DOOR[:SIDE]``, ``--ble
    ADAPTER=DOOR[:SIDE]``, ``--osdp PORT:ADDRESS=DOOR[:SIDE]``). Only with
    ``simulate`` (``serve --simulate``) is each radio kind with no real
    device simulated, and each door side with a reader or keypad and no
    ``--osdp`` reader gets a simulated OSDP reader. Returns the simulated
    air (which adds the /v1/sim routes), or None when nothing is simulated.
    """
    from passbridge.service.hardware import BleDoorRadio, NfcDoorReader, Placement

    for spec in nfc:
        services.radios.append(NfcDoorReader(services, Placement.parse("--nfc", spec, services),
                                             nfc_settings))
    for spec in ble:
        services.radios.append(BleDoorRadio(services, Placement.parse("--ble", spec, services)))
    buses: list[Any] = []
    if osdp:
        from passbridge.service.osdp import osdp_buses

        buses = osdp_buses(services, osdp)
        services.radios.extend(buses)
    if not simulate:
        return None
    wired = _simulated_wired_doors(services, db, buses)
    if nfc and ble and wired is None:
        return None
    # Only now: the simulators load bumble and nfcpy's udp driver.
    from passbridge.sim.air import SIM_PHONES_DIR, SimulatedAir

    air = SimulatedAir(services, db.parent / SIM_PHONES_DIR, nfc=not nfc, ble=not ble,
                       wired=wired)
    services.radios.append(air)
    return air


def _simulated_wired_doors(services: Any, db: Path, real: list[Any]) -> Any:
    """``serve --simulate``: a simulated OSDP reader (pty bus, libosdp PD) for each
    door side with a reader or keypad and no real ``--osdp`` reader, driven by
    the service's own panels; None when there is none to simulate."""
    from passbridge.service.osdp import buses_for
    from passbridge.sim.wired import SIM_OSDP_DIR, SimulatedWiredReaders, WiredDoors, reader_sides

    placed = {(p.door, p.side) for bus in real for p in bus.placements}
    sides = [side for side in reader_sides(services.site) if side not in placed]
    if not sides:
        return None
    sims = SimulatedWiredReaders(services.keystore, db.parent / SIM_OSDP_DIR, sides)
    buses = buses_for(services, sims.panel_placements())
    # The readers first: their buses must exist when the panels open them.
    services.radios.append(sims)
    services.radios.extend(buses)
    return WiredDoors(sims, buses)


def attach_fleet(services: Any, args: argparse.Namespace) -> None:
    """``--fleet URL``: join the fleet (passbridge.fleet.site_link). Opt-in:
    without the flag nothing of the fleet, and no nats, is imported. The
    link starts first and stops last of the radios, so its cursor is stored
    before the audit log closes."""
    if args.fleet is None:
        for flag in ("fleet_creds", "fleet_tls_ca", "fleet_tls_cert", "fleet_tls_key"):
            if getattr(args, flag) is not None:
                raise _startup_error(f"--{flag.replace('_', '-')} needs --fleet URL")
        if args.fleet_admin_key:
            raise _startup_error("--fleet-admin-key needs --fleet URL")
        return
    from passbridge.fleet.site_link import (
        FleetSettings,
        FleetSetupError,
        SiteLink,
        check_settings,
        load_admin_keys,
    )
    from passbridge.service.storage import SqliteEventStore

    def path(value: str | None) -> Path | None:
        return Path(value) if value is not None else None

    try:
        settings = FleetSettings(
            url=args.fleet, creds=path(args.fleet_creds), tls_ca=path(args.fleet_tls_ca),
            tls_cert=path(args.fleet_tls_cert), tls_key=path(args.fleet_tls_key),
            admin_keys=load_admin_keys(args.fleet_admin_key))
        check_settings(settings)
    except FleetSetupError as exc:
        raise _startup_error(str(exc)) from exc
    store = services.audit.store
    assert isinstance(store, SqliteEventStore)
    services.radios.insert(0, SiteLink(services, settings, store))


def _startup_error(message: str) -> Exception:
    from passbridge.service.storage import StartupError

    return StartupError(message)


def add_fleet_flags(serve: argparse.ArgumentParser) -> None:
    """Fleet mode (README "Joining a fleet"): NATS options as nats clients take them."""
    serve.add_argument("--fleet", metavar="URL",
                       help="join a fleet through NATS at URL (nats://[USER:PASS@]HOST:PORT, "
                            "tls://...); the site keeps deciding locally when NATS is down")
    serve.add_argument("--fleet-creds", metavar="FILE",
                       help="NATS user credentials file (JWT and nkey seed, .creds)")
    serve.add_argument("--fleet-tls-ca", metavar="FILE",
                       help="CA bundle (PEM) that signed the NATS server's certificate")
    serve.add_argument("--fleet-tls-cert", metavar="FILE",
                       help="client certificate (PEM) for NATS with TLS client auth")
    serve.add_argument("--fleet-tls-key", metavar="FILE",
                       help="the client certificate's private key (PEM)")
    serve.add_argument("--fleet-admin-key", metavar="[KID=]FILE", action="append", default=[],
                       help="a fleet admin public key (PEM) whose signed site documents and "
                            "enrolments this site applies; kid = the file's name without "
                            ".pem and .pub (fleet-admin.pub.pem: fleet-admin) unless given "
                            "(repeatable)")


def make_device_keys(services: Any, db: Path) -> None:
    """Make the keys of the site's wired devices that have none yet (first
    start, or a door added), and tell the operator where to see them: the
    secrets themselves are never printed or logged here."""
    made = services.device_keys.ensure(services.site)
    if made:
        print(f"passbridge: made {len(made)} device keys (one per wired reader and keypad "
              f"side); show them for provisioning with: passbridge keys device list "
              f"--db {db} --show-secret", flush=True)


def _cmd_serve(args: argparse.Namespace) -> int:
    from passbridge.adapters.keystore import KeyStoreError
    from passbridge.service.edge import TlsConfigError, fit_connection_cap
    from passbridge.service.http import HttpLimits
    from passbridge.service.runtime import build_services
    from passbridge.service.storage import StartupError

    logging.basicConfig(
        level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s"
    )
    logging.getLogger("aiohttp.access").setLevel(logging.WARNING)
    # nfcpy logs every reader open at INFO: with a reader per simulated tap
    # that is two lines a tap and nothing an operator acts on.
    logging.getLogger("nfc").setLevel(logging.WARNING)
    # A hostile radio can make these talk thousands of times a minute.
    from passbridge.bridge.flood import limit_radio_logs

    limit_radio_logs()
    db = Path(args.db)
    try:
        tls = serve_tls(args)
    except TlsConfigError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return EXIT_USAGE
    limits = HttpLimits(
        header_timeout=args.header_timeout, body_timeout=args.body_timeout,
        idle_timeout=args.idle_timeout, max_connections=fit_connection_cap(args.max_connections),
    )
    try:
        services = build_services(Path(args.site), db)
    except StartupError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return EXIT_STARTUP
    if args.console_link is not None and not _console_admin(services, args.console_link):
        asyncio.run(services.audit.store.close())
        return EXIT_USAGE
    try:
        try:
            make_device_keys(services, db)
        except KeyStoreError as exc:
            raise StartupError(str(exc)) from exc
        air = attach_radios(services, nfc=args.nfc, ble=args.ble, db=db,
                            nfc_settings=_nfc_settings(args), simulate=args.simulate,
                            osdp=args.osdp)
        attach_fleet(services, args)
    except StartupError as exc:
        asyncio.run(services.audit.store.close())
        print(f"error: {exc}", file=sys.stderr)
        return EXIT_STARTUP
    return run_event_loop(_serve(services, air, args.host, args.port, db, limits=limits, tls=tls,
                                 console_link=args.console_link))


def _console_admin(services: Any, user: str) -> bool:
    """``--console-link USER`` names an enabled site admin (else one line, exit 2)."""
    from passbridge.service.one_time import enabled_site_admin

    if enabled_site_admin(services.site, user):
        return True
    print(f"error: --console-link: {user!r} is not an enabled site admin of site "
          f"{services.site.id}", file=sys.stderr)
    return False


def print_console_link(services: Any, user: str, base: str) -> None:
    """A sign-in link for ``user``, printed once the service listens (scripts/serve.sh)."""
    from passbridge.service.one_time import mint_sign_in_link

    url, expires = mint_sign_in_link(services.keystore, user, issued_by="serve", base=base,
                                     now=services.clock.now())
    print(f"passbridge: console sign-in link for {user} (single use, until "
          f"{expires.isoformat(timespec='seconds')}): {url}", flush=True)


def serve_tls(args: argparse.Namespace) -> ssl.SSLContext | None:
    """The TLS context for ``--tls-cert``/``--tls-key`` (both or neither), or
    None for plain HTTP; TlsConfigError names the file at fault."""
    from passbridge.service.edge import TlsConfigError, tls_context

    if args.tls_cert is None and args.tls_key is None:
        return None
    if args.tls_cert is None or args.tls_key is None:
        raise TlsConfigError("--tls-cert and --tls-key go together: give both or neither")
    return tls_context(Path(args.tls_cert), Path(args.tls_key))


def _nfc_settings(args: argparse.Namespace) -> Any:
    """The NFC reader options; an option not given keeps NfcSettings' default."""
    from passbridge.bridge.flood import FloodSettings
    from passbridge.service.hardware import NfcSettings
    from passbridge.service.storage import StartupError

    defaults = NfcSettings()
    hold = defaults.field_hold if args.nfc_field_hold is None else args.nfc_field_hold
    phone_hold = (defaults.phone_field_hold if args.nfc_phone_hold is None
                  else args.nfc_phone_hold)
    fwi = defaults.fwi_max if args.nfc_fwi_max is None else args.nfc_fwi_max
    if not hold > 0:
        raise StartupError("--nfc-field-hold: must be a positive number of seconds")
    if not phone_hold > 0:
        raise StartupError("--nfc-phone-hold: must be a positive number of seconds")
    if not 0 <= fwi <= 14:
        raise StartupError("--nfc-fwi-max: must be 0..14 (ISO 14443-4)")
    if not (args.auth_failures_per_second > 0 and args.auth_failure_burst >= 1):
        raise StartupError("--auth-failures-per-second and --auth-failure-burst must be positive")
    return NfcSettings(
        field_hold=hold,
        phone_field_hold=phone_hold,
        fwi_max=fwi,
        flood=FloodSettings(auth_rate=args.auth_failures_per_second,
                            auth_burst=args.auth_failure_burst),
    )


def run_event_loop(main: Coroutine[Any, Any, int]) -> int:
    """Run the service on uvloop where it is installed (Linux and macOS; about
    10% more decisions per second, measured), else on asyncio's own loop."""
    try:
        import uvloop
    except ImportError:
        return asyncio.run(main)
    with asyncio.Runner(loop_factory=uvloop.new_event_loop) as runner:
        return runner.run(main)


async def _serve(
    services: Any, air: Any, host: str, port: int, db: Path, *,
    limits: Any, tls: ssl.SSLContext | None, console_link: str | None = None,
) -> int:
    from aiohttp import web

    from passbridge.service.app import create_app
    from passbridge.service.edge import EdgeSite

    runner = web.AppRunner(create_app(services, simulated=air, limits=limits),
                           handle_signals=False, shutdown_timeout=SHUTDOWN_SECONDS,
                           access_log=None)
    from passbridge.service.storage import StartupError

    try:
        await runner.setup()  # opens the audit log, starts the radios
    except StartupError as exc:
        await runner.cleanup()
        print(f"error: {exc}", file=sys.stderr)
        return EXIT_STARTUP
    site = EdgeSite(runner, host, port, limits=limits, metrics=services.metrics,
                    ssl_context=tls)
    try:
        await site.start()
    except OSError as exc:
        await runner.cleanup()
        print(f"error: cannot listen on {host}:{port}: {exc.strerror or exc}", file=sys.stderr)
        return EXIT_STARTUP
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for signum in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(signum, stop.set)
    reloading: set[asyncio.Task[None]] = set()
    loop.add_signal_handler(signal.SIGHUP, _on_sighup, services, reloading)
    bound = runner.addresses[0] if runner.addresses else (host, port)
    print(
        f"passbridge: serving site {services.site.id} on "
        f"{'https' if tls is not None else 'http'}://{bound[0]}:{bound[1]} "
        f"(database {db}{', simulated radios' if air is not None else ''})",
        flush=True,
    )
    if console_link is not None:
        host_part = f"[{bound[0]}]" if ":" in str(bound[0]) else str(bound[0])
        print_console_link(services, console_link,
                           f"{'https' if tls is not None else 'http'}://{host_part}:{bound[1]}")
    await stop.wait()
    loop.remove_signal_handler(signal.SIGHUP)
    print("passbridge: stopping: finishing in-flight decisions", flush=True)
    if reloading:  # a reload under way finishes (and is audited) first
        await asyncio.gather(*reloading, return_exceptions=True)
    await runner.cleanup()  # stop accepting, drain handlers, then close the audit log
    print("passbridge: stopped", flush=True)
    return 0


def _on_sighup(services: Any, reloading: set[asyncio.Task[None]]) -> None:
    """SIGHUP: re-read the site file ``serve`` started with, in a task (a
    signal handler must not await); the task is kept until it ends."""
    task = asyncio.get_running_loop().create_task(_reload_site_file(services),
                                                  name="site-reload")
    reloading.add(task)
    task.add_done_callback(reloading.discard)


async def _reload_site_file(services: Any) -> None:
    """A SIGHUP reload: applied and logged, or refused and logged with every
    problem's place while the running site stays in force; never fatal."""
    from passbridge.errors import ConfigError
    from passbridge.service.site_reload import reload_site_file

    path = services.reloads.path
    if path is None:
        log.warning("SIGHUP: this service was not started from a site file; nothing to reload")
        return
    try:
        await reload_site_file(services, path, source="sighup", actor="operator (SIGHUP)")
    except ConfigError:
        pass  # reload_site logged each problem with its place, counted and audited it
    except Exception:
        log.exception("SIGHUP: the site reload failed; the running site stays in force")


def _seconds(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        value = float("nan")
    if not 0 < value <= 3600:
        raise argparse.ArgumentTypeError(f"expected seconds, over 0 and at most 3600: {text!r}")
    return value


def _connections(text: str) -> int:
    if not text.isdigit() or not 1 <= int(text) <= 1_000_000:
        raise argparse.ArgumentTypeError(f"expected a whole number 1-1000000: {text!r}")
    return int(text)


def add_http_flags(serve: argparse.ArgumentParser) -> None:
    """TLS and connection limits (docs/decisions.md, "Connection limits")."""
    from passbridge.service.http import HttpLimits

    defaults = HttpLimits()
    serve.add_argument("--tls-cert", metavar="FILE",
                       help="serve HTTPS with this certificate chain (PEM); needs --tls-key")
    serve.add_argument("--tls-key", metavar="FILE",
                       help="the certificate's private key (PEM, unencrypted)")
    serve.add_argument("--header-timeout", type=_seconds, default=defaults.header_timeout,
                       metavar="SECONDS",
                       help="a request head must arrive within this long of its first byte "
                            f"(and a TLS handshake complete) (default {defaults.header_timeout:g})")
    serve.add_argument("--body-timeout", type=_seconds, default=defaults.body_timeout,
                       metavar="SECONDS",
                       help="a request body must arrive within this long, else 408, and "
                            "an answer be taken by the client within it, else the connection "
                            f"is closed (default {defaults.body_timeout:g})")
    serve.add_argument("--idle-timeout", type=_seconds, default=defaults.idle_timeout,
                       metavar="SECONDS",
                       help="close a connection that sends no request for this long "
                            f"(keep-alive; default {defaults.idle_timeout:g})")
    serve.add_argument("--max-connections", type=_connections, default=defaults.max_connections,
                       metavar="N",
                       help="client connections open at once; more are closed as they arrive "
                            f"(default {defaults.max_connections})")


def register(commands: Any) -> None:
    serve = commands.add_parser("serve", help="run the service (HTTP API, audit log, radios)")
    serve.add_argument("--site", required=True, metavar="FILE")
    serve.add_argument("--db", default=str(DEFAULT_DB), metavar="PATH",
                       help=f"SQLite database: audit log and key store (default {DEFAULT_DB})")
    serve.add_argument("--host", default="127.0.0.1")
    serve.add_argument("--port", type=int, default=8080)
    serve.add_argument("--simulate", action="store_true",
                       help="run simulated radios and phones for every radio kind with no "
                            "real device, with their /v1/sim routes (testing and demos only)")
    serve.add_argument("--nfc", metavar="DEVICE=DOOR[:SIDE]", action="append", default=[],
                       help="a real NFC reader at a door side, e.g. usb:054c:06c3=front "
                            "(repeatable)")
    serve.add_argument("--ble", metavar="ADAPTER=DOOR[:SIDE]", action="append", default=[],
                       help="a real Bluetooth adapter at a door side, e.g. hci0=front "
                            "(repeatable)")
    serve.add_argument("--osdp", metavar="PORT:ADDRESS=DOOR[:SIDE][,OPTION=VALUE...]",
                       action="append", default=[],
                       help="a wired OSDP reader (with keypad) at a door side, e.g. "
                            "/dev/ttyUSB0:1=front; options: format=auto|h10301|wiegand34|raw, "
                            "facility=N, keys=SECONDS (inter-key timeout, default 5), "
                            "baud=9600|19200|38400|57600|115200|230400 (per port); secure "
                            "channel required, key set by 'passbridge osdp install' "
                            "(repeatable; several readers may share a port)")
    serve.add_argument("--nfc-field-hold", type=float, metavar="SECONDS",
                       help="how long a card that did not authenticate may stay in a "
                            "reader's field after its tap before the reader polls again "
                            "(default 1)")
    serve.add_argument("--nfc-phone-hold", type=float, metavar="SECONDS",
                       help="the same after a phone authenticated: it is read again (a new "
                            "decision) only after this long in the field (default 5)")
    serve.add_argument("--nfc-fwi-max", type=int, metavar="FWI",
                       help="largest frame waiting integer accepted from a card's ATS "
                            "(default 10: 309 ms; ISO 14443-4 allows up to 14: 4.9 s)")
    from passbridge.bridge.flood import FloodSettings

    flood = FloodSettings()
    serve.add_argument("--auth-failures-per-second", type=float, default=flood.auth_rate,
                       metavar="N", help="failed authentications a reader keeps taking per "
                       "second (token bucket; default %(default)s)")
    serve.add_argument("--auth-failure-burst", type=int, default=flood.auth_burst, metavar="N",
                       help="failed authentications a reader takes back to back "
                            "(default %(default)s)")
    serve.add_argument("--console-link", metavar="USER",
                       help="once listening, print a single-use sign-in link to the browser "
                            "console for this site admin (as `passbridge console-link`)")
    add_http_flags(serve)
    add_fleet_flags(serve)
    serve.set_defaults(func=_cmd_serve)
