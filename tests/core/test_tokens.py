"""Factor tokens, backend and nearby JWTs: what verifies, and every way one must not."""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
from datetime import UTC, datetime
from typing import Any

import jwt
import pytest
from hypothesis import HealthCheck, assume, given, settings
from hypothesis import strategies as st

from passbridge.clock import ManualClock
from passbridge.core.model import Factor, Reason, Side, TrustedKey
from passbridge.core.tokens import (
    FACTOR_TOKEN_TYP,
    BadKey,
    FactorTokenMinter,
    FactorTokenVerifier,
    KnownHeaders,
    RefusedNearbyRequest,
    ReplayCache,
    ReplayVerdict,
    TokenRejection,
    VerificationKey,
    VerifiedFactor,
    VerifiedNearbyRequest,
    generate_private_key,
    load_private_key_pem,
    load_public_key_pem,
    new_jti,
    p256_point,
    p256_public_key_from_point,
    private_key_to_pem,
    public_key_to_pem,
    verify_backend_request,
    verify_nearby_request,
)

SITE = "site-1"
START = datetime(2027, 3, 1, 9, 0, tzinfo=UTC)
ES_KEY = generate_private_key("ES256")
ED_KEY = generate_private_key("EdDSA")
OTHER_ES_KEY = generate_private_key("ES256")


def b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def b64json(obj: Any) -> str:
    return b64(json.dumps(obj).encode())


@pytest.fixture
def clock() -> ManualClock:
    return ManualClock(START)


def make_verifier(clock: ManualClock, **kwargs: Any) -> FactorTokenVerifier:
    keys = {
        "b1": VerificationKey.from_pem("b1", "ES256", public_key_to_pem(ES_KEY), issuer="b1"),
        "b2": VerificationKey.from_pem("b2", "EdDSA", public_key_to_pem(ED_KEY), issuer="b2"),
    }
    return FactorTokenVerifier(SITE, keys, clock=clock, **kwargs)


def minter(clock: ManualClock, **kwargs: Any) -> FactorTokenMinter:
    return FactorTokenMinter("b1", ES_KEY, kid="b1", site_id=SITE, clock=clock, **kwargs)


def mint(clock: ManualClock) -> str:
    return minter(clock).mint(
        user="u1", door="front", side=Side.IN, factor=Factor.NFC, credential="phone-1",
        evidence={"txn": "00ff"},
    )


def claims(clock: ManualClock, **overrides: Any) -> dict[str, Any]:
    iat = int(clock.now().timestamp())
    base: dict[str, Any] = {
        "iss": "b1", "aud": SITE, "sub": "u1", "door": "front", "side": "in",
        "factor": "nfc", "cred": "phone-1", "iat": iat, "exp": iat + 10, "jti": new_jti(),
        "ev": {},
    }
    base.update(overrides)
    return {k: v for k, v in base.items() if v is not ...}


def sign(payload: dict[str, Any], key: Any = ES_KEY, alg: str = "ES256",
         headers: dict[str, Any] | None = None) -> str:
    hdr = {"kid": "b1", "typ": FACTOR_TOKEN_TYP}
    hdr.update(headers or {})
    return jwt.encode(payload, key, algorithm=alg, headers=hdr)


def rejected(result: object, reason: Reason = Reason.TOKEN_INVALID) -> str:
    assert isinstance(result, TokenRejection), result
    assert result.reason is reason, result
    return result.detail


# --- what verifies -----------------------------------------------------------


def test_es256_round_trip_carries_every_claim(clock: ManualClock) -> None:
    token = mint(clock)
    header = jwt.get_unverified_header(token)
    assert header == {"alg": "ES256", "kid": "b1", "typ": FACTOR_TOKEN_TYP}
    raw = jwt.decode(token, options={"verify_signature": False})
    assert raw["exp"] - raw["iat"] == 10
    assert len(raw["jti"]) >= 22
    got = make_verifier(clock).verify(token)
    assert isinstance(got, VerifiedFactor)
    assert (got.user, got.door, got.side, got.factor, got.credential) == (
        "u1", "front", Side.IN, Factor.NFC, "phone-1")
    assert got.evidence == {"txn": "00ff"}
    assert got.issuer == "b1"
    assert got.issued_at == START
    assert (got.expires_at - got.issued_at).total_seconds() == 10


