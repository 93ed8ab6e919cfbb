"""JWT verification: every claim rule, the algorithms refused, key rotation and the token cache."""

from __future__ import annotations

import asyncio
import base64
import hashlib
import hmac
import json
import time

import pytest
from aiohttp import web
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from kthena_router.auth.jwks import JWKS
from kthena_router.auth.jwt import JWTVerifier, TokenRejected
from tests.integration.harness import free_port, start_app
from tests.unit.auth.keys import AUDIENCE, ISSUER, ec_key, jwk, rsa_key, token, write_jwks


@pytest.fixture(scope="module")
def keys():
    return {"r1": rsa_key(), "e1": ec_key(), "e384": ec_key(ec.SECP384R1()), "other": rsa_key(), "r2": rsa_key()}


@pytest.fixture
def jwks_path(tmp_path, keys):
    return write_jwks(tmp_path / "jwks.json", jwk(keys["r1"], "r1"), jwk(keys["e1"], "e1"),
                      jwk(keys["e384"], "e384"))


async def verifier(path, *, issuer=ISSUER, audiences=(AUDIENCE, "other"), **kwargs) -> JWTVerifier:
    jwks = JWKS(str(path))
    await jwks.load()
    return JWTVerifier(jwks, issuer=issuer, audiences=audiences, **kwargs)


async def refused(v: JWTVerifier, tok: str, reason: str) -> None:
    with pytest.raises(TokenRejected, match=reason) as caught:
        await v.verify(tok)
    assert tok not in str(caught.value)


async def test_rsa_pss_and_ec_tokens_name_their_subject(jwks_path, keys):
    v = await verifier(jwks_path)
    assert await v.verify(token(keys["r1"])) == "user-1"
    assert await v.verify(token(keys["r1"], alg="PS256", sub="pss")) == "pss"
    assert await v.verify(token(keys["e1"], kid="e1", alg="ES256", sub="user-2")) == "user-2"
    assert await v.verify(token(keys["e384"], kid="e384", alg="ES384", sub="user-3")) == "user-3"


async def test_without_sub_the_principal_is_the_authorized_party(jwks_path, keys):
    v = await verifier(jwks_path)
    assert await v.verify(token(keys["r1"], sub=None, azp="batch-client")) == "batch-client"


@pytest.mark.parametrize("claims, reason", [
    ({"exp": int(time.time()) - 3600}, "expired"),
    ({"exp": None}, "no 'exp' claim"),
    ({"exp": "tomorrow"}, "'exp' claim is not a number"),
    ({"nbf": int(time.time()) + 3600}, "not valid yet"),
    ({"iat": int(time.time()) + 3600}, "not valid yet"),
    ({"iss": "https://elsewhere"}, "another issuer"),
    ({"iss": None}, "'iss'"),
    ({"aud": "someone-else"}, "audience"),
    ({"aud": None}, "'aud'"),
], ids=["expired", "no-exp", "exp-not-a-number", "nbf-future", "iat-future", "wrong-issuer", "no-issuer", "wrong-audience",
        "no-audience"])
async def test_claims_are_enforced(jwks_path, keys, claims, reason):
    v = await verifier(jwks_path)
    await refused(v, token(keys["r1"], **claims), reason)


async def test_clock_skew_within_sixty_seconds_is_tolerated(jwks_path, keys):
    v = await verifier(jwks_path)
    now = int(time.time())
    assert await v.verify(token(keys["r1"], exp=now - 30, iat=now - 600))
    assert await v.verify(token(keys["r1"], nbf=now + 30, iat=now + 30))


async def test_an_audience_list_needs_only_one_configured_audience(jwks_path, keys):
    v = await verifier(jwks_path)
    assert await v.verify(token(keys["r1"], aud=["unrelated", "other"])) == "user-1"


async def test_issuer_and_audience_are_not_checked_when_not_configured(jwks_path, keys):
    v = await verifier(jwks_path, issuer=None, audiences=())
    assert await v.verify(token(keys["r1"], iss="https://anyone", aud="anything")) == "user-1"


