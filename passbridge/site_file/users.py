"""The ``users:`` section: badges and phones owned by one user, entry code hashes, door grants."""

from __future__ import annotations

from passbridge.core.model import Role, User
from passbridge.core.pin import pin_hash
from passbridge.site_file import shape
from passbridge.site_file.checker import Checker


def _owned_strings(
    check: Checker,
    items: list[str] | None,
    path: str,
    owners: dict[str, tuple[str, str]],
    user_id: str,
    what: str,
    *,
    echo: bool,
) -> tuple[str, ...]:
    """A list of strings that belong to one user only (badge numbers, phone ids)."""
    out: list[str] = []
    for i, item in enumerate(items or []):
        ipath = f"{path}[{i}]"
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


def parse_users(check: Checker, users: list[shape.User], pin_key: bytes) -> list[User]:
    """Users; entry codes are kept only as keyed hashes, never in clear nor echoed."""
    out: list[User] = []
    seen: dict[str, str] = {}
    cards: dict[str, tuple[str, str]] = {}
    phones: dict[str, tuple[str, str]] = {}
    for index, u in enumerate(users):
        path = f"users[{index}]"
        if u.id in seen:
            check.fail(f"{path}.id", f"user {u.id!r} is already defined at {seen[u.id]}")
        else:
            seen[u.id] = path
        user_cards = _owned_strings(check, u.cards, f"{path}.cards", cards, u.id,
                                    "badge number", echo=False)
        user_phones = _owned_strings(check, u.phones, f"{path}.phones", phones, u.id, "phone",
                                     echo=True)
        out.append(User(
            id=u.id,
            name=u.name or "",
            role=Role(u.role),
            cards=user_cards,
            pin_hash=None if u.pin is None else pin_hash(pin_key, u.pin),
            phones=user_phones,
            all_doors=u.doors == "all",
            doors=frozenset(u.doors) if isinstance(u.doors, list) else frozenset(),
            remote_unlock=u.remote_unlock,
            enabled=u.enabled,
        ))
    return out
