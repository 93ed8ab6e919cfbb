"""Gateway API `HTTPRouteMatching`: path prefixes ORed with header matches, element-wise prefix matching.

Service backends infra-backend-v1/v2 are InferencePools of the same names (the router routes only to pools).
"""

from __future__ import annotations

from tests.conformance.suite import INFRA, assert_route_accepted_and_resolved, expect, gateway_api_base

GW = f"{INFRA}/same-namespace"
ROUTE = """
apiVersion: gateway.networking.k8s.io/v1
kind: HTTPRoute
metadata: {name: matching, namespace: gateway-conformance-infra}
spec:
  parentRefs: [{name: same-namespace}]
  rules:
  - matches:
    - path: {type: PathPrefix, value: /}
    - headers: [{name: version, value: one}]
    backendRefs: [{group: inference.networking.k8s.io, kind: InferencePool, name: infra-backend-v1}]
  - matches:
    - path: {type: PathPrefix, value: /v2}
    - headers: [{name: version, value: two}]
    backendRefs: [{group: inference.networking.k8s.io, kind: InferencePool, name: infra-backend-v2}]
"""


async def test_prefix_or_header_matches_choose_the_backend(gateway_api):
    await gateway_api.start(gateway_api_base(), {"route.yaml": ROUTE})
    assert_route_accepted_and_resolved(gateway_api, f"{INFRA}/matching", GW)
    await expect(gateway_api, GW, [
        ({"path": "/"}, "infra-backend-v1"),
        ({"path": "/example"}, "infra-backend-v1"),
        ({"path": "/", "headers": {"Version": "one"}}, "infra-backend-v1"),
        ({"path": "/v2"}, "infra-backend-v2"),
        ({"path": "/v2/example"}, "infra-backend-v2"),
        ({"path": "/", "headers": {"Version": "two"}}, "infra-backend-v2"),
        ({"path": "/v2/"}, "infra-backend-v2"),
        ({"path": "/v2example"}, "infra-backend-v1"),
        ({"path": "/foo/v2/example"}, "infra-backend-v1"),
    ])