async def test_a_signature_by_another_key_is_refused(jwks_path, keys):
    v = await verifier(jwks_path)
    await refused(v, token(keys["other"]), "signature does not verify")
    good = token(keys["r1"])
    header, payload, signature = good.split(".")
    forged = json.loads(base64.urlsafe_b64decode(payload + "=="))
    forged["sub"] = "admin"
    forged_payload = base64.urlsafe_b64encode(json.dumps(forged).encode()).rstrip(b"=").decode()
    await refused(v, f"{header}.{forged_payload}.{signature}", "signature does not verify")


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def _hand_made(header: dict, claims: dict, sign) -> str:
    signing_input = f"{_b64(json.dumps(header).encode())}.{_b64(json.dumps(claims).encode())}"
    return f"{signing_input}.{_b64(sign(signing_input.encode()))}"


async def test_alg_none_and_hmac_signed_with_the_public_key_are_refused(jwks_path, keys):
    v = await verifier(jwks_path)
    claims = {"sub": "admin", "iss": ISSUER, "aud": AUDIENCE, "exp": int(time.time()) + 600}
    unsigned = _hand_made({"alg": "none", "kid": "r1"}, claims, lambda _: b"")
    await refused(v, unsigned, "'none' is not accepted")
    # The classic confusion: HS256 keyed with the RSA public key that the verifier holds.
    public_pem = keys["r1"].public_key().public_bytes(serialization.Encoding.PEM,
                                                      serialization.PublicFormat.SubjectPublicKeyInfo)
    confused = _hand_made({"alg": "HS256", "kid": "r1"}, claims,
                          lambda data: hmac.new(public_pem, data, hashlib.sha256).digest())
    await refused(v, confused, "'HS256' is not accepted")


async def test_an_algorithm_that_does_not_fit_the_named_key_is_refused_not_an_error(jwks_path, keys):
    v = await verifier(jwks_path)
    await refused(v, token(keys["e1"], kid="r1", alg="ES256"), "not for algorithm ES256")
    await refused(v, token(keys["e1"], kid="e384", alg="ES256"), "not for algorithm ES256")


async def test_a_key_declaring_its_algorithm_verifies_only_that_algorithm(tmp_path, keys):
    path = write_jwks(tmp_path / "jwks.json", jwk(keys["r1"], "r1", alg="RS256"))
    v = await verifier(path)
    assert await v.verify(token(keys["r1"])) == "user-1"
    await refused(v, token(keys["r1"], alg="PS256"), "not for algorithm PS256")


async def test_a_token_without_kid_is_checked_against_the_keys_of_its_algorithm(jwks_path, keys):
    v = await verifier(jwks_path)
    assert await v.verify(token(keys["e1"], kid=None, alg="ES256", sub="no-kid")) == "no-kid"
    await refused(v, token(keys["other"], kid=None), "signature does not verify")


async def test_a_rotated_key_set_is_fetched_when_a_token_names_a_new_key(tmp_path, keys):
    path = write_jwks(tmp_path / "jwks.json", jwk(keys["r1"], "r1"))
    now = [1000.0]
    v = await verifier(path, monotonic=lambda: now[0])
    write_jwks(path, jwk(keys["r1"], "r1"), jwk(keys["r2"], "r2"))  # the issuer publishes its next key
    assert await v.verify(token(keys["r2"], kid="r2")) == "user-1"
    assert await v.verify(token(keys["r1"], kid="r1")) == "user-1"


async def test_unknown_key_ids_fetch_the_set_at_most_once_per_thirty_seconds(tmp_path, keys):
    path = write_jwks(tmp_path / "jwks.json", jwk(keys["r1"], "r1"))
    now = [1000.0]
    v = await verifier(path, monotonic=lambda: now[0])
    await refused(v, token(keys["r2"], kid="r2"), "no key 'r2'")  # fetched: still not there
    write_jwks(path, jwk(keys["r1"], "r1"), jwk(keys["r2"], "r2"))
    now[0] += 10
    await refused(v, token(keys["r2"], kid="r2"), "no key 'r2'")  # too soon to fetch again
    now[0] += 25
    assert await v.verify(token(keys["r2"], kid="r2")) == "user-1"


