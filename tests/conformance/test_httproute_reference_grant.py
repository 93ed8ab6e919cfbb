"""Gateway API `HTTPRouteReferenceGrant`: a backendRef into another namespace works once a ReferenceGrant
there allows it.

Service web-backend is an InferencePool of that name, and the grant's `to` names the InferencePool kind
(the router routes only to pools).
"""

from __future__ import annotations

from tests.conformance.suite import INFRA, assert_route_accepted_and_resolved, expect, gateway_api_base

GW = f"{INFRA}/same-namespace"
MANIFESTS = """
apiVersion: gateway.networking.k8s.io/v1beta1
kind: ReferenceGrant
metadata: {name: reference-grant, namespace: gateway-conformance-web-backend}
spec:
  from: [{group: gateway.networking.k8s.io, kind: HTTPRoute, namespace: gateway-conformance-infra}]
  to: [{group: inference.networking.k8s.io, kind: InferencePool, name: web-backend}]
---
apiVersion: gateway.networking.k8s.io/v1
kind: HTTPRoute
metadata: {name: reference-grant, namespace: gateway-conformance-infra}
spec:
  parentRefs: [{name: same-namespace}]
  rules:
  - backendRefs: [{group: inference.networking.k8s.io, kind: InferencePool, name: web-backend, namespace: gateway-conformance-web-backend}]
"""


async def test_granted_cross_namespace_backend_receives_traffic(gateway_api):
    await gateway_api.start(gateway_api_base(), {"grant.yaml": MANIFESTS})
    assert_route_accepted_and_resolved(gateway_api, f"{INFRA}/reference-grant", GW)
    await expect(gateway_api, GW, [({"path": "/"}, "web-backend")])
