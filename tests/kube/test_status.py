"""The status writer and leader election against the API stand-in: merge, conflicts, no-op skips, Leases."""

from __future__ import annotations

import asyncio

from kthena_router.reconcile import reconcile
from kthena_router.resources import ReconcileOptions
from kthena_router.sources.kube import KubeApi, KubeSource
from kthena_router.sources.leader import LeaderElector, LeaseTimings
from kthena_router.sources.status import StatusWriter
from tests.kube.conftest import FAST
from tests.kube.helpers import eventually
from tests.kube.objects import gateway, namespace, pod, pool, route

OTHER = {"parentRef": {"group": "gateway.networking.k8s.io", "kind": "Gateway", "namespace": "default",
                       "name": "theirs"},
         "controllerName": "example.com/other",
         "conditions": [{"type": "Accepted", "status": "True", "reason": "Accepted", "message": "",
                         "observedGeneration": 1, "lastTransitionTime": "2020-01-01T00:00:00Z"}]}


async def statuses_for(api: KubeApi):
    src = KubeSource(api, timings=FAST)
    try:
        resources = await src.load()
    finally:
        await src.close()
    return reconcile(resources, ReconcileOptions(check_extension_refs=True)).statuses


def seed(server) -> None:
    server.apply(namespace("default"))
    server.apply(gateway("gw", 8080))
    r = route("r", "gw", "p")
    r["status"] = {"parents": [OTHER]}
    server.apply(r)
    server.apply(pool("p", 8000, {"app": "a"}))
    server.apply(pod("a-1", "10.0.0.1", {"app": "a"}))


async def test_writer_patches_status_keeps_other_controllers_and_skips_unchanged(apiserver, kube_api) -> None:
    seed(apiserver)
    statuses = await statuses_for(kube_api)
    writer = StatusWriter(kube_api, namespace="default", port=8080)
    await writer.start()
    try:
        writer.publish(statuses)
        await eventually(lambda: (apiserver.get("inference.networking.k8s.io/v1", "InferencePool", "p", "default")
                                  or {}).get("status") is not None)
        await eventually(lambda: writer.writes >= 3)
        got = apiserver.get("gateway.networking.k8s.io/v1", "HTTPRoute", "r", "default")["status"]["parents"]
        assert got[0] == OTHER
        ours = got[1]
        assert ours["controllerName"] == "volcano.sh/kthena-router"
        assert {c["type"]: c["status"] for c in ours["conditions"]} == {"Accepted": "True", "ResolvedRefs": "True"}
        assert all(c["lastTransitionTime"] for c in ours["conditions"])
        gw = apiserver.get("gateway.networking.k8s.io/v1", "Gateway", "gw", "default")["status"]
        assert {c["type"]: c["status"] for c in gw["conditions"]} == {"Accepted": "True", "Programmed": "True"}
        assert gw["listeners"][0]["attachedRoutes"] == 1
        created = apiserver.get("gateway.networking.k8s.io/v1", "GatewayClass", "kthena-router")
        assert created["spec"]["controllerName"] == "volcano.sh/kthena-router"
        assert apiserver.get("gateway.networking.k8s.io/v1", "Gateway", "default", "default") is not None
        patches = len(apiserver.requests_to("status", "PATCH"))
        writer.publish(statuses)
        await asyncio.sleep(0.2)
        assert len(apiserver.requests_to("status", "PATCH")) == patches, "an unchanged status is not rewritten"
    finally:
        await writer.close()


async def test_write_conflict_is_retried_on_a_fresh_read(apiserver, kube_api) -> None:
    seed(apiserver)
    statuses = await statuses_for(kube_api)
    apiserver.interfere("gateways", "default", "gw")
    writer = StatusWriter(kube_api, namespace="default", port=8080, create_defaults=False)
    await writer.start()
    try:
        writer.publish(statuses)
        await eventually(lambda: (apiserver.get("gateway.networking.k8s.io/v1", "Gateway", "gw", "default")
                                  or {}).get("status") is not None)
        gw = apiserver.get("gateway.networking.k8s.io/v1", "Gateway", "gw", "default")
        assert gw["metadata"]["annotations"]["other-writer"], "the other writer's change is kept"
        gw_patches = [p for _, p, _ in apiserver.requests_to("gateways/gw/status", "PATCH")]
        assert len(gw_patches) == 2, "one conflict, then one successful patch"
    finally:
        await writer.close()


