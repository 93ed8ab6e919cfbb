"""API keys and JWTs: every rule, with real keys signed by `cryptography` and a key set on disk."""

from __future__ import annotations

import json
import os
import time

import jwt
import pytest
from cryptography.hazmat.primitives.asymmetric import ec, rsa

from kthena_router import errors
from kthena_router.auth import Authenticator
from kthena_router.auth.apikeys import ApiKeyFile, parse_keys
from kthena_router.auth.jwt import JWKS, JWTVerifier


def test_key_files_name_their_keys_and_skip_comments():
    keys = parse_keys("# team keys\nalice: sk-alice-1\nsk-anonymous  # inline comment\n\nbob:sk-bob\n")
    assert sorted(keys.values()) == ["alice", "bob", "key-3"]


def test_a_changed_key_file_is_reread_and_an_unreadable_one_keeps_the_old_keys(tmp_path):
    path = tmp_path / "keys"
    path.write_text("alice: sk-1\n")
    now = [0.0]
    keys = ApiKeyFile(str(path), clock=lambda: now[0])
    assert keys.lookup("sk-1") == "alice" and keys.lookup("sk-2") is None
    replacement = tmp_path / "keys.new"
    replacement.write_text("bob: sk-2\n")
    os.replace(replacement, path)  # how a mounted Secret changes: a new file under the same name
    assert keys.lookup("sk-2") is None  # checked at most once a second
    now[0] = 1.5
    assert keys.lookup("sk-2") == "bob" and keys.lookup("sk-1") is None
    path.unlink()
    now[0] = 3.0
    assert keys.lookup("sk-2") == "bob"


def test_a_missing_key_file_is_an_error_at_start(tmp_path):
    with pytest.raises(ValueError, match="cannot read API keys file"):
        ApiKeyFile(str(tmp_path / "nope"))


def _jwk(private, kid: str) -> dict:
    public = private.public_key()
    if isinstance(private, rsa.RSAPrivateKey):
        data = json.loads(jwt.algorithms.RSAAlgorithm.to_jwk(public))
    else:
        data = json.loads(jwt.algorithms.ECAlgorithm.to_jwk(public))
    return {**data, "kid": kid, "use": "sig"}


@pytest.fixture
def keyset(tmp_path):
    rsa_key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    ec_key = ec.generate_private_key(ec.SECP256R1())
    path = tmp_path / "jwks.json"
    path.write_text(json.dumps({"keys": [_jwk(rsa_key, "r1"), _jwk(ec_key, "e1")]}))
    return path, rsa_key, ec_key


def token(key, kid="r1", alg="RS256", **claims) -> str:
    now = int(time.time())
    body = {"sub": "user-1", "iss": "https://issuer.example", "aud": "kthena", "exp": now + 600, "iat": now,
            **claims}
    return jwt.encode({k: v for k, v in body.items() if v is not None}, key, algorithm=alg, headers={"kid": kid})


async def verifier(path, **kwargs) -> JWTVerifier:
    jwks = JWKS(str(path))
    await jwks.load()
    return JWTVerifier(jwks, issuer=kwargs.get("issuer", "https://issuer.example"),
                       audiences=kwargs.get("audiences", ("kthena", "other")))


async def test_valid_rsa_and_ec_tokens_name_their_subject(keyset):
    path, rsa_key, ec_key = keyset
    v = await verifier(path)
    assert await v.verify(token(rsa_key)) == "user-1"
    assert await v.verify(token(ec_key, kid="e1", alg="ES256", sub="user-2")) == "user-2"


@pytest.mark.parametrize("claims, reason", [
    ({"exp": int(time.time()) - 3600}, "expired"),
    ({"exp": None}, "exp"),
    ({"nbf": int(time.time()) + 3600}, "not valid yet"),
    ({"iss": "https://elsewhere"}, "another issuer"),
    ({"aud": "someone-else"}, "audience"),
])
async def test_claims_are_enforced(keyset, claims, reason):
    path, rsa_key, _ = keyset
    v = await verifier(path)
    with pytest.raises(Exception, match=reason):
        await v.verify(token(rsa_key, **claims))


async def test_bad_signatures_none_and_hmac_are_refused(keyset):
    path, rsa_key, _ = keyset
    v = await verifier(path)
    other = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    with pytest.raises(Exception, match="signature"):
        await v.verify(token(other))
    unsigned = jwt.encode({"sub": "x", "exp": int(time.time()) + 60}, None, algorithm="none",
                          headers={"kid": "r1"})
    with pytest.raises(Exception, match="not accepted"):
        await v.verify(unsigned)
    hmac = jwt.encode({"sub": "x", "exp": int(time.time()) + 60}, "a-shared-secret-of-at-least-32-bytes!", algorithm="HS256",
                      headers={"kid": "r1"})
    with pytest.raises(Exception, match="not accepted"):
        await v.verify(hmac)


async def test_a_rotated_key_set_is_fetched_when_a_token_names_a_new_key(keyset):
    path, rsa_key, ec_key = keyset
    v = await verifier(path)
    rotated = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    path.write_text(json.dumps({"keys": [_jwk(rsa_key, "r1"), _jwk(rotated, "r2")]}))
    assert await v.verify(token(rotated, kid="r2")) == "user-1"
    with pytest.raises(Exception, match="no key 'r3'"):
        await v.verify(token(rotated, kid="r3"))


async def test_the_authenticator_accepts_keys_or_tokens_and_refuses_with_401(keyset, tmp_path):
    path, rsa_key, _ = keyset
    keys_path = tmp_path / "keys"
    keys_path.write_text("svc: sk-service\n")
    auth = Authenticator(keys=ApiKeyFile(str(keys_path)), verifier=await verifier(path))
    assert await auth.authenticate("Bearer sk-service", None) == "svc"
    assert await auth.authenticate(None, "sk-service") == "svc"
    assert await auth.authenticate(f"Bearer {token(rsa_key)}", None) == "user-1"
    for authorization, api_key in ((None, None), ("Bearer sk-wrong", None), ("Basic abc", None),
                                   (f"Bearer {token(rsa_key, exp=1)}", None)):
        with pytest.raises(errors.Unauthorized) as refused:
            await auth.authenticate(authorization, api_key)
        assert refused.value.status == 401 and b"WWW-Authenticate: Bearer" in refused.value.headers
        assert "sk-" not in refused.value.message
