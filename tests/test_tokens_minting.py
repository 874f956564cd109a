"""The minter's own JWS encoding, held to PyJWT's: same header and payload
bytes, and every token it mints verifies with ``jwt.decode``."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

import jwt
import pytest
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives.asymmetric.utils import encode_dss_signature
from hypothesis import given, settings
from hypothesis import strategies as st
from jwt.utils import der_to_raw_signature

from passbridge.clock import ManualClock
from passbridge.core import tokens as token_module
from passbridge.core.model import Factor, Side
from passbridge.core.tokens import (
    FACTOR_TOKEN_TYP,
    FactorTokenMinter,
    VerificationKey,
    generate_private_key,
    p256_der_to_raw,
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


def test_der_to_raw_matches_pyjwt_on_real_signatures() -> None:
    key = KEYS["ES256"]
    assert isinstance(key, ec.EllipticCurvePrivateKey)
    for i in range(300):
        der = key.sign(i.to_bytes(4, "big"), ec.ECDSA(hashes.SHA256()))
        assert p256_der_to_raw(der) == der_to_raw_signature(der, key.curve)


@given(r=st.integers(1, 2**256 - 1), s=st.integers(1, 2**256 - 1))
def test_der_to_raw_matches_pyjwt_for_any_halves(r: int, s: int) -> None:
    der = encode_dss_signature(r, s)
    assert p256_der_to_raw(der) == r.to_bytes(32, "big") + s.to_bytes(32, "big")


# --- the backend-request policy's shortcut never passes what the careful checks refuse

_value = st.one_of(
    st.none(), st.booleans(), st.integers(-5, 400), st.floats(-5, 400, allow_nan=False),
    st.sampled_from(["", "front", "back", "be", "site-9", "x" * 22, "y" * 300, "JWT"]),
    st.lists(st.sampled_from(["site-9", "other"]), max_size=2),
)
_VALID = {"iss": "be", "sub": "u", "aud": SITE, "door": "front", "jti": "j" * 24,
          "iat": 100, "exp": 130}
_MISSING = object()


@st.composite
def _claims(draw: st.DrawFn) -> dict[str, Any]:
    """A good claim set with a few claims changed, dropped or added."""
    claims: dict[str, Any] = dict(_VALID)
    names = ("iss", "sub", "aud", "door", "role", "jti", "iat", "exp", "nbf")
    for name in draw(st.lists(st.sampled_from(names), max_size=3, unique=True)):
        value = draw(st.one_of(_value, st.just(_MISSING)))
        if value is _MISSING:
            claims.pop(name, None)
        else:
            claims[name] = value
    return claims


@settings(max_examples=600, deadline=None)
@given(claims=_claims(), door=st.sampled_from([None, "front"]), require_door=st.booleans(),
       issuer=st.sampled_from([None, "be"]))
@pytest.mark.slow
def test_backend_claims_shortcut_implies_the_careful_checks(
    claims: dict[str, Any], door: str | None, require_door: bool, issuer: str | None
) -> None:
    policy = token_module._backend_policy(SITE, door, require_door, 5.0)
    key = VerificationKey("k", "ES256", KEYS["ES256"].public_key(), issuer)
    assert policy.claims_pass is not None
    if policy.claims_pass(claims, key.issuer, policy.audience):
        assert token_module._claims_problem(claims, key, policy) is None


def test_backend_claims_shortcut_takes_the_common_case() -> None:
    policy = token_module._backend_policy(SITE, "front", True, 5.0)
    assert policy.claims_pass is not None
    claims = dict(_VALID)
    assert policy.claims_pass(claims, "be", SITE)
    assert not policy.claims_pass({**claims, "door": "back"}, "be", SITE)
    assert not policy.claims_pass(claims, "other", SITE)
