"""Gateway API `HTTPRouteInvalidReferenceGrant`: a ReferenceGrant that names another backend does not
permit this one: ResolvedRefs=False/RefNotPermitted, and no traffic is forwarded (500).

Services app-backend-v1/v2 are InferencePools of the same names (the router routes only to pools).
"""

from __future__ import annotations

from tests.conformance.suite import INFRA, expect, gateway_api_base, route_conditions

GW = f"{INFRA}/same-namespace"
MANIFESTS = """
apiVersion: gateway.networking.k8s.io/v1beta1
kind: ReferenceGrant
metadata: {name: reference-grant-wrong-backend, namespace: gateway-conformance-app-backend}
spec:
  from: [{group: gateway.networking.k8s.io, kind: HTTPRoute, namespace: gateway-conformance-infra}]
  to: [{group: inference.networking.k8s.io, kind: InferencePool, name: app-backend-v2}]
---
apiVersion: gateway.networking.k8s.io/v1
kind: HTTPRoute
metadata: {name: reference-grant, namespace: gateway-conformance-infra}
spec:
  parentRefs: [{name: same-namespace}]
  rules:
  - backendRefs: [{group: inference.networking.k8s.io, kind: InferencePool, name: app-backend-v1, namespace: gateway-conformance-app-backend}]
"""


async def test_grant_for_another_backend_does_not_permit_this_one(gateway_api):
    await gateway_api.start(gateway_api_base(), {"grant.yaml": MANIFESTS})
    got = route_conditions(gateway_api, f"{INFRA}/reference-grant", GW)
    assert got["Accepted"] == ("True", "Accepted")
    assert got["ResolvedRefs"] == ("False", "RefNotPermitted")
    await expect(gateway_api, GW, [({"path": "/"}, 500)])
