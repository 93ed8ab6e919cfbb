"""Gateway API `HTTPRoutePathMatchOrder`: Exact beats any prefix, a longer prefix beats a shorter one.

Services infra-backend-v1/v2/v3 are InferencePools of the same names (the router routes only to pools).
"""

from __future__ import annotations

from tests.conformance.suite import INFRA, assert_route_accepted_and_resolved, expect, gateway_api_base

GW = f"{INFRA}/same-namespace"
ROUTE = """
apiVersion: gateway.networking.k8s.io/v1
kind: HTTPRoute
metadata: {name: path-matching-order, namespace: gateway-conformance-infra}
spec:
  parentRefs: [{name: same-namespace}]
  rules:
  - matches: [{path: {type: Exact, value: /match}}]
    backendRefs: [{group: inference.networking.k8s.io, kind: InferencePool, name: infra-backend-v1}]
  - matches: [{path: {type: Exact, value: /match/exact}}]
    backendRefs: [{group: inference.networking.k8s.io, kind: InferencePool, name: infra-backend-v2}]
  - matches: [{path: {type: Exact, value: /match/exact/one}}]
    backendRefs: [{group: inference.networking.k8s.io, kind: InferencePool, name: infra-backend-v3}]
  - matches: [{path: {type: PathPrefix, value: /match/}}]
    backendRefs: [{group: inference.networking.k8s.io, kind: InferencePool, name: infra-backend-v3}]
  - matches: [{path: {type: PathPrefix, value: /match/prefix/}}]
    backendRefs: [{group: inference.networking.k8s.io, kind: InferencePool, name: infra-backend-v1}]
  - matches: [{path: {type: PathPrefix, value: /match/prefix/one}}]
    backendRefs: [{group: inference.networking.k8s.io, kind: InferencePool, name: infra-backend-v2}]
"""


async def test_exact_then_longest_prefix_wins(gateway_api):
    await gateway_api.start(gateway_api_base(), {"route.yaml": ROUTE})
    assert_route_accepted_and_resolved(gateway_api, f"{INFRA}/path-matching-order", GW)
    await expect(gateway_api, GW, [
        ({"path": "/match/exact/one"}, "infra-backend-v3"),
        ({"path": "/match/exact"}, "infra-backend-v2"),
        ({"path": "/match"}, "infra-backend-v1"),
        ({"path": "/match/prefix/one/any"}, "infra-backend-v2"),
        ({"path": "/match/prefix/any"}, "infra-backend-v1"),
        ({"path": "/match/any"}, "infra-backend-v3"),
    ])
