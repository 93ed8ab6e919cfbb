"""Gateway API `GatewayInvalidRouteKind`: a listener allowing only an unknown route kind has
ResolvedRefs=False/InvalidRouteKinds and no supported kinds; with HTTPRoute also listed, HTTPRoute is its only
supported kind and ResolvedRefs is still False/InvalidRouteKinds."""

from __future__ import annotations

from tests.conformance.suite import INFRA, condition, gateway_api_base

MANIFESTS = """
apiVersion: gateway.networking.k8s.io/v1
kind: Gateway
metadata: {name: gateway-only-invalid-route-kind, namespace: gateway-conformance-infra}
spec:
  gatewayClassName: kthena-router
  listeners:
  - {name: http, port: ${PORT:only-invalid-kind}, protocol: HTTP,
     allowedRoutes: {namespaces: {from: All}, kinds: [{kind: InvalidRoute}]}}
---
apiVersion: gateway.networking.k8s.io/v1
kind: Gateway
metadata: {name: gateway-supported-and-invalid-route-kind, namespace: gateway-conformance-infra}
spec:
  gatewayClassName: kthena-router
  listeners:
  - {name: http, port: ${PORT:mixed-kinds}, protocol: HTTP,
     allowedRoutes: {namespaces: {from: All}, kinds: [{kind: InvalidRoute}, {kind: HTTPRoute}]}}
"""


async def test_unknown_route_kinds_are_reported_on_the_listener(gateway_api):
    await gateway_api.start(gateway_api_base(), {"gateways.yaml": MANIFESTS})
    (only,) = gateway_api.gateway_status(f"{INFRA}/gateway-only-invalid-route-kind")["listeners"]
    assert condition(only, "ResolvedRefs") == ("False", "InvalidRouteKinds")
    assert only["supportedKinds"] == [] and only["attachedRoutes"] == 0
    (mixed,) = gateway_api.gateway_status(f"{INFRA}/gateway-supported-and-invalid-route-kind")["listeners"]
    assert condition(mixed, "ResolvedRefs") == ("False", "InvalidRouteKinds")
    assert [k["kind"] for k in mixed["supportedKinds"]] == ["HTTPRoute"]
    assert mixed["attachedRoutes"] == 0