def test_eddsa_round_trip(clock: ManualClock) -> None:
    m = FactorTokenMinter("b2", ED_KEY, alg="EdDSA", kid="b2", site_id=SITE, clock=clock)
    token = m.mint(user="u2", door="back", side=Side.OUT, factor=Factor.BLE,
                   credential="phone-2", evidence={"rssi": -52})
    got = make_verifier(clock).verify(token)
    assert isinstance(got, VerifiedFactor)
    assert got.side is Side.OUT and got.factor is Factor.BLE and got.evidence == {"rssi": -52}


def test_site_file_trusted_keys_are_accepted(clock: ManualClock) -> None:
    trusted = [TrustedKey("b1", "ES256", public_key_to_pem(ES_KEY))]
    verifier = FactorTokenVerifier(SITE, trusted, clock=clock)
    assert isinstance(verifier.verify(mint(clock)), VerifiedFactor)


def test_within_leeway_after_expiry_still_verifies(clock: ManualClock) -> None:
    token = mint(clock)
    clock.advance(14.0)  # exp is +10 s, leeway 5 s
    assert isinstance(make_verifier(clock).verify(token), VerifiedFactor)


# --- signature, key and algorithm --------------------------------------------


def test_tampered_payload_is_invalid(clock: ManualClock) -> None:
    h, p, s = mint(clock).split(".")
    payload = json.loads(base64.urlsafe_b64decode(p + "=="))
    payload["sub"] = "mallory"
    assert "signature" in rejected(make_verifier(clock).verify(f"{h}.{b64json(payload)}.{s}"))


def test_token_signed_by_another_key_is_invalid(clock: ManualClock) -> None:
    token = sign(claims(clock), key=OTHER_ES_KEY)
    assert "signature" in rejected(make_verifier(clock).verify(token))


def test_unknown_kid_is_invalid(clock: ManualClock) -> None:
    token = sign(claims(clock), headers={"kid": "nobody"})
    assert "unknown key" in rejected(make_verifier(clock).verify(token))
    for kid in (None, 5, ["b1"]):
        header = b64json({"alg": "ES256", "kid": kid, "typ": FACTOR_TOKEN_TYP})
        _, payload, signature = sign(claims(clock)).split(".")
        assert "unknown key" in rejected(make_verifier(clock).verify(
            f"{header}.{payload}.{signature}"))


def test_alg_none_is_invalid(clock: ManualClock) -> None:
    header = {"alg": "none", "kid": "b1", "typ": FACTOR_TOKEN_TYP}
    token = f"{b64json(header)}.{b64json(claims(clock))}."
    rejected(make_verifier(clock).verify(token))
    rejected(make_verifier(clock).verify(token + "AAAA"))


def test_hs256_with_public_pem_as_secret_is_invalid(clock: ManualClock) -> None:
    header = {"alg": "HS256", "kid": "b1", "typ": FACTOR_TOKEN_TYP}
    signing_input = f"{b64json(header)}.{b64json(claims(clock))}"
    secret = public_key_to_pem(ES_KEY).encode()
    mac = hmac.new(secret, signing_input.encode(), hashlib.sha256).digest()
    assert "algorithm" in rejected(make_verifier(clock).verify(f"{signing_input}.{b64(mac)}"))


def test_header_alg_other_than_the_pinned_one_is_invalid(clock: ManualClock) -> None:
    # Signed with the Ed25519 key but naming the ES256 key's kid.
    token = sign(claims(clock), key=ED_KEY, alg="EdDSA", headers={"kid": "b1"})
    assert "pinned" in rejected(make_verifier(clock).verify(token))


