"""The ``site:`` section: the site id and its IANA time zone."""

from __future__ import annotations

from functools import cache
from typing import Any
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError, available_timezones

from passbridge.site_file.checker import Checker
from passbridge.site_file.describe import kind_of


def parse_site_header(check: Checker, value: Any) -> tuple[str, ZoneInfo | None]:
    m = check.mapping(value, "site", required=("id", "timezone"), optional=())
    if m is None:
        return "", None
    site_id = check.ident(m, "id", "site")
    name = m.get("timezone")
    if "timezone" not in m:
        return site_id, None
    if not isinstance(name, str) or not name.strip():
        check.fail("site.timezone", f"expected an IANA time zone name such as "
                                    f"America/Los_Angeles; got {kind_of(name)}")
        return site_id, None
    zones = _known_zones()
    if name not in zones:
        same = [z for z in zones if z.casefold() == name.strip().casefold()]
        hint = f" (did you mean {same[0]!r}?)" if same else ""
        check.fail("site.timezone", f"unknown time zone {name!r}{hint}; expected an IANA name "
                                    "such as America/Los_Angeles or Europe/Berlin")
        return site_id, None
    try:
        return site_id, ZoneInfo(name)
    except (ZoneInfoNotFoundError, ValueError, OSError):
        check.fail("site.timezone", f"time zone {name!r} cannot be read from the tz database")
        return site_id, None


@cache
def _known_zones() -> frozenset[str]:
    """IANA zone names; not the host-dependent ``localtime`` or the placeholder ``Factory``."""
    return frozenset(available_timezones() - {"localtime", "Factory", "posixrules"})
