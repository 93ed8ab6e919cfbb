"""API keys from a Kubernetes Secret, watched through the real client against the API stand-in."""

from __future__ import annotations

import asyncio
import base64
from pathlib import Path

import pytest
from aiohttp import web

from kthena_router.auth import Authenticator
from kthena_router.auth.apikeys import digest
from kthena_router.auth.secret import ApiKeySecret, parse_secret_ref
from kthena_router.settings import Settings
from kthena_router.sources.kube import KubeApi, api_client
from kthena_router.sources.rbac import API_KEYS_SECRET_RULES, CLUSTER_RULES, NAMESPACE_RULES
from tests.integration.harness import free_port, start_app
from tests.kube.apiserver import RESOURCES, ApiResource, FakeApiServer
from tests.kube.conftest import FAST, write_kubeconfig
from tests.kube.helpers import eventually
from tests.kube.test_end_to_end import verb_and_resource

SECRETS = ApiResource("", "v1", "secrets", "Secret", True, False)


def secret(name: str = "router-keys", namespace: str = "kthena-system", **entries: str) -> dict:
    return {"apiVersion": "v1", "kind": "Secret", "metadata": {"name": name, "namespace": namespace},
            "type": "Opaque", "data": {k: base64.b64encode(v.encode()).decode() for k, v in entries.items()}}


@pytest.fixture
async def apiserver():
    server = FakeApiServer(resources=(*RESOURCES, SECRETS), bookmark_interval=0.2)
    await server.start()
    yield server
    await server.stop()


@pytest.fixture
async def api(apiserver: FakeApiServer, tmp_path: Path):
    client = await api_client(str(write_kubeconfig(apiserver, tmp_path)))
    yield KubeApi(client, request_timeout=5)
    await client.close()


@pytest.fixture
async def watched(api):
    keys = ApiKeySecret(api, "kthena-system", "router-keys", timings=FAST)
    task = asyncio.create_task(keys.run())
    yield keys
    task.cancel()
    await asyncio.gather(task, return_exceptions=True)


def test_secret_references_name_a_namespace_or_default_to_the_routers():
    assert parse_secret_ref("team-a/keys", "kthena-system") == ("team-a", "keys")
    assert parse_secret_ref("keys", "kthena-system") == ("kthena-system", "keys")
    for bad in ("", "a/", "/b", "a/b/c"):
        with pytest.raises(ValueError, match="NAMESPACE/NAME"):
            parse_secret_ref(bad, "kthena-system")


async def test_each_entry_of_the_secret_is_a_key_named_by_its_entry(apiserver, watched):
    apiserver.apply(secret(alice="sk-alice", bob="sk-bob\n"))
    await eventually(lambda: len(watched.keys) == 2)
    assert watched.lookup(digest("sk-alice")) == "alice"
    assert watched.lookup(digest("sk-bob")) == "bob"  # the trailing newline of `echo ... | base64` is dropped


async def test_keys_follow_the_secret_as_it_is_added_updated_and_deleted(apiserver, watched):
    await asyncio.wait_for(watched.listed.wait(), 5)
    assert watched.keys == {}  # absent: no keys, no error
    apiserver.apply(secret(alice="sk-alice"))
    await eventually(lambda: watched.lookup(digest("sk-alice")) == "alice")
    apiserver.apply(secret(alice="sk-alice-rotated", carol="sk-carol"))
    await eventually(lambda: watched.lookup(digest("sk-carol")) == "carol")
    assert watched.lookup(digest("sk-alice")) is None
    assert watched.lookup(digest("sk-alice-rotated")) == "alice"
    apiserver.remove("v1", "Secret", "router-keys", "kthena-system")
    await eventually(lambda: watched.keys == {})


