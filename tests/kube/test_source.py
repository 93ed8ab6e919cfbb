"""KubeSource against the API stand-in: first sync, changes, pod selection and every watch fault."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator

import pytest

from kthena_router.api import ObjectRef
from kthena_router.resources import Resources
from kthena_router.sources.kube import KubeApi, KubeSource
from tests.kube.apiserver import FakeApiServer
from tests.kube.conftest import FAST
from tests.kube.helpers import eventually
from tests.kube.objects import gateway, namespace, pod, pool, route, service


class Recorder:
    def __init__(self) -> None:
        self.views: list[Resources] = []

    async def __call__(self, resources: Resources) -> None:
        self.views.append(resources)

    @property
    def last(self) -> Resources:
        return self.views[-1]


@pytest.fixture
async def source(kube_api: KubeApi) -> AsyncIterator[KubeSource]:
    src = KubeSource(kube_api, timings=FAST)
    yield src
    await src.close()


async def watching(src: KubeSource) -> tuple[Recorder, asyncio.Task[None]]:
    recorder = Recorder()
    return recorder, asyncio.create_task(src.watch(recorder))


def seed(server: FakeApiServer) -> None:
    server.apply(namespace("default"))
    server.apply(gateway("gw", 8080))
    server.apply(route("r", "gw", "p"))
    server.apply(pool("p", 8000, {"app": "a"}))
    server.apply(pod("a-1", "10.0.0.1", {"app": "a"}))
    server.apply(pod("other", "10.0.0.9", {"app": "unrelated"}))


async def test_first_load_returns_every_kind_and_only_the_pods_pools_select(apiserver, source) -> None:
    seed(apiserver)
    resources = await source.load()
    assert set(resources.gateways) == {ObjectRef("default", "gw")}
    assert set(resources.http_routes) == {ObjectRef("default", "r")}
    assert set(resources.pools) == {ObjectRef("default", "p")}
    assert set(resources.pods) == {ObjectRef("default", "a-1")}
    assert "default" in resources.namespaces
    pod_lists = [q for _, _, q in apiserver.requests_to("pods") if q.get("watch") is None]
    assert pod_lists and all(q.get("labelSelector") == "app=a" for q in pod_lists)


async def test_changes_arrive_as_new_views_and_a_new_pool_starts_its_pod_watch(apiserver, source) -> None:
    seed(apiserver)
    await source.load()
    recorder, task = await watching(source)
    try:
        apiserver.apply(pod("b-1", "10.0.0.2", {"app": "b"}))
        apiserver.apply(pool("q", 8000, {"app": "b"}))
        await eventually(lambda: bool(recorder.views) and ObjectRef("default", "b-1") in recorder.last.pods)
        apiserver.remove("v1", "Pod", "a-1", "default")
        await eventually(lambda: ObjectRef("default", "a-1") not in recorder.last.pods)
        apiserver.remove("inference.networking.k8s.io/v1", "InferencePool", "q", "default")
        await eventually(lambda: ObjectRef("default", "b-1") not in recorder.last.pods)
    finally:
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)


async def test_a_watch_dropped_mid_stream_resumes_from_the_last_resource_version(apiserver, source) -> None:
    seed(apiserver)
    await source.load()
    recorder, task = await watching(source)
    try:
        lists_before = len([q for _, _, q in apiserver.requests_to("gateways") if q.get("watch") is None])
        apiserver.drop_watches()
        apiserver.apply(gateway("gw2", 8081))
        await eventually(lambda: bool(recorder.views) and ObjectRef("default", "gw2") in recorder.last.gateways)
        watches = [q for _, _, q in apiserver.requests_to("gateways") if q.get("watch") == "1"]
        lists_after = len([q for _, _, q in apiserver.requests_to("gateways") if q.get("watch") is None])
        assert lists_after == lists_before, "a dropped stream is resumed, not relisted"
        assert len(watches) >= 2
        assert int(watches[-1]["resourceVersion"]) >= int(watches[0]["resourceVersion"]) > 0
        assert all(q["allowWatchBookmarks"] == "true" for q in watches)
    finally:
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)


async def test_410_gone_relists_and_replaces_state_without_losing_valid_objects(apiserver, source) -> None:
    seed(apiserver)
    await source.load()
    recorder, task = await watching(source)
    try:
        apiserver.compact()
        apiserver.drop_watches()
        apiserver.apply(route("r2", "gw", "p"))
        apiserver.remove("gateway.networking.k8s.io/v1", "HTTPRoute", "r", "default")
        await eventually(lambda: bool(recorder.views) and set(recorder.last.http_routes) == {ObjectRef("default", "r2")})
        assert all(ObjectRef("default", "gw") in v.gateways for v in recorder.views)
        lists = [q for _, _, q in apiserver.requests_to("httproutes") if q.get("watch") is None]
        assert len(lists) >= 2
    finally:
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)


async def test_api_server_restart_with_new_resource_versions_relists(apiserver, source) -> None:
    seed(apiserver)
    await source.load()
    recorder, task = await watching(source)
    try:
        await apiserver.restart()
        apiserver.apply(pod("a-2", "10.0.0.3", {"app": "a"}))
        await eventually(lambda: bool(recorder.views) and ObjectRef("default", "a-2") in recorder.last.pods)
        assert all(ObjectRef("default", "p") in v.pools for v in recorder.views)
    finally:
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)


async def test_a_missing_crd_is_reported_once_and_not_fatal(kube_api, caplog) -> None:
    server_resources = [r for r in FakeApiServer().resources.values() if r.plural != "httproutes"]
    server = FakeApiServer(resources=tuple(server_resources))
    await server.start()
    try:
        kube_api.client.configuration.host = server.url
        src = KubeSource(kube_api, timings=FAST)
        server.apply(pool("p", 8000, {"app": "a"}))
        with caplog.at_level(logging.INFO, logger="kthena_router.sources.kube"):
            resources = await asyncio.wait_for(src.load(), 5)
            await asyncio.sleep(0.5)  # several retries
        await src.close()
        assert set(resources.pools) == {ObjectRef("default", "p")} and not resources.http_routes
        reports = [r for r in caplog.records if "httproutes" in r.getMessage() and "CRD" in r.getMessage()]
        assert len(reports) == 1
        assert len(server.requests_to("httproutes")) > 2, "the missing kind is retried"
    finally:
        await server.stop()


async def test_load_waits_while_the_api_is_down_and_completes_once_it_is_up(apiserver, source) -> None:
    await apiserver.stop()
    loading = asyncio.create_task(source.load())
    await asyncio.sleep(0.5)
    assert not loading.done()
    seed(apiserver)
    await apiserver.start(apiserver.port)
    resources = await asyncio.wait_for(loading, 5)
    assert ObjectRef("default", "a-1") in resources.pods


async def test_a_rollout_of_100_pods_is_coalesced_into_few_views(apiserver, source) -> None:
    seed(apiserver)
    await source.load()
    recorder, task = await watching(source)
    try:
        for i in range(100):
            apiserver.apply(pod(f"roll-{i}", f"10.1.0.{i}", {"app": "a"}))
        await eventually(lambda: bool(recorder.views) and len(recorder.last.pods) == 101)
        assert len(recorder.views) <= 10
    finally:
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)


async def test_services_are_known_by_name_for_endpoint_picker_refs(apiserver, source) -> None:
    apiserver.apply(service("epp"))
    resources = await source.load()
    assert set(resources.services) == {ObjectRef("default", "epp")}


async def test_watch_namespace_restricts_namespaced_kinds_and_namespaces(apiserver, kube_api) -> None:
    apiserver.apply(namespace("team"))
    apiserver.apply(namespace("other"))
    apiserver.apply(gateway("gw", 8080, namespace="team"))
    apiserver.apply(gateway("gw", 8080, namespace="other"))
    src = KubeSource(kube_api, watch_namespace="team", timings=FAST)
    try:
        resources = await src.load()
    finally:
        await src.close()
    assert set(resources.gateways) == {ObjectRef("team", "gw")}
    assert set(resources.namespaces) == {"team"}
