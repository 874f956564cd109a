"""Single-use secrets handed to people: console sign-in links and phone enrolment codes.

Both are bearer secrets that live minutes, so both follow one rule set:
made from ``secrets`` with enough entropy that guessing is hopeless (a
sign-in token 256 bits, an enrolment code 80 bits, typed or scanned from a
QR code), stored only as a keyed hash (HMAC-SHA256 under the key store's
sealed ``one_time_key``: a copy of the database signs nobody in), and used
at most once (the key store marks a code used in one statement, so of two
racing redemptions one wins). A wrong code is only ever *read*: checking
one makes no durable write (issue 8), the caller counts it in a metric.

A link is minted by ``passbridge console-link`` (another process, on the
same database) or by the admin API; the service redeems it. That is why
they live in the database and not in the service's memory.
"""

from __future__ import annotations

import hashlib
import hmac
import secrets
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from enum import StrEnum

from passbridge.adapters.keystore import KeyStore, OneTimeCode
from passbridge.core.model import Site

SIGN_IN = "sign_in"
ENROL = "enrol"
# Contract: a sign-in link lives 5 minutes, an enrolment code 10.
SIGN_IN_SECONDS = 5 * 60
ENROL_SECONDS = 10 * 60
SIGN_IN_TOKEN_BYTES = 32
# Crockford's base32: no I, L, O or U, so a code read aloud or typed from a
# screen has no look-alikes; 16 characters are 80 bits.
CODE_ALPHABET = "0123456789ABCDEFGHJKMNPQRSTVWXYZ"
CODE_LENGTH = 16
# The longest secret a caller may send (a longer one is malformed, not a guess).
MAX_SECRET_CHARS = 128
_LOOK_ALIKES = str.maketrans({"O": "0", "I": "1", "L": "1"})


class Redeemed(StrEnum):
    """What a presented code turned out to be (the metric's reason label)."""

    OK = "ok"
    UNKNOWN = "unknown"
    USED = "used"
    EXPIRED = "expired"


@dataclass(frozen=True, slots=True)
class Issued:
    secret: str
    user: str
    expires: datetime


def enabled_site_admin(site: Site, user_id: str) -> bool:
    """The site file's word: an enabled user whose role is ``site_admin``."""
    user = site.users.get(user_id)
    return user is not None and user.enabled and user.is_site_admin


def digest(keystore: KeyStore, kind: str, secret: str) -> bytes:
    """The keyed hash a code is stored and looked up under; the kind is part
    of it, so an enrolment code can never be presented as a sign-in token."""
    message = f"{kind}\0{secret}".encode()
    return hmac.new(keystore.one_time_key(), message, hashlib.sha256).digest()


def issue(keystore: KeyStore, kind: str, user: str, *, issued_by: str, now: datetime,
          seconds: float) -> Issued:
    """Make a fresh code for ``user`` and store its hash; returns the code
    (the only time it exists in clear) and when it expires."""
    if kind == ENROL:
        secret = "".join(secrets.choice(CODE_ALPHABET) for _ in range(CODE_LENGTH))
    else:
        secret = secrets.token_urlsafe(SIGN_IN_TOKEN_BYTES)
    expires = now.astimezone(UTC) + timedelta(seconds=seconds)
    keystore.add_one_time_code(
        OneTimeCode(digest(keystore, kind, secret), kind, user, issued_by, expires.timestamp()),
        now=now.timestamp())
    return Issued(secret, user, expires)


def check(keystore: KeyStore, kind: str, secret: str, now: datetime
          ) -> tuple[Redeemed, OneTimeCode | None]:
    """What the code is, without using it (a read only)."""
    code = keystore.one_time_code(kind, digest(keystore, kind, secret))
    if code is None:
        return Redeemed.UNKNOWN, None
    if code.used:
        return Redeemed.USED, code
    if code.expires_at <= now.timestamp():
        return Redeemed.EXPIRED, code
    return Redeemed.OK, code


def use(keystore: KeyStore, code: OneTimeCode, now: datetime) -> bool:
    """Use a checked code up; False when another redemption won the race."""
    return keystore.use_one_time_code(code.kind, code.digest, now=now.timestamp())


def redeem(keystore: KeyStore, kind: str, secret: str, now: datetime
           ) -> tuple[Redeemed, OneTimeCode | None]:
    """Check and use in one go (a sign-in link: nothing to verify in between)."""
    found, code = check(keystore, kind, secret, now)
    if found is Redeemed.OK and code is not None and not use(keystore, code, now):
        return Redeemed.USED, code
    return found, code


def normal_code(text: str) -> str | None:
    """An enrolment code as typed (any case, dashes or spaces between groups,
    O for 0, I or L for 1) in its stored form; None if it cannot be one."""
    if len(text) > MAX_SECRET_CHARS:
        return None
    code = "".join(text.split()).replace("-", "").upper().translate(_LOOK_ALIKES)
    if len(code) != CODE_LENGTH or any(c not in CODE_ALPHABET for c in code):
        return None
    return code


def shown_code(code: str) -> str:
    """A code in groups of four, as people read it: ``ABCD-EFGH-JKMN-PQRS``."""
    return "-".join(code[i:i + 4] for i in range(0, len(code), 4))


def sign_in_url(base: str, token: str) -> str:
    """The link a person opens. The token rides in the fragment, which a
    browser never sends: it reaches no server log and no Referer; the console
    page posts it to ``POST /v1/session``."""
    return f"{base.rstrip('/')}/console/sign-in#token={token}"


def mint_sign_in_link(keystore: KeyStore, user: str, *, issued_by: str, now: datetime,
                      base: str, seconds: float = SIGN_IN_SECONDS) -> tuple[str, datetime]:
    """A sign-in link for ``user`` (the caller has checked the user is an
    enabled site admin) and when it expires."""
    issued = issue(keystore, SIGN_IN, user, issued_by=issued_by, now=now, seconds=seconds)
    return sign_in_url(base, issued.secret), issued.expires
