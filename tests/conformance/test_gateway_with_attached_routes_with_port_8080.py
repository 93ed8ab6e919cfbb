"""Gateway API `GatewayWithAttachedRoutesWithPort8080`: of two listeners on different ports, only the one a
route names by sectionName counts it (attachedRoutes 1 and 0), and both are Accepted and ResolvedRefs.

The listeners' ports 80 and 8080 are free ports here. Service infra-backend-v1 is an InferencePool of that
name (the router routes only to pools).
"""

from __future__ import annotations

from tests.conformance.suite import INFRA, condition, expect, gateway_api_base

GW = f"{INFRA}/gateway-with-two-listeners-and-one-attached-route"
ALL = "allowedRoutes: {kinds: [{kind: HTTPRoute}], namespaces: {from: All}}"
MANIFESTS = f"""
apiVersion: gateway.networking.k8s.io/v1
kind: Gateway
metadata: {{name: gateway-with-two-listeners-and-one-attached-route, namespace: gateway-conformance-infra}}
spec:
  gatewayClassName: kthena-router
  listeners:
  - {{name: http-unattached, port: ${{PORT:unattached}}, protocol: HTTP, {ALL}}}
  - {{name: http, port: ${{PORT:attached}}, protocol: HTTP, {ALL}}}
""" + """
---
apiVersion: gateway.networking.k8s.io/v1
kind: HTTPRoute
metadata: {name: http-route-4-port-8080, namespace: gateway-conformance-infra}
spec:
  parentRefs:
  - {kind: Gateway, name: gateway-with-two-listeners-and-one-attached-route,
     namespace: gateway-conformance-infra, sectionName: http}
  rules:
  - backendRefs: [{group: inference.networking.k8s.io, kind: InferencePool, name: infra-backend-v1}]
"""


async def test_only_the_named_listener_counts_the_route(gateway_api):
    await gateway_api.start(gateway_api_base(), {"gateway.yaml": MANIFESTS})
    listeners = {entry["name"]: entry for entry in gateway_api.gateway_status(GW)["listeners"]}
    for name, count in (("http-unattached", 0), ("http", 1)):
        assert condition(listeners[name], "Accepted")[0] == "True"
        assert condition(listeners[name], "ResolvedRefs")[0] == "True"
        assert listeners[name]["attachedRoutes"] == count, (name, listeners[name])
    await expect(gateway_api, GW, [({"path": "/", "port": gateway_api.port("attached")}, "infra-backend-v1")])
    await expect(gateway_api, GW, [({"path": "/", "port": gateway_api.port("unattached")}, 404)])