async def test_other_secrets_are_neither_read_nor_confused_with_it(apiserver, watched):
    apiserver.apply(secret(name="unrelated", alice="sk-other"))
    apiserver.apply(secret(namespace="elsewhere", alice="sk-elsewhere"))
    apiserver.apply(secret(alice="sk-alice"))
    await eventually(lambda: watched.lookup(digest("sk-alice")) == "alice")
    assert watched.lookup(digest("sk-other")) is None and watched.lookup(digest("sk-elsewhere")) is None
    for _method, path, query in apiserver.requests_to("secrets"):
        assert path == "/api/v1/namespaces/kthena-system/secrets"
        assert query["fieldSelector"] == "metadata.name=router-keys"


async def test_a_watch_that_is_cut_or_expired_catches_up(apiserver, watched):
    apiserver.apply(secret(alice="sk-alice"))
    await eventually(lambda: watched.lookup(digest("sk-alice")) == "alice")
    apiserver.drop_watches()
    apiserver.apply(secret(bob="sk-bob"))
    await eventually(lambda: watched.lookup(digest("sk-bob")) == "bob")
    apiserver.compact()
    apiserver.drop_watches()
    apiserver.apply(secret(carol="sk-carol"))
    await eventually(lambda: watched.lookup(digest("sk-carol")) == "carol")
    assert watched.lookup(digest("sk-alice")) is None


async def test_entries_that_are_not_base64_text_are_skipped(apiserver, watched):
    broken = secret(alice="sk-alice")
    broken["data"]["mallory"] = "!!not base64!!"
    apiserver.apply(broken)
    await eventually(lambda: watched.lookup(digest("sk-alice")) == "alice")
    assert list(watched.keys.values()) == ["alice"]


async def test_the_secret_is_read_only_with_the_opt_in_rule_and_never_with_the_default_ones(apiserver, watched):
    apiserver.apply(secret(alice="sk-alice"))
    await eventually(lambda: watched.lookup(digest("sk-alice")) == "alice")
    await eventually(lambda: any(query.get("watch") for _, _, query in apiserver.requests_to("secrets")))
    used = {verb_and_resource(*request) for request in apiserver.requests_to("secrets")}
    assert {verb for verb, _, _ in used} == {"list", "watch"}
    granted = {(verb, rule.api_group, resource) for rule in API_KEYS_SECRET_RULES
               for resource in rule.resources for verb in rule.verbs}
    assert used <= granted
    default = {resource for rule in (*CLUSTER_RULES, *NAMESPACE_RULES) for resource in rule.resources}
    assert "secrets" not in default


async def test_the_authenticator_reads_the_secret_named_in_the_settings(apiserver, tmp_path):
    apiserver.apply(secret(alice="sk-alice"))
    settings = Settings(api_keys_secret="kthena-system/router-keys",
                        kubeconfig=str(write_kubeconfig(apiserver, tmp_path)))
    auth = Authenticator.from_settings(settings)
    assert auth is not None
    await auth.start()
    try:
        principal = await auth.authenticate("Bearer sk-alice", None)
        assert (principal.name, principal.method) == ("alice", "api_key")
        apiserver.apply(secret(alice="sk-alice", bob="sk-bob"))
        await eventually(lambda: auth.key_secret.lookup(digest("sk-bob")) == "bob")
        assert (await auth.authenticate(None, "sk-bob")).name == "bob"
    finally:
        await auth.close()


async def test_a_forbidden_secret_stops_the_start_with_a_clear_error(tmp_path):
    async def forbidden(request):
        return web.json_response({"kind": "Status", "apiVersion": "v1", "status": "Failure", "reason": "Forbidden",
                                  "message": 'secrets "router-keys" is forbidden', "code": 403}, status=403)

    app = web.Application()
    app.router.add_route("*", "/{tail:.*}", forbidden)
    stand_in = FakeApiServer()
    stand_in.port = free_port()
    runner = await start_app(app, "127.0.0.1", stand_in.port)
    auth = Authenticator.from_settings(Settings(api_keys_secret="kthena-system/router-keys",
                                                kubeconfig=str(write_kubeconfig(stand_in, tmp_path))))
    try:
        with pytest.raises(ValueError, match="needs list and watch"):
            await auth.start()
    finally:
        await auth.close()
        await runner.cleanup()
