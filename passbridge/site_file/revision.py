"""The site revision: a short hash of the canonical form of what was loaded."""

from __future__ import annotations

import hashlib
import json
from collections.abc import Mapping
from dataclasses import asdict
from datetime import date
from typing import Any
from zoneinfo import ZoneInfo

from passbridge.core.model import Door, TrustedKey, User


def _json_default(value: Any) -> Any:
    if isinstance(value, frozenset | set):
        return sorted(value)
    if isinstance(value, date):
        return value.isoformat()
    if isinstance(value, bytes):
        return value.hex()
    raise TypeError(f"cannot put {type(value).__name__} into the revision")


def site_revision(
    site_id: str,
    tz: ZoneInfo,
    doors: Mapping[str, Door],
    users: Mapping[str, User],
    bridges: tuple[TrustedKey, ...],
    backends: tuple[TrustedKey, ...],
) -> str:
    canonical = {
        "site": {"id": site_id, "timezone": tz.key},
        "doors": [asdict(door) for door in doors.values()],
        "users": [asdict(user) for user in users.values()],
        "trust": {"bridges": [asdict(k) for k in bridges],
                  "backends": [asdict(k) for k in backends]},
    }
    blob = json.dumps(canonical, sort_keys=True, separators=(",", ":"), default=_json_default)
    return hashlib.sha256(blob.encode("utf-8")).hexdigest()[:12]
