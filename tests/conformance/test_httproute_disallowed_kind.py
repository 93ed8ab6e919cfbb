"""Gateway API `HTTPRouteDisallowedKind`: an HTTPRoute attaching to a listener that allows only TLSRoutes is
Accepted=False/NotAllowedByListeners.

Upstream's listener is a TLS passthrough listener on 443; the router serves no TLS listeners, so the check
here is the route status only. Service infra-backend-v1 is an InferencePool of that name.
"""

from __future__ import annotations

from tests.conformance.suite import INFRA, gateway_api_base, route_conditions

GW = f"{INFRA}/tlsroutes-only"
MANIFESTS = """
apiVersion: gateway.networking.k8s.io/v1
kind: Gateway
metadata: {name: tlsroutes-only, namespace: gateway-conformance-infra}
spec:
  gatewayClassName: kthena-router
  listeners:
  - {name: tls, port: ${PORT:tls-only}, protocol: TLS, tls: {mode: Passthrough},
     allowedRoutes: {namespaces: {from: Same}, kinds: [{kind: TLSRoute}]}}
---
apiVersion: gateway.networking.k8s.io/v1
kind: HTTPRoute
metadata: {name: disallowed-kind, namespace: gateway-conformance-infra}
spec:
  parentRefs: [{name: tlsroutes-only, namespace: gateway-conformance-infra}]
  rules:
  - backendRefs: [{group: inference.networking.k8s.io, kind: InferencePool, name: infra-backend-v1}]
"""


async def test_route_kind_the_listener_does_not_allow_is_not_accepted(gateway_api):
    await gateway_api.start(gateway_api_base(), {"route.yaml": MANIFESTS})
    got = route_conditions(gateway_api, f"{INFRA}/disallowed-kind", GW)
    assert got["Accepted"] == ("False", "NotAllowedByListeners")
