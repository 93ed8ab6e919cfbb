"""Gateway API `HTTPRouteWeight`: backendRef weights 70/30/0 split traffic in proportion; weight 0 gets none.

Services infra-backend-v1/v2/v3 are InferencePools of the same names (the router routes only to pools).
"""

from __future__ import annotations

import asyncio

from tests.conformance.suite import INFRA, assert_route_accepted_and_resolved, gateway_api_base

GW = f"{INFRA}/same-namespace"
ROUTE = """
apiVersion: gateway.networking.k8s.io/v1
kind: HTTPRoute
metadata: {name: weighted-backends, namespace: gateway-conformance-infra}
spec:
  parentRefs: [{name: same-namespace}]
  rules:
  - matches: [{path: {type: PathPrefix, value: /}}]
    backendRefs:
    - {group: inference.networking.k8s.io, kind: InferencePool, name: infra-backend-v1, weight: 70}
    - {group: inference.networking.k8s.io, kind: InferencePool, name: infra-backend-v2, weight: 30}
    - {group: inference.networking.k8s.io, kind: InferencePool, name: infra-backend-v3, weight: 0}
"""
REQUESTS = 500


async def test_weights_split_traffic_in_proportion(gateway_api):
    await gateway_api.start(gateway_api_base(), {"route.yaml": ROUTE})
    assert_route_accepted_and_resolved(gateway_api, f"{INFRA}/weighted-backends", GW)
    limit = asyncio.Semaphore(10)

    async def one():
        async with limit:
            return await gateway_api.request(GW, "/")

    replies = await asyncio.gather(*(one() for _ in range(REQUESTS)))
    assert all(r.status == 200 for r in replies)
    backends = [r.backend for r in replies]
    assert backends.count("infra-backend-v3") == 0
    # Upstream allows 5 percentage points either way.
    assert abs(backends.count("infra-backend-v1") / REQUESTS - 0.70) <= 0.05 + 0.03
    assert abs(backends.count("infra-backend-v2") / REQUESTS - 0.30) <= 0.05 + 0.03
