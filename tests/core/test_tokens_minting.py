"""The minter's tokens are PyJWT's encoding: same header and payload bytes,
and every token it mints verifies with ``jwt.decode``."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

import jwt
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from passbridge.clock import ManualClock
from passbridge.core.model import Factor, Side
from passbridge.core.tokens import (
    FACTOR_TOKEN_TYP,
    FactorTokenMinter,
    generate_private_key,
)

SITE = "site-9"
START = datetime(2027, 3, 1, 9, 0, tzinfo=UTC)
KEYS = {"ES256": generate_private_key("ES256"), "EdDSA": generate_private_key("EdDSA")}

evidence = st.dictionaries(
    st.text(max_size=8),
    st.one_of(st.none(), st.booleans(), st.integers(-2**40, 2**40), st.text(max_size=12),
              st.floats(allow_nan=False, allow_infinity=False)),
    max_size=4,
)


def _reference(token: str, alg: str, kid: str) -> str:
    """The token PyJWT makes of the same claims and headers."""
    claims = jwt.decode(token, KEYS[alg].public_key(), algorithms=[alg], audience=SITE,
                        options={"verify_exp": False, "verify_iat": False})
    return jwt.encode(claims, KEYS[alg], algorithm=alg,
                      headers={"kid": kid, "typ": FACTOR_TOKEN_TYP})


@pytest.mark.parametrize("alg", ["ES256", "EdDSA"])
@settings(max_examples=40, deadline=None)
@given(ev=evidence, user=st.text(min_size=1, max_size=20), lifetime=st.sampled_from([10.0, 2.5]))
def test_minted_token_is_pyjwts_encoding_and_verifies(
    alg: str, ev: dict[str, Any], user: str, lifetime: float
) -> None:
    minter = FactorTokenMinter("bridge-\u00e9", KEYS[alg], alg=alg, kid="k/1", site_id=SITE,
                               clock=ManualClock(START), lifetime=lifetime)
    token = minter.mint(user=user, door="front", side=Side.OUT, factor=Factor.REMOTE,
                        credential="backend:x", evidence=ev)
    assert token.split(".")[:2] == _reference(token, alg, "k/1").split(".")[:2]
    header = jwt.get_unverified_header(token)
    assert header == {"alg": alg, "kid": "k/1", "typ": FACTOR_TOKEN_TYP}
    claims = jwt.decode(token, KEYS[alg].public_key(), algorithms=[alg], audience=SITE,
                        options={"verify_exp": False, "verify_iat": False})
    assert claims["sub"] == user and claims["ev"] == ev and claims["side"] == "out"
    assert claims["exp"] - claims["iat"] == lifetime


def test_a_tampered_minted_token_fails_pyjwt() -> None:
    minter = FactorTokenMinter("b", KEYS["ES256"], site_id=SITE, clock=ManualClock(START))
    token = minter.mint(user="u", door="d", side=Side.IN, factor=Factor.NFC, credential="c")
    head, body, sig = token.split(".")
    flipped = sig[:-2] + ("A" if sig[-2] != "A" else "B") + sig[-1]
    with pytest.raises(jwt.InvalidSignatureError):
        jwt.decode(f"{head}.{body}.{flipped}", KEYS["ES256"].public_key(), algorithms=["ES256"],
                   audience=SITE, options={"verify_exp": False, "verify_iat": False})


def test_unserialisable_evidence_is_still_a_type_error() -> None:
    minter = FactorTokenMinter("b", KEYS["ES256"], site_id=SITE, clock=ManualClock(START))
    with pytest.raises(TypeError):
        minter.mint(user="u", door="d", side=Side.IN, factor=Factor.NFC, credential="c",
                    evidence={"when": START})
