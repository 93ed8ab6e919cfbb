"""Gateway API `HTTPRouteInvalidCrossNamespaceParentRef`: a route from another namespace is not allowed by a
`from: Same` listener: Accepted=False/NotAllowedByListeners, and the Gateway serves nothing for it.

Service web-backend is an InferencePool of that name (the router routes only to pools).
"""

from __future__ import annotations

from tests.conformance.suite import INFRA, WEB_BACKEND, expect, gateway_api_base, route_conditions

GW = f"{INFRA}/same-namespace"
ROUTE = """
apiVersion: gateway.networking.k8s.io/v1
kind: HTTPRoute
metadata: {name: invalid-cross-namespace-parent-ref, namespace: gateway-conformance-web-backend}
spec:
  parentRefs: [{name: same-namespace, namespace: gateway-conformance-infra}]
  rules:
  - backendRefs: [{group: inference.networking.k8s.io, kind: InferencePool, name: web-backend}]
"""


async def test_route_from_another_namespace_is_not_allowed_by_a_same_namespace_listener(gateway_api):
    await gateway_api.start(gateway_api_base(), {"route.yaml": ROUTE})
    got = route_conditions(gateway_api, f"{WEB_BACKEND}/invalid-cross-namespace-parent-ref", GW)
    assert got["Accepted"] == ("False", "NotAllowedByListeners")
    listener = gateway_api.gateway_status(GW)["listeners"][0]
    assert listener["attachedRoutes"] == 0
    await expect(gateway_api, GW, [({"path": "/"}, 404)])