def test_issuer_must_match_the_key(clock: ManualClock) -> None:
    token = sign(claims(clock, iss="b2"))
    assert "issuer" in rejected(make_verifier(clock).verify(token))


def test_key_type_is_checked_against_its_alg() -> None:
    with pytest.raises(BadKey):
        load_public_key_pem(public_key_to_pem(ED_KEY), "ES256")
    with pytest.raises(BadKey):
        load_public_key_pem(public_key_to_pem(ES_KEY), "EdDSA")
    with pytest.raises(BadKey):
        load_public_key_pem(public_key_to_pem(ES_KEY), "HS256")
    with pytest.raises(BadKey):
        load_public_key_pem("not a pem", "ES256")
    with pytest.raises(BadKey):
        FactorTokenMinter("b1", ED_KEY, alg="ES256", site_id=SITE, clock=ManualClock(START))


def test_pem_and_point_round_trips() -> None:
    again = load_private_key_pem(private_key_to_pem(ES_KEY), "ES256")
    assert public_key_to_pem(again) == public_key_to_pem(ES_KEY)
    point = p256_point(ES_KEY)
    assert len(point) == 65 and point[0] == 4
    assert p256_point(p256_public_key_from_point(point)) == point
    with pytest.raises(BadKey):
        p256_public_key_from_point(b"\x04" + b"\x00" * 64)


# --- shape -------------------------------------------------------------------


def test_wrong_typ_is_invalid(clock: ManualClock) -> None:
    assert "type" in rejected(make_verifier(clock).verify(sign(claims(clock),
                                                                headers={"typ": "JWT"})))
    token = jwt.encode(claims(clock), ES_KEY, algorithm="ES256", headers={"kid": "b1"})
    rejected(make_verifier(clock).verify(token))


def test_wrong_audience_is_invalid(clock: ManualClock) -> None:
    assert "audience" in rejected(make_verifier(clock).verify(sign(claims(clock, aud="x"))))


@pytest.mark.parametrize("missing", ["iss", "aud", "sub", "door", "side", "factor", "cred",
                                     "iat", "exp", "jti", "ev"])
def test_missing_claim_is_invalid(clock: ManualClock, missing: str) -> None:
    rejected(make_verifier(clock).verify(sign(claims(clock, **{missing: ...}))))


@pytest.mark.parametrize("bad", [
    {"sub": 5}, {"sub": ""}, {"door": ["front"]}, {"side": "sideways"}, {"factor": "pin"},
    {"factor": "telepathy"}, {"cred": None}, {"iat": "now"}, {"exp": True}, {"jti": 7},
    {"jti": "short"}, {"ev": "rssi"}, {"nbf": "soon"},
])
def test_mistyped_claim_is_invalid(clock: ManualClock, bad: dict[str, Any]) -> None:
    rejected(make_verifier(clock).verify(sign(claims(clock, **bad))))


def test_lifetime_over_30_seconds_is_invalid(clock: ManualClock) -> None:
    iat = int(clock.now().timestamp())
    assert "lifetime" in rejected(make_verifier(clock).verify(sign(claims(clock, exp=iat + 31))))
    assert isinstance(make_verifier(clock).verify(sign(claims(clock, exp=iat + 30))),
                      VerifiedFactor)
    rejected(make_verifier(clock).verify(sign(claims(clock, exp=iat))))


def test_minter_refuses_long_lifetimes_and_pins(clock: ManualClock) -> None:
    with pytest.raises(ValueError):
        minter(clock, lifetime=31)
    with pytest.raises(ValueError):
        minter(clock).mint(user="u", door="d", side=Side.IN, factor=Factor.PIN, credential="c",
                           evidence={})


