"""A whole site file: the top-level keys, each section parsed, and the Site built from them."""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any

from passbridge.core.model import Site
from passbridge.errors import ConfigError
from passbridge.site_file.checker import Checker
from passbridge.site_file.document import load_document, parse_document
from passbridge.site_file.doors import parse_doors
from passbridge.site_file.header import parse_site_header
from passbridge.site_file.revision import site_revision
from passbridge.site_file.shape import SiteFile
from passbridge.site_file.shape_errors import check_shape
from passbridge.site_file.trust import parse_trust
from passbridge.site_file.users import parse_users

SITE_KEYS = frozenset(SiteFile.model_fields)


def load_site(path: Path, *, pin_key: bytes) -> Site:
    """Load and validate a site file; key files are found relative to it."""
    data, label = load_document(path)
    return parse_site(data, file=label, pin_key=pin_key, base_dir=path.parent)


def site_from_text(
    raw: str | bytes, *, file: str, pin_key: bytes, base_dir: Path | None
) -> Site:
    """A site document already in memory (a reload: ``PUT /v1/site``, a
    fleet revision), checked exactly like a file; ``file`` names it in every
    problem, and ``public_key_file`` entries are read relative to ``base_dir``."""
    return parse_site(parse_document(raw, file), file=file, pin_key=pin_key, base_dir=base_dir)


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
    body = ({k: v for k, v in data.items() if k not in extra_keys}
            if isinstance(data, Mapping) else data)
    site, problems = check_shape(SiteFile, body, file=file, context=shape_context(body))
    if site is None:
        raise ConfigError(problems)
    return build_site(site, file=file, pin_key=pin_key, base_dir=base_dir)


def shape_context(data: Any) -> dict[str, Any]:
    """What the shape check needs to know of the file itself: the door ids
    written, to judge references to doors (None when some door's id cannot
    be read: the problem is that door, not every reference to it)."""
    doors = data.get("doors") if isinstance(data, Mapping) else None
    if doors is None:
        return {"doors": []}
    if not isinstance(doors, list):
        return {"doors": None}
    ids: list[str] = []
    for door in doors:
        door_id = door.get("id") if isinstance(door, Mapping) else None
        if not isinstance(door_id, str) or not door_id:
            return {"doors": None}
        if door_id not in ids:
            ids.append(door_id)
    return {"doors": ids}


def build_site(site: SiteFile, *, file: str, pin_key: bytes, base_dir: Path | None) -> Site:
    """The Site from a file of the right shape, after the checks a shape
    cannot make (ids, time zone, dates, duplicates, overlaps, keys)."""
    check = Checker(file)
    site_id, tz = parse_site_header(check, site.site)
    built_doors = parse_doors(check, site.doors or [])
    users = parse_users(check, site.users or [], pin_key)
    bridges, backends = parse_trust(check, site.trust, base_dir)
    if check.problems:
        raise ConfigError(check.problems)
    assert tz is not None  # a missing zone is a problem above

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
