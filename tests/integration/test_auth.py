"""Authentication through the running router, as the official `openai` client meets it."""

from __future__ import annotations

import json
import time

import jwt
import openai
import pytest
from cryptography.hazmat.primitives.asymmetric import rsa

from kthena_router.sim import SimConfig, start_simulator
from tests.integration.conftest import POD_IPS
from tests.integration.harness import pod, pool, start_router, write_manifests

MODEL = "m"
ROUTE = """apiVersion: gateway.networking.k8s.io/v1
kind: HTTPRoute
metadata: {name: r, namespace: default}
spec:
  parentRefs: [{name: default}]
  rules:
  - backendRefs: [{group: inference.networking.k8s.io, kind: InferencePool, name: p}]
"""


@pytest.fixture
async def served(tmp_path, pod_port):
    sim = await start_simulator(SimConfig(model=MODEL), POD_IPS[0], pod_port)
    manifests = tmp_path / "manifests"
    manifests.mkdir()
    write_manifests(manifests, "c.yaml", pool("p", pod_port, {"app": "sim"}), pod("s", POD_IPS[0], {"app": "sim"}),
                    ROUTE)
    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    jwk = {**json.loads(jwt.algorithms.RSAAlgorithm.to_jwk(key.public_key())), "kid": "k1", "use": "sig"}
    (tmp_path / "jwks.json").write_text(json.dumps({"keys": [jwk]}))
    (tmp_path / "keys").write_text("ci: sk-ci-0123456789\n")
    router = await start_router(manifests, api_keys_file=str(tmp_path / "keys"),
                                jwks_uri=str(tmp_path / "jwks.json"), jwt_issuer="https://issuer.example",
                                jwt_audiences=("kthena",))
    yield router, key
    await router.app.shutdown()
    await sim.close()


def client(router, api_key: str) -> openai.AsyncOpenAI:
    return openai.AsyncOpenAI(base_url=router.url + "/v1", api_key=api_key, max_retries=0)


async def test_a_good_key_or_token_is_served_and_a_bad_one_gets_401(served):
    router, key = served
    done = await client(router, "sk-ci-0123456789").completions.create(model=MODEL, prompt="hi", max_tokens=2)
    assert done.choices[0].text
    now = int(time.time())
    token = jwt.encode({"sub": "alice", "iss": "https://issuer.example", "aud": "kthena", "exp": now + 60,
                        "iat": now}, key, algorithm="RS256", headers={"kid": "k1"})
    done = await client(router, token).completions.create(model=MODEL, prompt="hi", max_tokens=2)
    assert done.choices[0].text
    for bad in ("sk-wrong", token[:-4] + "AAAA"):
        with pytest.raises(openai.AuthenticationError) as refused:
            await client(router, bad).completions.create(model=MODEL, prompt="hi", max_tokens=2)
        assert refused.value.status_code == 401
        assert refused.value.body["code"] == "invalid_api_key"


async def test_health_and_readiness_need_no_credentials(served):
    import aiohttp

    router, _ = served
    async with aiohttp.ClientSession() as session:
        for path in ("/healthz", "/readyz"):
            async with session.get(router.url + path) as resp:
                assert resp.status == 200
        async with session.post(router.url + "/v1/completions", json={"model": MODEL, "prompt": "x"}) as resp:
            assert resp.status == 401 and resp.headers["WWW-Authenticate"].startswith("Bearer")
