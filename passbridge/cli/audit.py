"""``passbridge audit verify``: check the audit log's hash chain.

Exit 0 when every record matches its hash, 1 when the chain is broken (the
first record that was changed, removed or moved is named), 2 when the file
cannot be checked at all. Safe beside a running service: the database is
opened read-only, through SQLite only.
"""

from __future__ import annotations

import argparse
import sys
from typing import Any

from passbridge.adapters.audit_sqlite import AuditUnavailable, verify_database
from passbridge.cli.common import DEFAULT_DB

EXIT_BROKEN = 1
EXIT_UNUSABLE = 2


def _anchor(text: str) -> tuple[int, str]:
    """``SEQ:HASH`` as ``GET /v1/audit/head`` gave it."""
    seq, _, digest = text.partition(":")
    digest = digest.strip().lower()
    if not seq.isdigit() or int(seq) < 1 or len(digest) != 64 or not all(
            c in "0123456789abcdef" for c in digest):
        raise argparse.ArgumentTypeError(f"{text!r}: expected SEQ:HASH (64 hex digits)")
    return int(seq), digest


def _audit_verify(args: argparse.Namespace) -> int:
    try:
        report = verify_database(args.db, dict(args.anchor))
    except AuditUnavailable as error:
        print(f"error: {error}", file=sys.stderr)
        return EXIT_UNUSABLE
    if not report.ok:
        print(f"broken: {args.db}: {report.problem} "
              f"({report.records} records before it verify)")
        return EXIT_BROKEN
    print(f"ok: {args.db}: {report.records} records; head seq {report.head.seq} "
          f"hash {report.head.hash}")
    return 0


def register(commands: Any) -> None:
    audit = commands.add_parser("audit", help="the audit log's hash chain")
    audit_commands = audit.add_subparsers(dest="audit_command", required=True)
    verify = audit_commands.add_parser(
        "verify", help="check every record against its hash; name the first one that is not")
    verify.add_argument("--db", default=str(DEFAULT_DB))
    verify.add_argument(
        "--anchor", type=_anchor, action="append", default=[], metavar="SEQ:HASH",
        help="a head kept elsewhere (GET /v1/audit/head): record SEQ must still have HASH")
    verify.set_defaults(func=_audit_verify)
