"""The ``site:`` section: the site id and its IANA time zone."""

from __future__ import annotations

from functools import cache
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError, available_timezones

from passbridge.site_file import shape
from passbridge.site_file.checker import Checker


def parse_site_header(check: Checker, header: shape.SiteHeader) -> tuple[str, ZoneInfo | None]:
    name = header.timezone
    zones = _known_zones()
    if name not in zones:
        same = [z for z in zones if z.casefold() == name.strip().casefold()]
        hint = f" (did you mean {same[0]!r}?)" if same else ""
        check.fail("site.timezone", f"unknown time zone {name!r}{hint}; expected an IANA name "
                                    "such as America/Los_Angeles or Europe/Berlin")
        return header.id, None
    try:
        return header.id, ZoneInfo(name)
    except (ZoneInfoNotFoundError, ValueError, OSError):
        check.fail("site.timezone", f"time zone {name!r} cannot be read from the tz database")
        return header.id, None


@cache
def _known_zones() -> frozenset[str]:
    """IANA zone names; not the host-dependent ``localtime`` or the placeholder ``Factory``."""
    return frozenset(available_timezones() - {"localtime", "Factory", "posixrules"})