def test_iat_in_the_future_is_invalid(clock: ManualClock) -> None:
    now = int(clock.now().timestamp())
    token = sign(claims(clock, iat=now + 6, exp=now + 16))
    assert "future" in rejected(make_verifier(clock).verify(token))
    ok = sign(claims(clock, iat=now + 5, exp=now + 15))
    assert isinstance(make_verifier(clock).verify(ok), VerifiedFactor)


def test_expired_token_is_token_expired(clock: ManualClock) -> None:
    token = mint(clock)
    clock.advance(15.001)
    rejected(make_verifier(clock).verify(token), Reason.TOKEN_EXPIRED)


def test_expired_token_uses_the_injected_clock_not_the_wall_clock() -> None:
    past = ManualClock(datetime(2001, 1, 1, tzinfo=UTC))
    future = ManualClock(datetime(2099, 1, 1, tzinfo=UTC))
    assert isinstance(make_verifier(past).verify(mint(past)), VerifiedFactor)
    assert isinstance(make_verifier(future).verify(mint(future)), VerifiedFactor)
    rejected(make_verifier(future).verify(mint(past)), Reason.TOKEN_EXPIRED)


def test_token_is_judged_at_the_instant_it_is_given() -> None:
    # The core passes its decision's moment: the token's times are checked at
    # that instant, not at whatever the verifier's own clock says.
    clock = ManualClock(START)
    token = mint(clock)
    verifier = make_verifier(clock)
    later = datetime.fromtimestamp(START.timestamp() + 16, UTC)
    rejected(verifier.verify(token, later), Reason.TOKEN_EXPIRED)
    assert isinstance(verifier.verify(token, START), VerifiedFactor)


def test_a_remembered_header_never_remembers_its_key(clock: ManualClock) -> None:
    """Headers are parsed once per distinct text, but the key is looked up in
    the verifier's trust list for every token: dropping a bridge's key takes
    effect at its very next token, though the header text is the same."""
    verifier = make_verifier(clock)
    assert isinstance(verifier.verify(mint(clock)), VerifiedFactor)
    without_b1 = verifier.with_keys({
        "b2": VerificationKey.from_pem("b2", "EdDSA", public_key_to_pem(ED_KEY), issuer="b2"),
    })
    assert rejected(without_b1.verify(mint(clock))) == "unknown key"
    # A key swapped under the same kid: the old bridge key's tokens stop verifying.
    swapped = verifier.with_keys({
        "b1": VerificationKey.from_pem("b1", "ES256", public_key_to_pem(OTHER_ES_KEY),
                                       issuer="b1"),
    })
    assert rejected(swapped.verify(mint(clock))) == "bad signature"


def test_known_headers_are_read_only_and_bounded() -> None:
    known = KnownHeaders(limit=2)
    first = known.parse(b64json({"alg": "ES256", "kid": "b1"}))
    assert first == {"alg": "ES256", "kid": "b1"}
    with pytest.raises(TypeError):
        first["kid"] = "b2"  # type: ignore[index]
    assert known.parse(b64json({"alg": "ES256", "kid": "b1"})) is first  # remembered
    assert known.parse("not base64 json") is None
    for kid in ("b2", "b3"):  # the third distinct header starts the memo again
        known.parse(b64json({"alg": "ES256", "kid": kid}))
    assert known.parse(b64json({"alg": "ES256", "kid": "b1"})) is not first
    assert len(known._parsed) <= 2


@pytest.mark.parametrize("garbage", [
    None, 12, 3.5, ["a.b.c"], {"t": 1}, b"\xff\xfe", "", ".", "..", "a.b.c", "a.b", "a.b.c.d",
    "é.é.é", "\x00" * 10, "x" * 5000, b"a" * 5000, "eyJ9.eyJ9.AAAA", "W10.W10.AAAA",
    b64json({"alg": "ES256", "kid": "b1", "typ": FACTOR_TOKEN_TYP}) + "." + "["*3000 + ".AA",
])
def test_garbage_is_invalid_and_never_raises(clock: ManualClock, garbage: object) -> None:
    rejected(make_verifier(clock).verify(garbage))


