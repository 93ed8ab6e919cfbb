"""Gateway API `HTTPRouteHeaderMatching`: exact header matches, ANDed within a match, ORed across matches,
the rule with more header matches first.

Services infra-backend-v1/v2 are InferencePools of the same names (the router routes only to pools).
"""

from __future__ import annotations

from tests.conformance.suite import INFRA, assert_route_accepted_and_resolved, expect, gateway_api_base

GW = f"{INFRA}/same-namespace"
ROUTE = """
apiVersion: gateway.networking.k8s.io/v1
kind: HTTPRoute
metadata: {name: header-matching, namespace: gateway-conformance-infra}
spec:
  parentRefs: [{name: same-namespace}]
  rules:
  - matches: [{headers: [{name: version, value: one}]}]
    backendRefs: [{group: inference.networking.k8s.io, kind: InferencePool, name: infra-backend-v1}]
  - matches: [{headers: [{name: version, value: two}]}]
    backendRefs: [{group: inference.networking.k8s.io, kind: InferencePool, name: infra-backend-v2}]
  - matches: [{headers: [{name: version, value: two}, {name: color, value: orange}]}]
    backendRefs: [{group: inference.networking.k8s.io, kind: InferencePool, name: infra-backend-v1}]
  - matches: [{headers: [{name: color, value: blue}]}, {headers: [{name: color, value: green}]}]
    backendRefs: [{group: inference.networking.k8s.io, kind: InferencePool, name: infra-backend-v1}]
  - matches: [{headers: [{name: color, value: red}]}, {headers: [{name: color, value: yellow}]}]
    backendRefs: [{group: inference.networking.k8s.io, kind: InferencePool, name: infra-backend-v2}]
"""


async def test_header_matches_and_their_precedence(gateway_api):
    await gateway_api.start(gateway_api_base(), {"route.yaml": ROUTE})
    assert_route_accepted_and_resolved(gateway_api, f"{INFRA}/header-matching", GW)
    await expect(gateway_api, GW, [
        ({"path": "/", "headers": {"Version": "one"}}, "infra-backend-v1"),
        ({"path": "/", "headers": {"Version": "two"}}, "infra-backend-v2"),
        ({"path": "/", "headers": {"Version": "two", "Color": "orange"}}, "infra-backend-v1"),
        ({"path": "/", "headers": {"Version": "two", "Color": "blue"}}, "infra-backend-v2"),
        ({"path": "/", "headers": {"Color": "orange"}}, 404),
        ({"path": "/", "headers": {"Some-Other-Header": "one"}}, 404),
        ({"path": "/", "headers": {"Color": "blue"}}, "infra-backend-v1"),
        ({"path": "/", "headers": {"Color": "green"}}, "infra-backend-v1"),
        ({"path": "/", "headers": {"Color": "red"}}, "infra-backend-v2"),
        ({"path": "/", "headers": {"Color": "yellow"}}, "infra-backend-v2"),
        ({"path": "/", "headers": {"Color": "purple"}}, 404),
    ])
