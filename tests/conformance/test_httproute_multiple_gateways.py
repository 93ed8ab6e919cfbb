"""Gateway API `HTTPRouteMultipleGateways`: a route attached to two Gateways serves on both; each Gateway's
dedicated route serves only there.

Services infra-backend-v1/v2/v3 are InferencePools of the same names (the router routes only to pools).
"""

from __future__ import annotations

from tests.conformance.suite import INFRA, assert_route_accepted_and_resolved, expect, gateway_api_base

SAME = f"{INFRA}/same-namespace"
ALL = f"{INFRA}/all-namespaces"
ROUTES = """
apiVersion: gateway.networking.k8s.io/v1
kind: HTTPRoute
metadata: {name: multiple-gateways-shared-route, namespace: gateway-conformance-infra}
spec:
  parentRefs: [{name: same-namespace}, {name: all-namespaces}]
  rules:
  - matches: [{path: {type: PathPrefix, value: /shared}}]
    backendRefs: [{group: inference.networking.k8s.io, kind: InferencePool, name: infra-backend-v1}]
---
apiVersion: gateway.networking.k8s.io/v1
kind: HTTPRoute
metadata: {name: same-namespace-dedicated-route, namespace: gateway-conformance-infra}
spec:
  parentRefs: [{name: same-namespace}]
  rules:
  - matches: [{path: {type: PathPrefix, value: /}}]
    backendRefs: [{group: inference.networking.k8s.io, kind: InferencePool, name: infra-backend-v2}]
---
apiVersion: gateway.networking.k8s.io/v1
kind: HTTPRoute
metadata: {name: all-namespaces-dedicated-route, namespace: gateway-conformance-infra}
spec:
  parentRefs: [{name: all-namespaces}]
  rules:
  - matches: [{path: {type: PathPrefix, value: /}}]
    backendRefs: [{group: inference.networking.k8s.io, kind: InferencePool, name: infra-backend-v3}]
"""


async def test_shared_route_serves_on_both_gateways_and_dedicated_routes_on_theirs(gateway_api):
    await gateway_api.start(gateway_api_base(), {"routes.yaml": ROUTES})
    for gw, dedicated, backend in ((SAME, "same-namespace-dedicated-route", "infra-backend-v2"),
                                   (ALL, "all-namespaces-dedicated-route", "infra-backend-v3")):
        assert_route_accepted_and_resolved(gateway_api, f"{INFRA}/multiple-gateways-shared-route", gw)
        assert_route_accepted_and_resolved(gateway_api, f"{INFRA}/{dedicated}", gw)
        await expect(gateway_api, gw, [({"path": "/shared"}, "infra-backend-v1"), ({"path": "/"}, backend)])