def test_oversized_token_is_invalid(clock: ManualClock) -> None:
    token = minter(clock).mint(user="u1", door="front", side=Side.IN, factor=Factor.NFC,
                               credential="p", evidence={"pad": "x" * 4000})
    assert "too large" in rejected(make_verifier(clock).verify(token))


# --- single use ----------------------------------------------------------------


def test_second_use_is_replayed(clock: ManualClock) -> None:
    verifier = make_verifier(clock)
    token = mint(clock)
    assert isinstance(verifier.verify(token), VerifiedFactor)
    rejected(verifier.verify(token), Reason.TOKEN_REPLAYED)
    clock.advance(3)
    rejected(verifier.verify(token), Reason.TOKEN_REPLAYED)


def test_a_forged_token_does_not_burn_the_jti(clock: ManualClock) -> None:
    verifier = make_verifier(clock)
    genuine = claims(clock)
    forged = sign(dict(genuine), key=OTHER_ES_KEY)
    rejected(verifier.verify(forged))
    # The same jti with a bad audience or wrong type does not burn it either.
    rejected(verifier.verify(sign(dict(genuine, aud="elsewhere"))))
    rejected(verifier.verify(sign(dict(genuine, factor="pin"))))
    assert isinstance(verifier.verify(sign(genuine)), VerifiedFactor)


def test_an_expired_token_does_not_enter_the_cache(clock: ManualClock) -> None:
    verifier = make_verifier(clock)
    token = mint(clock)
    clock.advance(60)
    rejected(verifier.verify(token), Reason.TOKEN_EXPIRED)
    assert len(verifier.replay_cache) == 0


def test_replay_cache_forgets_only_after_expiry_plus_leeway() -> None:
    cache = ReplayCache(max_entries=2, leeway=5.0)
    assert cache.check_and_add("a", 100.0, now=90.0) is ReplayVerdict.FRESH
    assert cache.check_and_add("b", 200.0, now=90.0) is ReplayVerdict.FRESH
    # Full of unexpired entries: refuse the new one, keep the old ones.
    assert cache.check_and_add("c", 110.0, now=95.0) is ReplayVerdict.FULL
    assert cache.check_and_add("a", 100.0, now=105.0) is ReplayVerdict.REPLAYED
    # After a's exp + leeway it is pruned and there is room again.
    assert cache.check_and_add("c", 120.0, now=105.5) is ReplayVerdict.FRESH
    assert len(cache) == 2
    assert cache.check_and_add("b", 200.0, now=150.0) is ReplayVerdict.REPLAYED


def test_full_replay_cache_rejects_new_tokens(clock: ManualClock) -> None:
    verifier = make_verifier(clock, replay_cache=ReplayCache(max_entries=1))
    first, second = mint(clock), mint(clock)
    assert isinstance(verifier.verify(first), VerifiedFactor)
    assert "replay cache full" in rejected(verifier.verify(second))
    rejected(verifier.verify(first), Reason.TOKEN_REPLAYED)
    clock.advance(16)
    assert isinstance(verifier.verify(mint(clock)), VerifiedFactor)


# --- property tests ------------------------------------------------------------


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.one_of(st.text(max_size=600), st.binary(max_size=600),
                 st.lists(st.text(alphabet="eyJhbGciOi.-_AZaz09", max_size=40), max_size=4)
                 .map(".".join)))
