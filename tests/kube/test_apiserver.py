"""The API stand-in answers like the real API server: each recorded exchange in `recordings/` is replayed
against it and the answers must match in status, Content-Type and shape (the same keys at every level, the
same JSON types, and equal values where the protocol fixes them: kind, apiVersion, reason, code, type)."""

from __future__ import annotations

import copy
import json
from pathlib import Path
from typing import Any

import aiohttp
import pytest

from tests.kube.apiserver import FakeApiServer

RECORDINGS = Path(__file__).parent / "recordings"
EXACT = frozenset({"kind", "apiVersion", "reason", "code", "type", "status", "holderIdentity", "name", "group",
                   "namespace"})
SERVER_SET = ("uid", "resourceVersion", "creationTimestamp", "generation")


def load(name: str) -> dict[str, Any]:
    return json.loads((RECORDINGS / f"{name}.json").read_text())


def assert_same_shape(recorded: Any, actual: Any, where: str = "") -> None:
    if isinstance(recorded, dict):
        assert isinstance(actual, dict), f"{where}: expected an object, got {actual!r}"
        assert set(recorded) == set(actual), f"{where}: keys {sorted(recorded)} != {sorted(actual)}"
        for key, value in recorded.items():
            if key in EXACT and not isinstance(value, (dict, list)):
                assert actual[key] == value, f"{where}.{key}: {actual[key]!r} != {value!r}"
            else:
                assert_same_shape(value, actual[key], f"{where}.{key}")
    elif isinstance(recorded, list):
        assert isinstance(actual, list) and len(actual) == len(recorded), f"{where}: {actual!r}"
        for i, (r, a) in enumerate(zip(recorded, actual, strict=True)):
            assert_same_shape(r, a, f"{where}[{i}]")
    else:
        assert type(actual) is type(recorded), f"{where}: {actual!r} is not like {recorded!r}"


def fixture_object(recorded: dict[str, Any]) -> dict[str, Any]:
    """A recorded object as a client would create it (without the fields the server sets)."""
    obj = copy.deepcopy(recorded)
    for key in SERVER_SET:
        obj["metadata"].pop(key, None)
    return obj


async def exchange(server: FakeApiServer, request: dict[str, Any]) -> aiohttp.ClientResponse:
    session = aiohttp.ClientSession()
    headers = {"Content-Type": request.get("contentType", "application/json")}
    data = json.dumps(request["body"]).encode() if "body" in request else None
    response = await session.request(request["method"], server.url + request["path"], params=request["query"],
                                     data=data, headers=headers)
    response._test_session = session  # type: ignore[attr-defined]  # closed with the response below
    return response


async def finish(response: aiohttp.ClientResponse) -> None:
    response.close()
    await response._test_session.close()  # type: ignore[attr-defined]


async def check(server: FakeApiServer, name: str) -> None:
    recording = load(name)
    response = await exchange(server, recording["request"])
    try:
        expected = recording["response"]
        assert response.status == expected["status"]
        assert response.content_type == expected["contentType"]
        if "body" in expected:
            assert_same_shape(expected["body"], await response.json(), name)
        elif "text" in expected:
            assert await response.text() == expected["text"]
        else:
            for i, line in enumerate(expected["lines"]):
                got = json.loads(await response.content.readline())
                assert_same_shape(line, got, f"{name} line {i}")
    finally:
        await finish(response)


def pod_of(name: str) -> dict[str, Any]:
    body = load(name)["response"]
    item = body["body"]["items"][0] if "body" in body else body["lines"][0]["object"]
    return {"apiVersion": "v1", "kind": "Pod", **fixture_object(item)}


async def test_a_built_in_list_has_items_without_kind(apiserver) -> None:
    apiserver.apply(pod_of("list-pods"))
    await check(apiserver, "list-pods")


async def test_a_custom_resource_list_has_continue_and_items_with_kind(apiserver) -> None:
    apiserver.apply(fixture_object(load("list-gateways")["response"]["body"]["items"][0]))
    await check(apiserver, "list-gateways")


