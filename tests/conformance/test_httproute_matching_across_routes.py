"""Gateway API `HTTPRouteMatchingAcrossRoutes`: two routes sharing a hostname on one Gateway are matched as
one set of rules: the longer prefix of the second route wins on example.com, not on example.net.

Services infra-backend-v1/v2 are InferencePools of the same names (the router routes only to pools).
"""

from __future__ import annotations

from tests.conformance.suite import INFRA, assert_route_accepted_and_resolved, expect, gateway_api_base

GW = f"{INFRA}/same-namespace"
ROUTES = """
apiVersion: gateway.networking.k8s.io/v1
kind: HTTPRoute
metadata: {name: matching-part1, namespace: gateway-conformance-infra}
spec:
  parentRefs: [{name: same-namespace}]
  hostnames: [example.com, example.net]
  rules:
  - matches:
    - path: {type: PathPrefix, value: /}
    - headers: [{name: version, value: one}]
    backendRefs: [{group: inference.networking.k8s.io, kind: InferencePool, name: infra-backend-v1}]
---
apiVersion: gateway.networking.k8s.io/v1
kind: HTTPRoute
metadata: {name: matching-part2, namespace: gateway-conformance-infra}
spec:
  parentRefs: [{name: same-namespace}]
  hostnames: [example.com]
  rules:
  - matches:
    - path: {type: PathPrefix, value: /v2}
    - headers: [{name: version, value: two}]
    backendRefs: [{group: inference.networking.k8s.io, kind: InferencePool, name: infra-backend-v2}]
"""


async def test_rules_of_two_routes_are_matched_together(gateway_api):
    await gateway_api.start(gateway_api_base(), {"routes.yaml": ROUTES})
    for route in ("matching-part1", "matching-part2"):
        assert_route_accepted_and_resolved(gateway_api, f"{INFRA}/{route}", GW)
    await expect(gateway_api, GW, [
        ({"host": "example.com", "path": "/"}, "infra-backend-v1"),
        ({"host": "example.com", "path": "/example"}, "infra-backend-v1"),
        ({"host": "example.net", "path": "/example"}, "infra-backend-v1"),
        ({"host": "example.com", "path": "/example", "headers": {"Version": "one"}}, "infra-backend-v1"),
        ({"host": "example.com", "path": "/v2"}, "infra-backend-v2"),
        ({"host": "example.net", "path": "/v2"}, "infra-backend-v1"),
        ({"host": "example.com", "path": "/v2/example"}, "infra-backend-v2"),
        ({"host": "example.com", "path": "/", "headers": {"Version": "two"}}, "infra-backend-v2"),
    ])