async def test_lease_transition_times_are_kept_when_status_is_unchanged(apiserver, kube_api) -> None:
    seed(apiserver)
    statuses = await statuses_for(kube_api)
    first = StatusWriter(kube_api, namespace="default", port=8080, create_defaults=False)
    await first.start()
    first.publish(statuses)
    await eventually(lambda: first.writes >= 3)
    await first.close()
    before = apiserver.get("gateway.networking.k8s.io/v1", "Gateway", "gw", "default")
    second = StatusWriter(kube_api, namespace="default", port=8080, create_defaults=False)
    await second.start()
    second.publish(statuses)
    await asyncio.sleep(0.3)
    await second.close()
    assert second.writes == 0
    assert apiserver.get("gateway.networking.k8s.io/v1", "Gateway", "gw", "default") == before


async def test_only_the_lease_holder_writes_and_release_hands_over(apiserver, kube_api) -> None:
    seed(apiserver)
    statuses = await statuses_for(kube_api)
    timings = LeaseTimings(lease_duration=2, renew_deadline=1.5, retry_period=0.1)
    one = LeaderElector(kube_api, namespace="default", name="kthena-router", identity="one", timings=timings)
    two = LeaderElector(kube_api, namespace="default", name="kthena-router", identity="two", timings=timings)
    w1 = StatusWriter(kube_api, namespace="default", port=8080, elector=one, create_defaults=False)
    await w1.start()
    await eventually(lambda: one.is_leader)
    w2 = StatusWriter(kube_api, namespace="default", port=8080, elector=two, create_defaults=False)
    await w2.start()
    try:
        w1.publish(statuses)
        w2.publish(statuses)
        await eventually(lambda: w1.writes >= 3)
        await asyncio.sleep(0.3)
        assert not two.is_leader and w2.writes == 0
        lease = apiserver.get("coordination.k8s.io/v1", "Lease", "kthena-router", "default")
        assert lease["spec"]["holderIdentity"] == "one"
        await w1.close()  # releases the Lease
        await eventually(lambda: two.is_leader, timeout=3)
        lease = apiserver.get("coordination.k8s.io/v1", "Lease", "kthena-router", "default")
        assert lease["spec"]["holderIdentity"] == "two" and lease["spec"]["leaseTransitions"] == 1
    finally:
        await w2.close()


async def test_a_lease_holder_that_stops_renewing_is_replaced_after_the_lease_duration(apiserver, kube_api) -> None:
    timings = LeaseTimings(lease_duration=1, renew_deadline=0.8, retry_period=0.1)
    one = LeaderElector(kube_api, namespace="default", name="l", identity="one", timings=timings)
    two = LeaderElector(kube_api, namespace="default", name="l", identity="two", timings=timings)
    t1 = asyncio.create_task(one.run())
    await eventually(lambda: one.is_leader)
    t2 = asyncio.create_task(two.run())
    try:
        await asyncio.sleep(0.3)
        assert not two.is_leader
        t1.cancel()  # crashed: no release
        await asyncio.gather(t1, return_exceptions=True)
        await eventually(lambda: two.is_leader, timeout=4)
    finally:
        t2.cancel()
        await asyncio.gather(t2, return_exceptions=True)


async def test_pool_parent_entries_of_this_controller_are_removed_when_no_route_references_it(
        apiserver, kube_api) -> None:
    seed(apiserver)
    writer = StatusWriter(kube_api, namespace="default", port=8080, create_defaults=False)
    await writer.start()
    try:
        writer.publish(await statuses_for(kube_api))
        await eventually(lambda: len((apiserver.get("inference.networking.k8s.io/v1", "InferencePool", "p",
                                                    "default").get("status") or {}).get("parents", [])) == 1)
        apiserver.remove("gateway.networking.k8s.io/v1", "HTTPRoute", "r", "default")
        writer.publish(await statuses_for(kube_api))
        await eventually(lambda: apiserver.get("inference.networking.k8s.io/v1", "InferencePool", "p",
                                               "default")["status"]["parents"] == [])
    finally:
        await writer.close()