@pytest.mark.parametrize("name", ["get-not-found", "unknown-group", "watch-expired"])
async def test_errors_are_the_real_status_objects(apiserver, name) -> None:
    for _ in range(10):
        apiserver.apply({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": f"n{_}"}})
    apiserver.compact()
    await check(apiserver, name)


async def test_create_of_an_existing_object_is_already_exists(apiserver) -> None:
    apiserver.apply(load("create-already-exists")["request"]["body"])
    await check(apiserver, "create-already-exists")


async def test_a_status_patch_with_a_stale_resource_version_is_a_conflict(apiserver) -> None:
    apiserver.apply(fixture_object(load("list-gateways")["response"]["body"]["items"][0]))
    apiserver.apply({**apiserver.get("gateway.networking.k8s.io/v1", "Gateway", "gw", "default"),
                     "spec": {"gatewayClassName": "other", "listeners": []}})
    await check(apiserver, "patch-status-conflict")


async def test_a_watch_streams_events_then_bookmarks(apiserver) -> None:
    recording = load("watch-events")
    listing = await exchange(apiserver, {"method": "GET", "path": "/api/v1/namespaces/default/pods", "query": {}})
    rv = (await listing.json())["metadata"]["resourceVersion"]
    await finish(listing)
    recording["request"]["query"]["resourceVersion"] = rv
    apiserver.apply(pod_of("watch-events"))
    response = await exchange(apiserver, recording["request"])
    try:
        assert response.status == 200 and response.content_type == "application/json"
        for i, line in enumerate(recording["response"]["lines"]):
            assert_same_shape(line, json.loads(await response.content.readline()), f"watch line {i}")
    finally:
        await finish(response)


async def test_a_lease_reads_back_as_written(apiserver) -> None:
    apiserver.apply(fixture_object(load("lease")["response"]["body"]))
    await check(apiserver, "lease")


async def test_status_subresource_changes_only_status_and_main_resource_never_status(apiserver) -> None:
    gw = apiserver.apply(fixture_object(load("list-gateways")["response"]["body"]["items"][0]))
    path = "/apis/gateway.networking.k8s.io/v1/namespaces/default/gateways/gw"
    patch = {"metadata": {"resourceVersion": gw["metadata"]["resourceVersion"]},
             "status": {"conditions": [{"type": "Accepted"}]}, "spec": {"gatewayClassName": "changed"}}
    response = await exchange(apiserver, {"method": "PATCH", "path": path + "/status", "query": {},
                                          "contentType": "application/merge-patch+json", "body": patch})
    await finish(response)
    stored = apiserver.get("gateway.networking.k8s.io/v1", "Gateway", "gw", "default")
    assert stored["status"] == {"conditions": [{"type": "Accepted"}]}
    assert stored["spec"]["gatewayClassName"] == "kthena-router" and stored["metadata"]["generation"] == 1
    response = await exchange(apiserver, {"method": "PUT", "path": path, "query": {},
                                          "body": {**stored, "status": {}, "spec": {**stored["spec"],
                                                                                    "gatewayClassName": "x"}}})
    await finish(response)
    stored = apiserver.get("gateway.networking.k8s.io/v1", "Gateway", "gw", "default")
    assert stored["status"] == {"conditions": [{"type": "Accepted"}]}
    assert stored["spec"]["gatewayClassName"] == "x" and stored["metadata"]["generation"] == 2


async def test_an_object_leaving_a_label_selector_is_sent_as_deleted(apiserver) -> None:
    apiserver.apply(pod_of("list-pods"))
    listing = await exchange(apiserver, {"method": "GET", "path": "/api/v1/pods", "query": {}})
    rv = (await listing.json())["metadata"]["resourceVersion"]
    await finish(listing)
    moved = apiserver.get("v1", "Pod", "llm-0", "default")
    moved["metadata"]["labels"] = {"app": "elsewhere"}
    apiserver.apply(moved)
    response = await exchange(apiserver, {"method": "GET", "path": "/api/v1/pods",
                                          "query": {"watch": "1", "resourceVersion": rv, "labelSelector": "app=llm"}})
    try:
        event = json.loads(await response.content.readline())
        assert event["type"] == "DELETED" and event["object"]["metadata"]["name"] == "llm-0"
    finally:
        await finish(response)
