"""``passbridge hub ...``: the fleet hub (NATS + PostgreSQL) and its keys.

``passbridge hub --nats URL --pg-url URL`` serves the hub's HTTP API;
``hub keys create`` makes a fleet admin key pair (the private key to a 0600
file the hub is given with ``--admin-key``, the public PEM printed for
sites' ``serve --fleet-admin-key``); ``hub publish-site FILE --site ID``
publishes a site document as ``PUT /v1/sites/{site}/document`` does;
``hub nats-config --site ID ...`` prints the per-site NATS permissions.
nats and asyncpg are imported only when a hub command runs.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import signal
import ssl
import sys
from pathlib import Path
from typing import Any

from passbridge.cli.common import EXIT_USAGE
from passbridge.cli.keys import write_key_pair
from passbridge.cli.serve import EXIT_STARTUP, SHUTDOWN_SECONDS, run_event_loop, serve_tls
from passbridge.core.tokens.keys import BadKey, load_public_key_pem
from passbridge.core.tokens.trust import VerificationKey

PG_URL_ENV = "PASSBRIDGE_PG_URL"


def _pg_url(args: argparse.Namespace) -> str | None:
    return args.pg_url or os.environ.get(PG_URL_ENV) or None


def _connections_given(args: argparse.Namespace, command: str) -> bool:
    if args.nats is None or _pg_url(args) is None:
        print(f"error: {command} needs --nats URL and --pg-url URL (or {PG_URL_ENV})",
              file=sys.stderr)
        return False
    return True


def _operator_key(text: str) -> tuple[str, VerificationKey]:
    """``ID=FILE``: a fleet operator's public key (ES256 or EdDSA, by its type)."""
    kid, sep, file = text.partition("=")
    if not sep or not kid or not file:
        raise argparse.ArgumentTypeError(f"expected ID=FILE, got {text!r}")
    try:
        pem = Path(file).read_text()
    except OSError as exc:
        raise argparse.ArgumentTypeError(f"{file}: {exc.strerror or exc}") from None
    for alg in ("ES256", "EdDSA"):
        try:
            return kid, VerificationKey(kid, alg, load_public_key_pem(pem, alg), kid)
        except BadKey:
            continue
    raise argparse.ArgumentTypeError(f"{file}: not a P-256 or Ed25519 public key (PEM)")


def _signer(path: str | None) -> Any:
    from passbridge.fleet.hub.publish import AdminSigner

    return None if path is None else AdminSigner.from_file(Path(path))


def _hub(args: argparse.Namespace) -> int:
    from passbridge.fleet.hub.publish import PublishError

    if not _connections_given(args, "passbridge hub"):
        return EXIT_USAGE
    try:
        signer = _signer(args.admin_key)
    except PublishError as exc:
        print(f"error: --admin-key {exc}", file=sys.stderr)
        return EXIT_USAGE
    from passbridge.service.edge import TlsConfigError

    try:
        tls = serve_tls(args)
    except TlsConfigError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return EXIT_USAGE
    if not args.operator_key:
        print("warning: no --operator-key: every operator route will answer 401",
              file=sys.stderr)
    return run_event_loop(_serve_hub(args, signer, tls))


async def _serve_hub(args: argparse.Namespace, signer: Any, tls: ssl.SSLContext | None) -> int:
    from aiohttp import web

    from passbridge.fleet.hub.app import Hub, HubConfig, create_hub_app
    from passbridge.service.edge import EdgeSite
    from passbridge.service.http import HttpLimits

    config = HubConfig(args.nats, str(_pg_url(args)), operator_keys=dict(args.operator_key),
                       signer=signer, unlock_timeout=args.unlock_timeout,
                       ack_wait=args.audit_ack_wait, gap_grace=args.gap_grace)
    limits = HttpLimits()
    runner = web.AppRunner(create_hub_app(Hub(config), limits=limits), handle_signals=False,
                           shutdown_timeout=SHUTDOWN_SECONDS, access_log=None)
    try:
        await runner.setup()  # connects PostgreSQL (migrations) and NATS, starts ingestion
    except Exception as exc:  # what cannot be reached, said plainly
        await runner.cleanup()
        print(f"error: the hub could not start: {_start_problem(exc, args)}", file=sys.stderr)
        return EXIT_STARTUP
    site = EdgeSite(runner, args.host, args.port, limits=limits, ssl_context=tls)
    try:
        await site.start()
    except OSError as exc:
        await runner.cleanup()
        print(f"error: cannot listen on {args.host}:{args.port}: {exc.strerror or exc}",
              file=sys.stderr)
        return EXIT_STARTUP
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for signum in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(signum, stop.set)
    bound = runner.addresses[0] if runner.addresses else (args.host, args.port)
    scheme = "https" if tls is not None else "http"
    print(f"passbridge: hub serving on {scheme}://{bound[0]}:{bound[1]} (NATS {args.nats})",
          flush=True)
    await stop.wait()
    print("passbridge: hub stopping", flush=True)
    await runner.cleanup()
    print("passbridge: hub stopped", flush=True)
    return 0


def _start_problem(exc: BaseException, args: argparse.Namespace) -> str:
    import nats.errors

    if isinstance(exc, nats.errors.Error):
        return f"NATS at {args.nats}: {exc}"
    if isinstance(exc, OSError) or type(exc).__module__.startswith("asyncpg"):
        return f"PostgreSQL (--pg-url / {PG_URL_ENV}): {type(exc).__name__}: {exc}"
    return f"{type(exc).__name__}: {exc}"


