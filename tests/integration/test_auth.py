"""Authentication through the running router, as the official `openai` client and plain HTTP meet it."""

from __future__ import annotations

import asyncio
import json
import logging
import time

import aiohttp
import jwt
import openai
import pytest
from cryptography.hazmat.primitives.asymmetric import rsa

from kthena_router.sim import SimConfig, start_simulator
from tests.integration.conftest import POD_IPS
from tests.integration.harness import pod, pool, route_to_pool, start_router, write_manifests

MODEL = "m"
ISSUER = "https://issuer.example"
GOOD_KEY = "sk-ci-0123456789"
ROUTE = route_to_pool("p")


def _jwk(key: rsa.RSAPrivateKey, kid: str) -> dict:
    return {**json.loads(jwt.algorithms.RSAAlgorithm.to_jwk(key.public_key())), "kid": kid, "use": "sig"}


def _token(key: rsa.RSAPrivateKey, kid: str = "k1", sub: str = "alice") -> str:
    now = int(time.time())
    return jwt.encode({"sub": sub, "iss": ISSUER, "aud": "kthena", "exp": now + 60, "iat": now}, key,
                      algorithm="RS256", headers={"kid": kid})


@pytest.fixture
async def served(tmp_path, pod_port):
    sim = await start_simulator(SimConfig(model=MODEL), POD_IPS[0], pod_port)
    manifests = tmp_path / "manifests"
    manifests.mkdir()
    write_manifests(manifests, "c.yaml", pool("p", pod_port, {"app": "sim"}), pod("s", POD_IPS[0], {"app": "sim"}),
                    ROUTE)
    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    (tmp_path / "jwks.json").write_text(json.dumps({"keys": [_jwk(key, "k1")]}))
    (tmp_path / "keys").write_text(f"ci: {GOOD_KEY}\n")
    router = await start_router(manifests, api_keys_file=str(tmp_path / "keys"),
                                jwks_uri=str(tmp_path / "jwks.json"), jwt_issuer=ISSUER,
                                jwt_audiences=("kthena",), expose_metrics_on_router_port=True,
                                access_log=True, access_log_format="json",
                                access_log_output=str(tmp_path / "access.log"))
    yield router, key, tmp_path
    await router.app.shutdown()
    await sim.close()


def client(router, api_key: str) -> openai.AsyncOpenAI:
    return openai.AsyncOpenAI(base_url=router.url + "/v1", api_key=api_key, max_retries=0)


async def test_a_good_key_or_token_is_served_and_a_bad_one_gets_401(served):
    router, key, _ = served
    done = await client(router, GOOD_KEY).completions.create(model=MODEL, prompt="hi", max_tokens=2)
    assert done.choices[0].text
    done = await client(router, _token(key)).completions.create(model=MODEL, prompt="hi", max_tokens=2)
    assert done.choices[0].text
    for bad in ("sk-wrong", _token(key)[:-4] + "AAAA"):
        with pytest.raises(openai.AuthenticationError) as refused:
            await client(router, bad).completions.create(model=MODEL, prompt="hi", max_tokens=2)
        assert refused.value.status_code == 401
        assert refused.value.body["code"] == "invalid_api_key"
        assert refused.value.body["type"] == "invalid_request_error"


async def test_streaming_chat_is_served_with_a_key(served):
    router, _, _ = served
    stream = await client(router, GOOD_KEY).chat.completions.create(
        model=MODEL, messages=[{"role": "user", "content": "hi"}], max_tokens=3, stream=True)
    chunks = [chunk async for chunk in stream]
    assert chunks


async def test_x_api_key_works_and_a_refusal_carries_the_bearer_challenge(served):
    router, _, _ = served
    body = {"model": MODEL, "prompt": "x", "max_tokens": 1}
    async with aiohttp.ClientSession() as session:
        async with session.post(router.url + "/v1/completions", json=body, headers={"x-api-key": GOOD_KEY}) as resp:
            assert resp.status == 200
        async with session.post(router.url + "/v1/completions", json=body) as resp:
            assert resp.status == 401 and resp.headers["WWW-Authenticate"].startswith("Bearer")
            assert (await resp.json())["error"]["code"] == "invalid_api_key"
        async with session.get(router.url + "/v1/models") as resp:  # every path of the listener, not only POSTs
            assert resp.status == 401


async def test_health_readiness_and_metrics_need_no_credentials(served):
    router, _, _ = served
    async with aiohttp.ClientSession() as session:
        for url in (router.url + "/healthz", router.url + "/readyz", router.url + "/metrics", router.metrics_url):
            async with session.get(url) as resp:
                assert resp.status == 200, url


async def test_a_key_added_to_the_file_works_and_a_removed_one_stops_within_seconds(served):
    router, _, directory = served
    (directory / "keys.new").write_text("ci2: sk-ci-new\n")
    (directory / "keys.new").replace(directory / "keys")

    async def status(api_key: str) -> int:
        async with aiohttp.ClientSession() as session, session.post(
                router.url + "/v1/completions", json={"model": MODEL, "prompt": "x", "max_tokens": 1},
                headers={"Authorization": f"Bearer {api_key}"}) as resp:
            return resp.status

    async with asyncio.timeout(5):
        while await status("sk-ci-new") != 200:
            await asyncio.sleep(0.1)
    assert await status(GOOD_KEY) == 401


async def test_a_token_signed_by_a_newly_published_key_is_accepted_at_once(served):
    router, key, directory = served
    rotated = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    (directory / "jwks.json").write_text(json.dumps({"keys": [_jwk(key, "k1"), _jwk(rotated, "k2")]}))
    done = await client(router, _token(rotated, kid="k2", sub="bob")).completions.create(
        model=MODEL, prompt="hi", max_tokens=2)
    assert done.choices[0].text


async def test_keys_and_tokens_never_reach_the_logs(served, caplog):
    router, key, directory = served
    caplog.set_level(logging.DEBUG, logger="kthena_router")
    token = _token(key)
    for credential in (GOOD_KEY, token, "sk-wrong-guess"):
        try:
            await client(router, credential).completions.create(model=MODEL, prompt="hi", max_tokens=2)
        except openai.AuthenticationError:
            pass
    await router.app.access_log.close()
    lines = [json.loads(line) for line in (directory / "access.log").read_text().splitlines()]
    assert [line["status_code"] for line in lines] == [200, 200, 401]
    assert lines[2]["error"]["type"] == "invalid_api_key"
    logged = (directory / "access.log").read_text() + caplog.text
    for credential in (GOOD_KEY, token, "sk-wrong-guess"):
        assert credential not in logged
