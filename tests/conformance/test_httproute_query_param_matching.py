"""Gateway API `HTTPRouteQueryParamMatching`: exact query parameter matches, ANDed, names case-sensitive.

Services infra-backend-v1/v2/v3 are InferencePools of the same names (the router routes only to pools).
"""

from __future__ import annotations

from tests.conformance.suite import INFRA, assert_route_accepted_and_resolved, expect, gateway_api_base

GW = f"{INFRA}/same-namespace"
ROUTE = """
apiVersion: gateway.networking.k8s.io/v1
kind: HTTPRoute
metadata: {name: query-param-matching, namespace: gateway-conformance-infra}
spec:
  parentRefs: [{name: same-namespace}]
  rules:
  - matches: [{queryParams: [{name: animal, value: whale}]}]
    backendRefs: [{group: inference.networking.k8s.io, kind: InferencePool, name: infra-backend-v1}]
  - matches: [{queryParams: [{name: animal, value: dolphin}]}]
    backendRefs: [{group: inference.networking.k8s.io, kind: InferencePool, name: infra-backend-v2}]
  - matches:
    - queryParams: [{name: animal, value: dolphin}, {name: color, value: blue}]
    - queryParams: [{name: ANIMAL, value: Whale}]
    backendRefs: [{group: inference.networking.k8s.io, kind: InferencePool, name: infra-backend-v3}]
"""


async def test_query_matches_and_their_precedence(gateway_api):
    await gateway_api.start(gateway_api_base(), {"route.yaml": ROUTE})
    assert_route_accepted_and_resolved(gateway_api, f"{INFRA}/query-param-matching", GW)
    await expect(gateway_api, GW, [
        ({"path": "/?animal=whale"}, "infra-backend-v1"),
        ({"path": "/?animal=dolphin"}, "infra-backend-v2"),
        ({"path": "/?animal=whale&otherparam=irrelevant"}, "infra-backend-v1"),
        ({"path": "/?animal=dolphin&color=yellow"}, "infra-backend-v2"),
        ({"path": "/?color=blue&animal=dolphin"}, "infra-backend-v3"),
        ({"path": "/?animal=dolphin&color=blue"}, "infra-backend-v3"),
        ({"path": "/?ANIMAL=Whale"}, "infra-backend-v3"),
        ({"path": "/?animal=shark"}, 404),
        ({"path": "/?color=blue"}, 404),
        ({"path": "/?ANIMAL=whale"}, 404),
    ])
