"""Gateway API `HTTPRouteInvalidParentRefSectionNameNotMatchingPort`: a parentRef whose sectionName names a
listener on another port gives Accepted=False/NoMatchingParent.

Service infra-backend-v1 is an InferencePool of that name (the router routes only to pools).
"""

from __future__ import annotations

from tests.conformance.suite import INFRA, gateway_api_base, route_conditions

GW = f"{INFRA}/gateway-with-one-not-matching-port-and-section-name-route"
MANIFESTS = """
apiVersion: gateway.networking.k8s.io/v1
kind: Gateway
metadata: {name: gateway-with-one-not-matching-port-and-section-name-route, namespace: gateway-conformance-infra}
spec:
  gatewayClassName: kthena-router
  listeners:
  - {name: http, port: ${PORT:section-port}, protocol: HTTP,
     allowedRoutes: {kinds: [{kind: HTTPRoute}], namespaces: {from: All}}}
---
apiVersion: gateway.networking.k8s.io/v1
kind: HTTPRoute
metadata: {name: httproute-listener-section-name-not-matching-port, namespace: gateway-conformance-infra}
spec:
  parentRefs:
  - {name: gateway-with-one-not-matching-port-and-section-name-route, namespace: gateway-conformance-infra,
     sectionName: http, port: ${PORT:unused}}
  rules:
  - backendRefs: [{group: inference.networking.k8s.io, kind: InferencePool, name: infra-backend-v1}]
"""


async def test_section_name_on_another_port_is_no_matching_parent(gateway_api):
    await gateway_api.start(gateway_api_base(), {"route.yaml": MANIFESTS})
    got = route_conditions(gateway_api, f"{INFRA}/httproute-listener-section-name-not-matching-port", GW)
    assert got["Accepted"] == ("False", "NoMatchingParent")