def _keys_create(args: argparse.Namespace) -> int:
    written = write_key_pair(Path(args.out), args.id, "ES256")
    if written is None:
        return EXIT_USAGE
    private_path, public_path, public_pem = written
    print(f"wrote {private_path} (private, 0600: give it to `passbridge hub --admin-key`)")
    print(f"wrote {public_path} (give it to each site: serve --fleet-admin-key {public_path})")
    print(public_pem, end="")
    return 0


def _nats_config(args: argparse.Namespace) -> int:
    """The nats-server ``authorization`` block locking each site to its own subjects."""
    from passbridge.fleet.nats_permissions import authorization_block

    try:
        print(authorization_block(args.site, args.hub_user), end="")
    except ValueError as exc:
        print(f"passbridge hub nats-config: --hub-user: {exc}", file=sys.stderr)
        return EXIT_USAGE
    return 0


def _publish_site(args: argparse.Namespace) -> int:
    from passbridge.fleet.hub.publish import PublishError

    if not _connections_given(args, "publish-site"):
        return EXIT_USAGE
    try:
        document = Path(args.file).read_text(encoding="utf-8")
        signer = _signer(args.admin_key)
        published = asyncio.run(_publish(args.nats, str(_pg_url(args)), signer, args.site,
                                         document))
    except PublishError as exc:
        print(f"error: {args.file}: {exc}", file=sys.stderr)
        return EXIT_USAGE
    print(f"published {args.file} to site {args.site} (seq {published.seq})")
    return 0


async def _publish(nats_url: str, pg_url: str, signer: Any, site: str, document: str) -> Any:
    import nats

    from passbridge.fleet.hub.metrics import HubMetrics
    from passbridge.fleet.hub.publish import Publisher
    from passbridge.fleet.hub.store import HubStore

    store = await HubStore.open(pg_url, max_size=2)
    try:
        nc = await nats.connect(nats_url)
        try:
            publisher = Publisher(store, nc.jetstream(), signer, HubMetrics())
            return await publisher.site_document(site, document)
        finally:
            await nc.close()
    finally:
        await store.close()


def _connection_flags(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--nats", metavar="URL", help="NATS server(s), e.g. nats://127.0.0.1:4222")
    parser.add_argument("--pg-url", metavar="URL",
                        help=f"PostgreSQL (postgresql://...); default ${PG_URL_ENV}")
    parser.add_argument("--admin-key", metavar="FILE",
                        help="the fleet admin private key that signs what sites apply "
                             "(from `passbridge hub keys create`)")


def register(commands: Any) -> None:
    hub = commands.add_parser(
        "hub", help="the fleet hub: sites' audit, remote unlock, configuration (NATS, PostgreSQL)")
    _connection_flags(hub)
    hub.add_argument("--host", default="127.0.0.1")
    hub.add_argument("--port", type=int, default=8090)
    hub.add_argument("--tls-cert", metavar="FILE", help="serve HTTPS with this certificate "
                     "(PEM chain); with --tls-key")
    hub.add_argument("--tls-key", metavar="FILE", help="the certificate's private key (PEM)")
    hub.add_argument("--operator-key", metavar="ID=FILE", type=_operator_key, action="append",
                     default=[], help="a fleet operator's public key (repeatable)")
    hub.add_argument("--unlock-timeout", type=float, default=5.0, metavar="SECONDS",
                     help="how long a site may take to answer a remote unlock (then 504)")
    hub.add_argument("--audit-ack-wait", type=float, default=None, metavar="SECONDS",
                     help="how long before JetStream redelivers audit records a stopped "
                          "hub had fetched but not stored (default 20)")
    hub.add_argument("--gap-grace", type=float, default=None, metavar="SECONDS",
                     help="how long a missing audit record may be late before it is a gap "
                          "alert; keep it above --audit-ack-wait (default 60)")
    hub.set_defaults(func=_hub)
    hub_commands = hub.add_subparsers(dest="hub_command", metavar="COMMAND")
    keys = hub_commands.add_parser("keys", help="fleet admin keys")
    keys_commands = keys.add_subparsers(dest="keys_command", required=True)
    create = keys_commands.add_parser("create", help="make a fleet admin key pair (ES256)")
    create.add_argument("--out", required=True, metavar="DIR")
    create.add_argument("--id", default="fleet-admin", help="the key id (kid) sites see")
    create.set_defaults(func=_keys_create)
    nats_config = hub_commands.add_parser(
        "nats-config", help="print the nats-server authorization block that locks each "
        "site to its own subjects (README: Fleet mode)")
    nats_config.add_argument("--site", required=True, action="append", metavar="ID",
                             help="a site id (repeatable: every site of the fleet)")
    nats_config.add_argument("--hub-user", default="passbridge-hub", metavar="NAME",
                             help="the hub's NATS user name")
    nats_config.set_defaults(func=_nats_config)
    publish = hub_commands.add_parser(
        "publish-site", help="sign a site document and put it in the site's bucket")
    publish.add_argument("file", metavar="FILE")
    publish.add_argument("--site", required=True, metavar="ID")
    _connection_flags(publish)
    publish.set_defaults(func=_publish_site)
