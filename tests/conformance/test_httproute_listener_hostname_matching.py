"""Gateway API `HTTPRouteListenerHostnameMatching`: listeners on one port with bar.com, foo.bar.com,
*.bar.com and *.foo.com each serve only their own routes; other hosts get 404.

Services infra-backend-v1/v2/v3 are InferencePools of the same names (the router routes only to pools).
"""

from __future__ import annotations

from tests.conformance.suite import INFRA, expect, gateway_api_base

GW = f"{INFRA}/httproute-listener-hostname-matching"
MANIFESTS = """
apiVersion: gateway.networking.k8s.io/v1
kind: Gateway
metadata: {name: httproute-listener-hostname-matching, namespace: gateway-conformance-infra}
spec:
  gatewayClassName: kthena-router
  listeners:
  - {name: listener-1, port: ${PORT:hostname-matching}, protocol: HTTP, hostname: bar.com,
     allowedRoutes: {namespaces: {from: Same}}}
  - {name: listener-2, port: ${PORT:hostname-matching}, protocol: HTTP, hostname: foo.bar.com,
     allowedRoutes: {namespaces: {from: Same}}}
  - {name: listener-3, port: ${PORT:hostname-matching}, protocol: HTTP, hostname: "*.bar.com",
     allowedRoutes: {namespaces: {from: Same}}}
  - {name: listener-4, port: ${PORT:hostname-matching}, protocol: HTTP, hostname: "*.foo.com",
     allowedRoutes: {namespaces: {from: Same}}}
---
apiVersion: gateway.networking.k8s.io/v1
kind: HTTPRoute
metadata: {name: backend-v1, namespace: gateway-conformance-infra}
spec:
  parentRefs: [{name: httproute-listener-hostname-matching, sectionName: listener-1}]
  rules:
  - backendRefs: [{group: inference.networking.k8s.io, kind: InferencePool, name: infra-backend-v1}]
---
apiVersion: gateway.networking.k8s.io/v1
kind: HTTPRoute
metadata: {name: backend-v2, namespace: gateway-conformance-infra}
spec:
  parentRefs: [{name: httproute-listener-hostname-matching, sectionName: listener-2}]
  rules:
  - backendRefs: [{group: inference.networking.k8s.io, kind: InferencePool, name: infra-backend-v2}]
---
apiVersion: gateway.networking.k8s.io/v1
kind: HTTPRoute
metadata: {name: backend-v3, namespace: gateway-conformance-infra}
spec:
  parentRefs:
  - {name: httproute-listener-hostname-matching, sectionName: listener-3}
  - {name: httproute-listener-hostname-matching, sectionName: listener-4}
  rules:
  - backendRefs: [{group: inference.networking.k8s.io, kind: InferencePool, name: infra-backend-v3}]
"""


async def test_each_listener_hostname_serves_its_own_routes(gateway_api):
    await gateway_api.start(gateway_api_base(), {"listeners.yaml": MANIFESTS})
    status = gateway_api.gateway_status(GW)
    assert [c["status"] for c in status["conditions"] if c["type"] == "Programmed"] == ["True"]
    await expect(gateway_api, GW, [
        ({"path": "/", "host": "bar.com"}, "infra-backend-v1"),
        ({"path": "/", "host": "foo.bar.com"}, "infra-backend-v2"),
        ({"path": "/", "host": "baz.bar.com"}, "infra-backend-v3"),
        ({"path": "/", "host": "boo.bar.com"}, "infra-backend-v3"),
        ({"path": "/", "host": "multiple.prefixes.bar.com"}, "infra-backend-v3"),
        ({"path": "/", "host": "multiple.prefixes.foo.com"}, "infra-backend-v3"),
        ({"path": "/", "host": "foo.com"}, 404),
        ({"path": "/", "host": "no.matching.host"}, 404),
    ])
