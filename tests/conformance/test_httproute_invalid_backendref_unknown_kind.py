"""Gateway API `HTTPRouteInvalidBackendRefUnknownKind`: a backendRef of an unknown kind gives
ResolvedRefs=False/InvalidKind, and its traffic gets 500."""

from __future__ import annotations

from tests.conformance.suite import INFRA, expect, gateway_api_base, route_conditions

GW = f"{INFRA}/same-namespace"
ROUTE = """
apiVersion: gateway.networking.k8s.io/v1
kind: HTTPRoute
metadata: {name: invalid-backend-ref-unknown-kind, namespace: gateway-conformance-infra}
spec:
  parentRefs: [{name: same-namespace}]
  rules:
  - backendRefs: [{group: unknownkind.example.com, kind: NonExistent, name: infra-backend-v1, port: 8080}]
"""


async def test_unknown_backend_kind_is_invalid_kind_and_500(gateway_api):
    await gateway_api.start(gateway_api_base(), {"route.yaml": ROUTE})
    got = route_conditions(gateway_api, f"{INFRA}/invalid-backend-ref-unknown-kind", GW)
    assert got["Accepted"] == ("True", "Accepted")
    assert got["ResolvedRefs"] == ("False", "InvalidKind")
    await expect(gateway_api, GW, [({"path": "/"}, 500)])
