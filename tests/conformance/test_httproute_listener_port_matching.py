"""Gateway API `HTTPRouteListenerPortMatching`: a parentRef `port` attaches the route to that port's
listeners only (with `sectionName`, to that listener only).

The listeners' ports 80/8080/8090 are free ports here. Services infra-backend-v1/v2/v3 are InferencePools of
the same names (the router routes only to pools).
"""

from __future__ import annotations

from tests.conformance.suite import INFRA, assert_route_accepted_and_resolved, gateway_api_base

GW = f"{INFRA}/httproute-listener-port-matching"
SAME = "allowedRoutes: {namespaces: {from: Same}}"
MANIFESTS = f"""
apiVersion: gateway.networking.k8s.io/v1
kind: Gateway
metadata: {{name: httproute-listener-port-matching, namespace: gateway-conformance-infra}}
spec:
  gatewayClassName: kthena-router
  listeners:
  - {{name: listener-1, port: ${{PORT:lpm-80}}, protocol: HTTP, hostname: foo.com, {SAME}}}
  - {{name: listener-2, port: ${{PORT:lpm-8080}}, protocol: HTTP, hostname: foo.com, {SAME}}}
  - {{name: listener-3, port: ${{PORT:lpm-8080}}, protocol: HTTP, hostname: bar.com, {SAME}}}
  - {{name: listener-4, port: ${{PORT:lpm-8090}}, protocol: HTTP, hostname: foo.com, {SAME}}}
  - {{name: listener-5, port: ${{PORT:lpm-8090}}, protocol: HTTP, hostname: bar.com, {SAME}}}
""" + """
---
apiVersion: gateway.networking.k8s.io/v1
kind: HTTPRoute
metadata: {name: backend-v1, namespace: gateway-conformance-infra}
spec:
  parentRefs: [{name: httproute-listener-port-matching, port: ${PORT:lpm-80}}]
  rules:
  - backendRefs: [{group: inference.networking.k8s.io, kind: InferencePool, name: infra-backend-v1}]
---
apiVersion: gateway.networking.k8s.io/v1
kind: HTTPRoute
metadata: {name: backend-v2, namespace: gateway-conformance-infra}
spec:
  parentRefs: [{name: httproute-listener-port-matching, port: ${PORT:lpm-8080}}]
  rules:
  - backendRefs: [{group: inference.networking.k8s.io, kind: InferencePool, name: infra-backend-v2}]
---
apiVersion: gateway.networking.k8s.io/v1
kind: HTTPRoute
metadata: {name: backend-v3, namespace: gateway-conformance-infra}
spec:
  parentRefs: [{name: httproute-listener-port-matching, port: ${PORT:lpm-8090}, sectionName: listener-4}]
  rules:
  - backendRefs: [{group: inference.networking.k8s.io, kind: InferencePool, name: infra-backend-v3}]
"""


async def test_parent_ref_port_selects_the_listeners(gateway_api):
    await gateway_api.start(gateway_api_base(), {"ports.yaml": MANIFESTS})
    for route in ("backend-v1", "backend-v2", "backend-v3"):
        assert_route_accepted_and_resolved(gateway_api, f"{INFRA}/{route}", GW)
    p80, p8080, p8090 = (gateway_api.port(k) for k in ("lpm-80", "lpm-8080", "lpm-8090"))
    cases = [
        ("foo.com", p80, "infra-backend-v1"),
        ("foo.com", p8080, "infra-backend-v2"),
        ("bar.com", p8080, "infra-backend-v2"),
        ("foo.com", p8090, "infra-backend-v3"),
        ("bar.com", p8090, 404),
    ]
    for host, port, want in cases:
        reply = await gateway_api.request(GW, "/", host=f"{host}:{port}", port=port)
        if isinstance(want, int):
            assert reply.status == want and reply.echo is None, (host, port, reply.status)
        else:
            assert reply.status == 200 and reply.backend == want, (host, port, reply.status, reply.backend)