async def test_concurrent_tokens_with_a_new_key_share_one_fetch(keys):
    served = {"count": 0}
    body = json.dumps({"keys": [jwk(keys["r1"], "r1")]})

    async def jwks_handler(_request):
        served["count"] += 1
        await asyncio.sleep(0.1)
        return web.Response(text=body, content_type="application/json")

    app = web.Application()
    app.router.add_get("/jwks", jwks_handler)
    port = free_port()
    runner = await start_app(app, "127.0.0.1", port)
    import aiohttp

    session = aiohttp.ClientSession()
    try:
        jwks = JWKS(f"http://127.0.0.1:{port}/jwks", session=session)
        await jwks.load()
        v = JWTVerifier(jwks, issuer=ISSUER, audiences=(AUDIENCE,))
        body = json.dumps({"keys": [jwk(keys["r1"], "r1"), jwk(keys["r2"], "r2")]})
        results = await asyncio.gather(*(v.verify(token(keys["r2"], kid="r2", sub=f"u{i}")) for i in range(5)))
        assert results == [f"u{i}" for i in range(5)]
        assert served["count"] == 2  # the load at start, then one shared fetch
    finally:
        await session.close()
        await runner.cleanup()


async def test_a_cached_token_still_expires(jwks_path, keys):
    now = [time.time()]
    v = await verifier(jwks_path, clock=lambda: now[0])
    tok = token(keys["r1"], now=now[0], exp=int(now[0]) + 100)
    assert await v.verify(tok) == "user-1"
    assert await v.verify(tok) == "user-1"
    now[0] += 100 + 61
    await refused(v, tok, "expired")


async def test_a_key_removed_from_the_set_stops_its_cached_tokens(tmp_path, keys):
    path = write_jwks(tmp_path / "jwks.json", jwk(keys["r1"], "r1"), jwk(keys["r2"], "r2"))
    v = await verifier(path, monotonic=lambda: 0.0)
    tok = token(keys["r2"], kid="r2")
    assert await v.verify(tok) == "user-1"
    write_jwks(path, jwk(keys["r1"], "r1"))  # r2 is revoked at the issuer
    assert await v.jwks.load()
    await refused(v, tok, "no key 'r2'")


async def test_the_cache_is_bounded(jwks_path, keys):
    v = await verifier(jwks_path, cache_size=3)
    tokens = [token(keys["r1"], sub=f"u{i}") for i in range(10)]
    for tok in tokens:
        await v.verify(tok)
    assert len(v._cache) == 3 and list(v._cache) == tokens[-3:]


async def test_key_sets_without_usable_signing_keys_or_not_json_are_errors(tmp_path, keys):
    path = tmp_path / "jwks.json"
    path.write_text(json.dumps({"keys": [{"kty": "oct", "k": "c2VjcmV0", "kid": "h"},
                                         {**jwk(keys["r1"], "enc"), "use": "enc"}]}))
    with pytest.raises(ValueError, match="no usable signing keys"):
        await JWKS(str(path)).load()
    path.write_text("{not json")
    with pytest.raises(ValueError, match="not JSON"):
        await JWKS(str(path)).load()
    path.write_text(json.dumps({"keys": "nope"}))
    with pytest.raises(ValueError, match="no `keys` list"):
        await JWKS(str(path)).load()


_segment = st.one_of(
    st.text(alphabet="ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_", max_size=40),
    st.dictionaries(st.sampled_from(["alg", "kid", "typ", "crit", "exp", "nbf", "iat", "aud", "iss", "sub"]),
                    st.one_of(st.none(), st.booleans(), st.integers(), st.text(max_size=8),
                              st.sampled_from(["RS256", "ES256", "none", "HS256", "r1", "e1"]),
                              st.lists(st.integers(), max_size=2)),
                    max_size=5).map(lambda d: _b64(json.dumps(d).encode())),
)


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(header=_segment, payload=_segment, signature=_segment)
async def test_any_malformed_token_is_refused_never_an_unexpected_error(jwks_path, header, payload, signature):
    v = await verifier(jwks_path, monotonic=lambda: 0.0)  # no refetches: unknown kids are refused at once
    with pytest.raises(TokenRejected):
        await v.verify(f"{header}.{payload}.{signature}")


async def test_broken_or_foreign_entries_of_a_key_set_are_skipped_and_the_good_keys_kept(tmp_path, keys):
    path = write_jwks(tmp_path / "jwks.json", {"kty": "RSA", "kid": "broken"}, {"kty": "EC", "crv": "P-999"},
                      {**jwk(keys["r1"], "listed-alg"), "alg": ["RS256"]}, {**jwk(keys["r1"], "hs"), "alg": "HS256"},
                      {"kty": "OKP", "crv": "Ed25519", "x": "AA"}, "not an object", jwk(keys["r1"], "r1"))
    v = await verifier(path)
    assert sorted(v.jwks.keys, key=str) == ["r1"]
    assert await v.verify(token(keys["r1"])) == "user-1"
