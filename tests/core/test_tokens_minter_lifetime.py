"""A minter's lifetime: ``int`` and ``float`` both mint, bad values fail at construction.

``FactorTokenMinter(lifetime=10)`` once crashed at the first ``mint()``
(``int`` has no ``is_integer`` on Python 3.11): a setting that looks right
and fails only at the first tap at the door.
"""

from __future__ import annotations

import math
from datetime import UTC, datetime

import jwt
import pytest

from passbridge.clock import ManualClock
from passbridge.core.model import Factor, Side
from passbridge.core.tokens import (
    FactorTokenMinter,
    FactorTokenVerifier,
    VerificationKey,
    VerifiedFactor,
    generate_private_key,
    public_key_to_pem,
)

SITE = "site-7"
START = datetime(2027, 3, 1, 9, 0, tzinfo=UTC)
KEY = generate_private_key("ES256")


def _minter(clock: ManualClock, lifetime: object) -> FactorTokenMinter:
    return FactorTokenMinter("b1", KEY, kid="b1", site_id=SITE, clock=clock,
                             lifetime=lifetime)  # type: ignore[arg-type]


def _mint(minter: FactorTokenMinter) -> str:
    return minter.mint(user="u1", door="front", side=Side.IN, factor=Factor.NFC,
                       credential="phone-1")


@pytest.mark.parametrize(("lifetime", "exp_after"), [
    (10, 10), (30, 30), (1, 1), (10.0, 10), (2.5, 2.5), (30.0, 30),
])
def test_int_and_float_lifetimes_mint_tokens_the_core_accepts(
    lifetime: float, exp_after: float
) -> None:
    clock = ManualClock(START)
    token = _mint(_minter(clock, lifetime))
    claims = jwt.decode(token, KEY.public_key(), algorithms=["ES256"], audience=SITE,
                        options={"verify_exp": False, "verify_iat": False})
    assert claims["exp"] - claims["iat"] == exp_after
    # A whole number of seconds stays an integer claim, as PyJWT writes it.
    assert type(claims["exp"]) is type(exp_after)
    key = VerificationKey.from_pem("b1", "ES256", public_key_to_pem(KEY), issuer="b1")
    verifier = FactorTokenVerifier(SITE, {"b1": key}, clock=clock)
    assert isinstance(verifier.verify(token), VerifiedFactor)
    # ...and expires after its lifetime (plus the default 5 s leeway).
    clock.advance(exp_after + 6)
    assert not isinstance(
        FactorTokenVerifier(SITE, {"b1": key}, clock=clock).verify(token), VerifiedFactor
    )


@pytest.mark.parametrize("lifetime", [
    0, 0.0, -1, 31, 30.5, math.nan, math.inf, -math.inf, True, False, "10", None, [10],
])
def test_bad_lifetimes_are_refused_at_construction(lifetime: object) -> None:
    with pytest.raises(ValueError, match="lifetime"):
        _minter(ManualClock(START), lifetime)