def test_random_input_never_verifies_and_never_raises(data: str | bytes) -> None:
    clock = ManualClock(START)
    rejected(make_verifier(clock).verify(data))


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.data())
def test_mutated_tokens_never_verify_and_never_burn_the_original(data: st.DataObject) -> None:
    clock = ManualClock(START)
    verifier = make_verifier(clock)
    token = mint(clock)
    alphabet = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_.=é"
    chars = list(token)
    for _ in range(data.draw(st.integers(1, 4))):
        op = data.draw(st.sampled_from(["flip", "insert", "delete"]))
        pos = data.draw(st.integers(0, len(chars) - 1))
        if op == "flip":
            chars[pos] = data.draw(st.sampled_from(alphabet))
        elif op == "insert":
            chars.insert(pos, data.draw(st.sampled_from(alphabet)))
        elif len(chars) > 1:
            del chars[pos]
    mutated = "".join(chars)

    def segments(t: str) -> list[bytes] | None:
        try:
            return [base64.urlsafe_b64decode(s + "=" * (-len(s) % 4)) for s in t.split(".")]
        except Exception:
            return None

    # Base64 padding bits can leave the decoded bytes unchanged: that is the same token.
    assume(segments(mutated) != segments(token))
    rejected(verifier.verify(mutated))
    assert isinstance(verifier.verify(token), VerifiedFactor)


# --- backend requests -----------------------------------------------------------

BACKEND_KEY = generate_private_key("ES256")
BACKEND_KEYS = {"app": VerificationKey.from_pem("app", "ES256", public_key_to_pem(BACKEND_KEY),
                                                issuer="app")}


def backend_token(clock: ManualClock, **overrides: Any) -> str:
    iat = int(clock.now().timestamp())
    body: dict[str, Any] = {"iss": "app", "aud": SITE, "sub": "u1", "door": "front",
                            "iat": iat, "exp": iat + 60, "jti": new_jti()}
    body.update(overrides)
    body = {k: v for k, v in body.items() if v is not ...}
    return jwt.encode(body, BACKEND_KEY, algorithm="ES256", headers={"kid": "app"})


def test_backend_request_verifies_once(clock: ManualClock) -> None:
    cache = ReplayCache()
    token = backend_token(clock, role="site_admin")
    got = verify_backend_request(token, BACKEND_KEYS, site_id=SITE, clock=clock,
                                 replay_cache=cache, door="front")
    assert not isinstance(got, TokenRejection)
    assert (got.issuer, got.user, got.door, got.role) == ("app", "u1", "front", "site_admin")
    rejected(verify_backend_request(token, BACKEND_KEYS, site_id=SITE, clock=clock,
                                    replay_cache=cache), Reason.TOKEN_REPLAYED)


@pytest.mark.parametrize("overrides, door", [
    ({"exp": ...}, None), ({"aud": "other"}, None), ({"iss": "evil"}, None),
    ({"role": 3}, None), ({"door": "back"}, "front"), ({"sub": ...}, None),
])
def test_backend_request_rejections(clock: ManualClock, overrides: dict[str, Any],
                                    door: str | None) -> None:
    token = backend_token(clock, **overrides)
    rejected(verify_backend_request(token, BACKEND_KEYS, site_id=SITE, clock=clock,
                                    replay_cache=ReplayCache(), door=door))


def test_backend_request_lifetime_and_expiry(clock: ManualClock) -> None:
    iat = int(clock.now().timestamp())
    long = backend_token(clock, exp=iat + 61)
    rejected(verify_backend_request(long, BACKEND_KEYS, site_id=SITE, clock=clock,
                                    replay_cache=ReplayCache()))
    token = backend_token(clock)
    clock.advance(70)
    rejected(verify_backend_request(token, BACKEND_KEYS, site_id=SITE, clock=clock,
                                    replay_cache=ReplayCache()), Reason.TOKEN_EXPIRED)


def test_admin_request_without_door(clock: ManualClock) -> None:
    token = backend_token(clock, door=..., role="site_admin")
    got = verify_backend_request(token, BACKEND_KEYS, site_id=SITE, clock=clock,
                                 replay_cache=ReplayCache(), require_door=False)
    assert not isinstance(got, TokenRejection) and got.door is None


# --- nearby requests -------------------------------------------------------------

PHONE_KEY = generate_private_key("ES256")


