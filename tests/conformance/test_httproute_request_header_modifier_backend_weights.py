"""Gateway API `HTTPRouteRequestHeaderModifierBackendWeights`: with two weighted backendRefs each setting a
`Backend` header, every request reaches the backend whose filter ran (100 requests).

Services infra-backend-v1/v2 are InferencePools of the same names (the router routes only to pools).
"""

from __future__ import annotations

from tests.conformance.suite import INFRA, assert_route_accepted_and_resolved, gateway_api_base

GW = f"{INFRA}/same-namespace"
ROUTE = """
apiVersion: gateway.networking.k8s.io/v1
kind: HTTPRoute
metadata: {name: request-header-modifier-backend-weights, namespace: gateway-conformance-infra}
spec:
  parentRefs: [{name: same-namespace}]
  rules:
  - backendRefs:
    - {group: inference.networking.k8s.io, kind: InferencePool, name: infra-backend-v1, weight: 10, filters: [{type: RequestHeaderModifier,
        requestHeaderModifier: {set: [{name: Backend, value: infra-backend-v1}]}}]}
    - {group: inference.networking.k8s.io, kind: InferencePool, name: infra-backend-v2, weight: 10, filters: [{type: RequestHeaderModifier,
        requestHeaderModifier: {set: [{name: Backend, value: infra-backend-v2}]}}]}
"""


async def test_each_backend_gets_only_its_own_filter(gateway_api):
    await gateway_api.start(gateway_api_base(), {"route.yaml": ROUTE})
    assert_route_accepted_and_resolved(gateway_api, f"{INFRA}/request-header-modifier-backend-weights", GW)
    seen = set()
    for _ in range(100):
        reply = await gateway_api.request(GW, "/")
        assert reply.status == 200
        (backend,) = reply.header("Backend")
        assert reply.pod.startswith(backend), (reply.pod, backend)
        seen.add(backend)
    assert seen == {"infra-backend-v1", "infra-backend-v2"}
