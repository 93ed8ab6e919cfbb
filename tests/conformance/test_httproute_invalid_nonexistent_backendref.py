"""Gateway API `HTTPRouteInvalidNonExistentBackendRef`: a backendRef to a missing backend gives
ResolvedRefs=False/BackendNotFound, and its traffic gets 500.

The missing Service becomes a missing InferencePool (the router routes only to pools).
"""

from __future__ import annotations

from tests.conformance.suite import INFRA, expect, gateway_api_base, route_conditions

GW = f"{INFRA}/same-namespace"
ROUTE = """
apiVersion: gateway.networking.k8s.io/v1
kind: HTTPRoute
metadata: {name: invalid-nonexistent-backend-ref, namespace: gateway-conformance-infra}
spec:
  parentRefs: [{name: same-namespace}]
  rules:
  - backendRefs: [{group: inference.networking.k8s.io, kind: InferencePool, name: nonexistent-backend}]
"""


async def test_missing_backend_is_backend_not_found_and_500(gateway_api):
    await gateway_api.start(gateway_api_base(), {"route.yaml": ROUTE})
    got = route_conditions(gateway_api, f"{INFRA}/invalid-nonexistent-backend-ref", GW)
    assert got["Accepted"] == ("True", "Accepted")
    assert got["ResolvedRefs"] == ("False", "BackendNotFound")
    await expect(gateway_api, GW, [({"path": "/"}, 500)])
