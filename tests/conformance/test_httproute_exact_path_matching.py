"""Gateway API `HTTPRouteExactPathMatching`: Exact paths match only themselves, case-sensitively.

Services infra-backend-v1/v2 are InferencePools of the same names (the router routes only to pools).
"""

from __future__ import annotations

from tests.conformance.suite import INFRA, assert_route_accepted_and_resolved, expect, gateway_api_base

GW = f"{INFRA}/same-namespace"
ROUTE = """
apiVersion: gateway.networking.k8s.io/v1
kind: HTTPRoute
metadata: {name: exact-matching, namespace: gateway-conformance-infra}
spec:
  parentRefs: [{name: same-namespace}]
  rules:
  - matches: [{path: {type: Exact, value: /one}}]
    backendRefs: [{group: inference.networking.k8s.io, kind: InferencePool, name: infra-backend-v1}]
  - matches: [{path: {type: Exact, value: /two}}]
    backendRefs: [{group: inference.networking.k8s.io, kind: InferencePool, name: infra-backend-v2}]
"""


async def test_exact_paths_match_only_themselves(gateway_api):
    await gateway_api.start(gateway_api_base(), {"route.yaml": ROUTE})
    assert_route_accepted_and_resolved(gateway_api, f"{INFRA}/exact-matching", GW)
    await expect(gateway_api, GW, [
        ({"path": "/one"}, "infra-backend-v1"),
        ({"path": "/two"}, "infra-backend-v2"),
        ({"path": "/"}, 404),
        ({"path": "/one/example"}, 404),
        ({"path": "/two/"}, 404),
        ({"path": "/Two"}, 404),
    ])
