"""Gateway API `HTTPRouteMethodMatching`: POST and GET go to different backends; other methods get 404.

Services infra-backend-v1/v2 are InferencePools of the same names (the router routes only to pools).
"""

from __future__ import annotations

from tests.conformance.suite import INFRA, assert_route_accepted_and_resolved, expect, gateway_api_base

GW = f"{INFRA}/same-namespace"
ROUTE = """
apiVersion: gateway.networking.k8s.io/v1
kind: HTTPRoute
metadata: {name: method-matching, namespace: gateway-conformance-infra}
spec:
  parentRefs: [{name: same-namespace}]
  rules:
  - matches: [{method: POST}]
    backendRefs: [{group: inference.networking.k8s.io, kind: InferencePool, name: infra-backend-v1}]
  - matches: [{method: GET}]
    backendRefs: [{group: inference.networking.k8s.io, kind: InferencePool, name: infra-backend-v2}]
"""


async def test_method_chooses_the_backend(gateway_api):
    await gateway_api.start(gateway_api_base(), {"route.yaml": ROUTE})
    assert_route_accepted_and_resolved(gateway_api, f"{INFRA}/method-matching", GW)
    await expect(gateway_api, GW, [
        ({"path": "/", "method": "POST"}, "infra-backend-v1"),
        ({"path": "/", "method": "GET"}, "infra-backend-v2"),
        ({"path": "/", "method": "HEAD"}, 404),
    ])
