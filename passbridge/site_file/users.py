"""The ``users:`` section: badges and phones owned by one user, entry code hashes, door grants."""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Any

from passbridge.core.model import Door, Role, User
from passbridge.core.pin import pin_hash
from passbridge.site_file.checker import Checker
from passbridge.site_file.describe import kind_of

_PIN = re.compile(r"[0-9]{4,16}")
_USER_KEYS = ("name", "role", "cards", "pin", "phones", "doors", "remote_unlock", "enabled")


def _owned_strings(
    check: Checker,
    m: Mapping[str, Any],
    key: str,
    path: str,
    owners: dict[str, tuple[str, str]],
    user_id: str,
    what: str,
    *,
    echo: bool,
    ids: bool = False,
) -> tuple[str, ...]:
    """A list of strings that belong to one user only (badge numbers, phone ids).

    ``ids``: the strings are ids (phone ids become credential ids, URL parts
    and file names), so they must follow the id rule.
    """
    out: list[str] = []
    for ipath, item in check.items(m, key, path):
        if not isinstance(item, str) or not item.strip():
            hint = " (quote it: a bare number loses leading zeros)" if isinstance(
                item, int) and not isinstance(item, bool) else ""
            check.fail(ipath, f"expected a non-empty string; got {kind_of(item)}{hint}")
            continue
        if ids and not check.id_at(item, ipath):
            continue
        if item in owners:
            other_path, other_user = owners[item]
            shown = f"{what} {item!r}" if echo else f"the same {what} as {other_path}"
            whose = "this user" if other_user == user_id else f"user {other_user!r}"
            check.fail(ipath, f"{shown} is already given to {whose} ({other_path}); "
                              f"a {what} belongs to one user")
            continue
        owners[item] = (ipath, user_id)
        out.append(item)
    return tuple(out)


def parse_users(
    check: Checker,
    top: Mapping[str, Any],
    doors: Mapping[str, Door | None] | None,
    pin_key: bytes,
) -> list[User]:
    users: list[User] = []
    seen: dict[str, str] = {}
    cards: dict[str, tuple[str, str]] = {}
    phones: dict[str, tuple[str, str]] = {}
    for path, item in check.items(top, "users", ""):
        m = check.mapping(item, path, required=("id",), optional=_USER_KEYS)
        if m is None:
            continue
        user_id = check.ident(m, "id", path)
        if user_id in seen:
            check.fail(f"{path}.id", f"user {user_id!r} is already defined at {seen[user_id]}")
        elif user_id:
            seen[user_id] = path
        role = check.choice(m, "role", path, Role, Role.USER) or Role.USER
        user_cards = _owned_strings(check, m, "cards", path, cards, user_id, "badge number",
                                    echo=False)
        user_phones = _owned_strings(check, m, "phones", path, phones, user_id, "phone",
                                     echo=True, ids=True)
        all_doors, user_doors = check.door_ids(m, "doors", path, doors) or (False, frozenset())
        users.append(User(
            id=user_id,
            name=check.text(m, "name", path),
            role=role,
            cards=user_cards,
            pin_hash=_parse_pin(check, m, path, pin_key),
            phones=user_phones,
            all_doors=all_doors,
            doors=user_doors,
            remote_unlock=check.flag(m, "remote_unlock", path, False),
            enabled=check.flag(m, "enabled", path, True),
        ))
    return users


def _parse_pin(check: Checker, m: Mapping[str, Any], path: str, pin_key: bytes) -> bytes | None:
    """The keyed hash of the entry code; the code itself is neither kept nor echoed."""
    if "pin" not in m or m["pin"] is None:
        return None
    value = m["pin"]
    where = f"{path}.pin"
    if isinstance(value, int) and not isinstance(value, bool):
        check.fail(where, 'expected the entry code as a quoted string of 4-16 digits, e.g. '
                          'pin: "0246"; a bare number loses its leading zeros')
        return None
    if not isinstance(value, str) or not _PIN.fullmatch(value):
        got = f"a string of {len(value)} characters" if isinstance(value, str) else kind_of(value)
        check.fail(where, f"expected a string of 4-16 digits (0-9); got {got}")
        return None
    return pin_hash(pin_key, value)
