"""Gateway API `HTTPRouteCrossNamespace`: a route in a namespace the listener selects attaches and routes.

Service web-backend is an InferencePool of that name (the router routes only to pools).
"""

from __future__ import annotations

from tests.conformance.suite import (
    INFRA,
    WEB_BACKEND,
    assert_route_accepted_and_resolved,
    expect,
    gateway_api_base,
)

GW = f"{INFRA}/backend-namespaces"
ROUTE = """
apiVersion: gateway.networking.k8s.io/v1
kind: HTTPRoute
metadata: {name: cross-namespace, namespace: gateway-conformance-web-backend}
spec:
  parentRefs: [{name: backend-namespaces, namespace: gateway-conformance-infra}]
  rules:
  - backendRefs: [{group: inference.networking.k8s.io, kind: InferencePool, name: web-backend}]
"""


async def test_route_from_a_selected_namespace_attaches_and_routes(gateway_api):
    await gateway_api.start(gateway_api_base(), {"route.yaml": ROUTE})
    assert_route_accepted_and_resolved(gateway_api, f"{WEB_BACKEND}/cross-namespace", GW)
    await expect(gateway_api, GW, [({"path": "/"}, "web-backend")])
