"""Gateway API `HTTPRouteSimpleSameNamespace`: a route attaches to a Gateway of its namespace and serves `/`.

Service infra-backend-v1 is an InferencePool of that name (the router routes only to pools).
"""

from __future__ import annotations

from tests.conformance.suite import INFRA, assert_route_accepted_and_resolved, expect, gateway_api_base

GW = f"{INFRA}/same-namespace"
ROUTE = """
apiVersion: gateway.networking.k8s.io/v1
kind: HTTPRoute
metadata: {name: gateway-conformance-infra-test, namespace: gateway-conformance-infra}
spec:
  parentRefs: [{name: same-namespace}]
  rules:
  - backendRefs: [{group: inference.networking.k8s.io, kind: InferencePool, name: infra-backend-v1}]
"""


async def test_route_in_the_gateways_namespace_is_accepted_and_serves_traffic(gateway_api):
    await gateway_api.start(gateway_api_base(), {"route.yaml": ROUTE})
    assert_route_accepted_and_resolved(gateway_api, f"{INFRA}/gateway-conformance-infra-test", GW)
    await expect(gateway_api, GW, [({"path": "/"}, "infra-backend-v1")])
