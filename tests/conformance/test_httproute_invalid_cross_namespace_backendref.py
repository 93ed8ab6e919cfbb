"""Gateway API `HTTPRouteInvalidCrossNamespaceBackendRef`: a backendRef into another namespace without a
ReferenceGrant gives ResolvedRefs=False/RefNotPermitted, and its traffic gets 500.

Service web-backend is an InferencePool of that name (the router routes only to pools).
"""

from __future__ import annotations

from tests.conformance.suite import INFRA, expect, gateway_api_base, route_conditions

GW = f"{INFRA}/same-namespace"
ROUTE = """
apiVersion: gateway.networking.k8s.io/v1
kind: HTTPRoute
metadata: {name: invalid-cross-namespace-backend-ref, namespace: gateway-conformance-infra}
spec:
  parentRefs: [{name: same-namespace}]
  rules:
  - backendRefs: [{group: inference.networking.k8s.io, kind: InferencePool, name: web-backend, namespace: gateway-conformance-web-backend}]
"""


async def test_ungranted_cross_namespace_backend_is_ref_not_permitted_and_500(gateway_api):
    await gateway_api.start(gateway_api_base(), {"route.yaml": ROUTE})
    got = route_conditions(gateway_api, f"{INFRA}/invalid-cross-namespace-backend-ref", GW)
    assert got["Accepted"] == ("True", "Accepted")
    assert got["ResolvedRefs"] == ("False", "RefNotPermitted")
    await expect(gateway_api, GW, [({"path": "/"}, 500)])