def phone_lookup(cred: str) -> bytes | None:
    return p256_point(PHONE_KEY) if cred == "phone-1" else None


def nearby_token(clock: ManualClock, key: Any = PHONE_KEY, *, kid: str | None = "phone-1",
                 **overrides: Any) -> str:
    iat = int(clock.now().timestamp())
    body: dict[str, Any] = {"cred": "phone-1", "door": "front", "adv": "a1b2c3",
                            "iat": iat, "exp": iat + 30, "jti": new_jti()}
    body.update(overrides)
    return jwt.encode(body, key, algorithm="ES256",
                      headers=None if kid is None else {"kid": kid})


def test_nearby_request_verifies_once(clock: ManualClock) -> None:
    cache = ReplayCache()
    token = nearby_token(clock)
    got = verify_nearby_request(token, phone_lookup, clock=clock, replay_cache=cache,
                                door="front")
    assert not isinstance(got, TokenRejection)
    assert (got.credential, got.door, got.adv) == ("phone-1", "front", "a1b2c3")
    rejected(verify_nearby_request(token, phone_lookup, clock=clock, replay_cache=cache),
             Reason.TOKEN_REPLAYED)


def test_nearby_request_rejections(clock: ManualClock) -> None:
    def check(token: str, door: str | None = None) -> str:
        return rejected(verify_nearby_request(token, phone_lookup, clock=clock,
                                              replay_cache=ReplayCache(), door=door))

    assert "signature" in check(nearby_token(clock, key=OTHER_ES_KEY))
    assert "unknown key" in check(nearby_token(clock, cred="phone-9"))
    assert "another door" in check(nearby_token(clock, door="back"), door="front")
    assert "side must be" in check(nearby_token(clock, side="up"))
    body = jwt.decode(nearby_token(clock), options={"verify_signature": False})
    del body["adv"]
    check(jwt.encode(body, PHONE_KEY, algorithm="ES256"))


@pytest.mark.parametrize("kid", [None, "phone-2", ""])
def test_nearby_request_kid_must_name_cred(clock: ManualClock, kid: str | None) -> None:
    """Signed by phone-1's key (picked by ``cred``), but the header names
    another key or none: attributable, refused as token_invalid, jti spent."""
    cache = ReplayCache()
    token = nearby_token(clock, kid=kid)
    got = verify_nearby_request(token, phone_lookup, clock=clock, replay_cache=cache)
    assert isinstance(got, RefusedNearbyRequest) and not got.ok
    assert (got.credential, got.rejection.reason) == ("phone-1", Reason.TOKEN_INVALID)
    rejected(verify_nearby_request(token, phone_lookup, clock=clock, replay_cache=cache),
             Reason.TOKEN_REPLAYED)


def test_nearby_request_side_claim_is_only_a_claim(clock: ManualClock) -> None:
    got = verify_nearby_request(nearby_token(clock, side="out"), phone_lookup, clock=clock,
                                replay_cache=ReplayCache())
    assert isinstance(got, VerifiedNearbyRequest) and got.claimed_side is Side.OUT
    plain = verify_nearby_request(nearby_token(clock), phone_lookup, clock=clock,
                                  replay_cache=ReplayCache())
    assert isinstance(plain, VerifiedNearbyRequest) and plain.claimed_side is None


@pytest.mark.parametrize("bad", [
    {"iat": float("nan")}, {"exp": float("nan")}, {"exp": float("inf")},
    {"iat": float("-inf")}, {"iat": 10**400, "exp": 10**400 + 10},
])
def test_non_finite_and_huge_times_are_invalid(clock: ManualClock, bad: dict[str, Any]) -> None:
    rejected(make_verifier(clock).verify(sign(claims(clock, **bad))))


# --- the verifier against PyJWT itself ------------------------------------------------------

B64URL_ALPHABET = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_"


