"""Gateway API `HTTPRoutePartiallyInvalidViaInvalidReferenceGrant`: one rule's backend is not permitted
(ResolvedRefs=False/RefNotPermitted, its path gets 500) while the other rule still serves.

Services are InferencePools of the same names (the router routes only to pools).
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
  to: [{group: inference.networking.k8s.io, kind: InferencePool, name: not-app-backend-v1}]
---
apiVersion: gateway.networking.k8s.io/v1
kind: HTTPRoute
metadata: {name: invalid-reference-grant, namespace: gateway-conformance-infra}
spec:
  parentRefs: [{name: same-namespace}]
  rules:
  - matches: [{path: {type: PathPrefix, value: /v2}}]
    backendRefs: [{group: inference.networking.k8s.io, kind: InferencePool, name: app-backend-v1, namespace: gateway-conformance-app-backend}]
  - backendRefs: [{group: inference.networking.k8s.io, kind: InferencePool, name: infra-backend-v1}]
"""


async def test_invalid_rule_gets_500_and_the_valid_rule_serves(gateway_api):
    await gateway_api.start(gateway_api_base(), {"grant.yaml": MANIFESTS})
    got = route_conditions(gateway_api, f"{INFRA}/invalid-reference-grant", GW)
    assert got["Accepted"] == ("True", "Accepted")
    assert got["ResolvedRefs"] == ("False", "RefNotPermitted")
    await expect(gateway_api, GW, [({"path": "/v2"}, 500), ({"path": "/"}, "infra-backend-v1")])
