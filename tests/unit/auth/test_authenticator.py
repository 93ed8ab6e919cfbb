"""The authenticator the proxy calls: which headers count, which method wins, and what a refusal says."""

from __future__ import annotations

import asyncio
import json

import pytest

from kthena_router import errors
from kthena_router.auth import Authenticator, Principal
from kthena_router.auth.apikeys import ApiKeyFile
from kthena_router.auth.jwks import JWKS
from kthena_router.auth.jwt import JWTVerifier
from kthena_router.settings import Settings
from tests.unit.auth.keys import AUDIENCE, ISSUER, jwk, rsa_key, token, write_jwks

KEY = rsa_key()


@pytest.fixture
async def auth(tmp_path):
    keys_path = tmp_path / "keys"
    keys_path.write_text("svc: sk-service\n")
    jwks = JWKS(str(write_jwks(tmp_path / "jwks.json", jwk(KEY, "r1"))))
    await jwks.load()
    return Authenticator(key_file=ApiKeyFile(str(keys_path)),
                         verifier=JWTVerifier(jwks, issuer=ISSUER, audiences=(AUDIENCE,)))


async def test_a_key_is_accepted_as_bearer_or_x_api_key_and_a_token_as_bearer(auth):
    assert await auth.authenticate("Bearer sk-service", None) == Principal("svc", "api_key")
    assert await auth.authenticate("bearer   sk-service  ", None) == Principal("svc", "api_key")
    assert await auth.authenticate(None, "sk-service") == Principal("svc", "api_key")
    assert await auth.authenticate("Bearer something-else", "sk-service") == Principal("svc", "api_key")
    assert await auth.authenticate(f"Bearer {token(KEY)}", None) == Principal("user-1", "jwt")


@pytest.mark.parametrize("authorization, api_key, message", [
    (None, None, "missing credentials"),
    ("Bearer ", None, "missing credentials"),
    ("Basic c2stc2VydmljZTo=", None, "missing credentials"),
    ("Bearer sk-wrong", None, "incorrect API key"),
    (None, "sk-wrong", "incorrect API key"),
    ("Bearer a.b.c", None, "invalid bearer token: the bearer token is not a JWT"),
], ids=["none", "empty-bearer", "basic", "wrong-key", "wrong-x-api-key", "garbage-jwt"])
async def test_refusals_are_401_with_a_bearer_challenge_and_never_echo_the_credential(
        auth, authorization, api_key, message):
    with pytest.raises(errors.Unauthorized, match=message) as refused:
        await auth.authenticate(authorization, api_key)
    err = refused.value
    assert err.status == 401 and err.reason == "invalid_api_key"
    assert err.headers.startswith(b"WWW-Authenticate: Bearer")
    assert "sk-" not in err.message and "c2st" not in err.message
    assert json.loads(err.body())["error"]["code"] == "invalid_api_key"


async def test_an_expired_token_is_refused_with_the_reason(auth):
    expired = token(KEY, exp=1, iat=0)
    with pytest.raises(errors.Unauthorized, match="expired") as refused:
        await auth.authenticate(f"Bearer {expired}", None)
    assert expired not in refused.value.message


def test_nothing_configured_means_no_authenticator():
    assert Authenticator.from_settings(Settings()) is None


def test_an_unreadable_key_file_or_bad_secret_reference_fails_at_construction(tmp_path):
    with pytest.raises(ValueError, match="cannot read API keys file"):
        Authenticator.from_settings(Settings(api_keys_file=str(tmp_path / "missing")))
    with pytest.raises(ValueError, match="NAMESPACE/NAME"):
        Authenticator.from_settings(Settings(api_keys_secret="a/b/c"))


async def test_a_key_set_that_cannot_be_loaded_fails_the_start(tmp_path, monkeypatch):
    monkeypatch.setattr("kthena_router.auth.authenticator.JWKS_START_ATTEMPTS", 1)
    auth = Authenticator.from_settings(Settings(jwks_uri=str(tmp_path / "absent.json")))
    with pytest.raises(ValueError, match="cannot load the JSON Web Key Set"):
        await auth.start()
    await auth.close()


async def test_start_owns_its_background_tasks_and_close_ends_them(tmp_path):
    (tmp_path / "keys").write_text("a: sk-a\n")
    write_jwks(tmp_path / "jwks.json", jwk(KEY, "r1"))
    auth = Authenticator.from_settings(Settings(api_keys_file=str(tmp_path / "keys"),
                                                jwks_uri=str(tmp_path / "jwks.json"), jwks_refresh_interval=0.05))
    await auth.start()
    names = {task.get_name() for task in asyncio.all_tasks()}
    assert {"api-keys-file-watch", "jwks-refresh"} <= names
    await asyncio.sleep(0.12)  # a refresh or two of an unchanged set
    assert (await auth.authenticate(f"Bearer {token(KEY)}", None)).name == "user-1"
    await auth.close()
    names = {task.get_name() for task in asyncio.all_tasks()}
    assert not names & {"api-keys-file-watch", "jwks-refresh"}


def test_the_command_line_refuses_an_unreadable_key_file_with_one_line(tmp_path, capsys):
    from kthena_router.cli import main

    assert main(["--config-dir", str(tmp_path), "--api-keys-file", str(tmp_path / "missing")]) == 2
    assert capsys.readouterr().err.strip() == (
        f"kthena-router: cannot read API keys file {tmp_path / 'missing'}: No such file or directory")