def pyjwt_accepts(token: str) -> bool:
    """Whether PyJWT's own ``jwt.decode`` takes the token (times left to the clock)."""
    try:
        jwt.decode(token, ES_KEY.public_key(), algorithms=["ES256"], audience=SITE,
                   issuer="b1", options={"verify_exp": False, "verify_iat": False,
                                         "verify_nbf": False})
    except jwt.InvalidTokenError:
        return False
    return True


@settings(max_examples=300, deadline=None)
@given(segment=st.sampled_from([0, 1, 2]), spelling=st.one_of(
    st.text(alphabet=B64URL_ALPHABET + "=+/ .\n", max_size=6),
    st.sampled_from(["=", "==", "===", "A", "AA", "+", "/"]),
), at=st.integers(0, 400))
def test_verifier_agrees_with_pyjwt_on_respelled_segments(segment: int, spelling: str,
                                                          at: int) -> None:
    """A segment re-spelled (padding, stray characters, another alphabet): the core
    accepts it exactly when PyJWT's own decode does."""
    clock = ManualClock(START)
    parts = mint(clock).split(".")
    target = parts[segment]
    cut = at % (len(target) + 1)
    parts[segment] = target[:cut] + spelling + target[cut:]
    respelled = ".".join(parts)
    got = make_verifier(clock).verify(respelled)
    assert isinstance(got, VerifiedFactor) == pyjwt_accepts(respelled), (respelled, got)


def test_token_with_pyjwt_style_padding_is_handled_as_pyjwt_does(clock: ManualClock) -> None:
    """PyJWT accepts "=" padding on each segment (as some issuers send it): so do we,
    and the padded spelling is the same token, single use included."""
    token = mint(clock)
    padded = ".".join(part + "=" * (-len(part) % 4) for part in token.split("."))
    assert padded != token  # this token's segments do need padding
    public = load_public_key_pem(public_key_to_pem(ES_KEY), "ES256")
    reference = jwt.decode(padded, public, algorithms=["ES256"], audience=SITE,
                           options={"verify_exp": False, "verify_iat": False})
    assert reference == jwt.decode(token, public, algorithms=["ES256"], audience=SITE,
                                   options={"verify_exp": False, "verify_iat": False})
    verifier = make_verifier(clock)
    got = verifier.verify(padded)
    assert isinstance(got, VerifiedFactor) and got.jti == reference["jti"]
    rejected(verifier.verify(token), Reason.TOKEN_REPLAYED)
    # Padding PyJWT refuses (three "=", or "=" that does not complete a quad) we refuse too.
    head, body, sig = token.split(".")
    assert len(sig) % 4 == 2  # 64 bytes: one "=" leaves the quad incomplete
    for bad in (f"{head}.{body}===.{sig}", f"{head}.{body}.{sig}="):
        with pytest.raises(jwt.DecodeError):
            jwt.decode(bad, public, algorithms=["ES256"], audience=SITE,
                       options={"verify_exp": False, "verify_iat": False})
        rejected(make_verifier(clock).verify(bad))


def test_es256_signatures_with_leading_zero_halves_verify(clock: ManualClock) -> None:
    """Signatures whose r or s starts with a zero byte take the general DER route."""
    verifier = make_verifier(clock)
    seen_zero = False
    for _ in range(4000):  # about 1 in 128 has such a half: 600 tries missed 1 run in 110
        token = mint(clock)
        signature = base64.urlsafe_b64decode(token.split(".")[2] + "==")
        if signature[0] == 0 or signature[32] == 0:
            seen_zero = True
            assert isinstance(verifier.verify(token), VerifiedFactor)
            break
    assert seen_zero


def test_wrong_length_es256_signature_is_bad_signature(clock: ManualClock) -> None:
    head, body, sig = mint(clock).split(".")
    raw = base64.urlsafe_b64decode(sig + "==")
    for bad in (raw[:63], raw + b"\x00", b"\x00" * 64):
        assert "signature" in rejected(make_verifier(clock).verify(f"{head}.{body}.{b64(bad)}"))
