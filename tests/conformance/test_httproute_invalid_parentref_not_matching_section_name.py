"""Gateway API `HTTPRouteInvalidParentRefNotMatchingSectionName`: a sectionName naming no listener gives
Accepted=False/NoMatchingParent.

Service infra-backend-v1 is an InferencePool of that name (the router routes only to pools).
"""

from __future__ import annotations

from tests.conformance.suite import INFRA, gateway_api_base, route_conditions

GW = f"{INFRA}/same-namespace"
ROUTE = """
apiVersion: gateway.networking.k8s.io/v1
kind: HTTPRoute
metadata: {name: httproute-not-matching-section-name, namespace: gateway-conformance-infra}
spec:
  parentRefs: [{name: same-namespace, sectionName: foo}]
  rules:
  - backendRefs: [{group: inference.networking.k8s.io, kind: InferencePool, name: infra-backend-v1}]
"""


async def test_unknown_section_name_is_no_matching_parent(gateway_api):
    await gateway_api.start(gateway_api_base(), {"route.yaml": ROUTE})
    got = route_conditions(gateway_api, f"{INFRA}/httproute-not-matching-section-name", GW)
    assert got["Accepted"] == ("False", "NoMatchingParent")
