"""A whole site file: the top-level keys, each section parsed, and the Site built from them."""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any

from passbridge.core.model import Site
from passbridge.errors import ConfigError
from passbridge.site_file.checker import Checker
from passbridge.site_file.document import load_document
from passbridge.site_file.doors import parse_doors
from passbridge.site_file.header import parse_site_header
from passbridge.site_file.revision import site_revision
from passbridge.site_file.trust import parse_trust
from passbridge.site_file.users import parse_users

SITE_KEYS = frozenset({"site", "doors", "users", "trust"})


def load_site(path: Path, *, pin_key: bytes) -> Site:
    """Load and validate a site file; key files are found relative to it."""
    data, label = load_document(path)
    return parse_site(data, file=label, pin_key=pin_key, base_dir=path.parent)


def parse_site(
    data: Mapping[str, Any],
    *,
    file: str,
    pin_key: bytes,
    extra_keys: frozenset[str] = frozenset(),
    base_dir: Path | None = None,
) -> Site:
    """Validate the site part of a parsed document and build the Site, or raise ConfigError.

    ``extra_keys`` are further top-level keys the caller handles itself (a
    scenario's ``name`` and ``steps``); they are ignored here and do not enter
    the revision.
    """
    check = Checker(file)
    top = check.mapping(
        data, "", required=("site",), optional=tuple(sorted(SITE_KEYS - {"site"} | extra_keys))
    )
    if top is None:
        raise ConfigError(check.problems)

    site_id, tz = parse_site_header(check, top.get("site"))
    doors = parse_doors(check, top)
    users = parse_users(check, top, doors, pin_key)
    bridges, backends = parse_trust(check, top.get("trust"), base_dir, doors)
    if check.problems:
        raise ConfigError(check.problems)
    assert tz is not None  # a missing zone is a problem above

    assert doors is not None  # an unreadable door is a problem above
    built_doors = {door.id: door for door in doors.values() if door is not None}
    built_users = {user.id: user for user in users}
    by_pin: dict[bytes, list[str]] = {}
    for user in users:
        if user.pin_hash is not None:
            by_pin.setdefault(user.pin_hash, []).append(user.id)
    return Site(
        id=site_id,
        timezone=tz,
        doors=built_doors,
        users=built_users,
        bridges=bridges,
        backends=backends,
        revision=site_revision(site_id, tz, built_doors, built_users, bridges, backends),
        user_by_card={card: user.id for user in built_users.values() for card in user.cards},
        user_by_phone={phone: user.id for user in built_users.values() for phone in user.phones},
        users_by_pin_hash={h: tuple(ids) for h, ids in by_pin.items()},
    )
