"""Inference extension `GatewayFollowingEPPRouting`: with the conformance test mode on, every request lands
on one of the pods named in `test-epp-endpoint-selection` (1, 2 and 3 pods; 100 POSTs, 10 at a time)."""

from __future__ import annotations

import asyncio

from tests.conformance.suite import (
    GAIE_APP,
    GAIE_BACKENDS,
    GAIE_BODY,
    GAIE_INFRA,
    SELECTION_HEADER,
    assert_route_accepted_and_resolved,
    backend_by_name,
    gaie_base,
)

GW = f"{GAIE_INFRA}/conformance-primary"
ROUTE = """
apiVersion: gateway.networking.k8s.io/v1
kind: HTTPRoute
metadata: {name: httproute-for-primary-gw, namespace: inference-conformance-app-backend}
spec:
  parentRefs: [{name: conformance-primary, namespace: inference-conformance-infra}]
  hostnames: [primary.example.com]
  rules:
  - matches: [{path: {type: PathPrefix, value: /primary-gateway-test}}]
    backendRefs: [{group: inference.networking.k8s.io, kind: InferencePool, name: primary-inference-pool}]
"""


async def test_requests_land_only_on_the_selected_pods(gaie):
    await gaie.start(gaie_base(), {"route.yaml": ROUTE}, conformance_test_mode=True)
    assert_route_accepted_and_resolved(gaie, f"{GAIE_APP}/httproute-for-primary-gw", GW)
    pool = backend_by_name(GAIE_BACKENDS, "primary-inference-pool")
    limit = asyncio.Semaphore(10)

    async def one(selection: str):
        async with limit:
            return await gaie.request(GW, "/primary-gateway-test", host="primary.example.com",
                                      method="POST", json=GAIE_BODY,
                                      headers={SELECTION_HEADER: selection})

    for count in (1, 2, 3):
        ips = pool.ips[:count]
        replies = await asyncio.gather(*(one(",".join(ips)) for _ in range(100)))
        assert all(r.status == 200 for r in replies), [r.text for r in replies if r.status != 200][:3]
        served = {r.pod for r in replies}
        assert served <= {pool.pod_name(ip) for ip in ips}, (count, served)
