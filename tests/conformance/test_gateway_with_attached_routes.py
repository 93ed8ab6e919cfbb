"""Gateway API `GatewayWithAttachedRoutes`: each listener counts the routes attached to it; a route whose
hostnames miss the listener's is Accepted=False/NoMatchingListenerHostname and not counted.

The upstream case of an HTTPS listener with an unresolved certificate is left out (no TLS listeners).
Service infra-backend-v1 is an InferencePool of that name (the router routes only to pools).
"""

from __future__ import annotations

from tests.conformance.suite import INFRA, gateway_api_base, route_conditions

ONE = f"{INFRA}/gateway-with-one-attached-route"
TWO = f"{INFRA}/gateway-with-two-attached-routes"
ALLOWED = ("{kinds: [{kind: HTTPRoute}], namespaces: {from: Selector, selector: "
           "{matchLabels: {kubernetes.io/metadata.name: gateway-conformance-infra}}}}")
MANIFESTS = f"""
apiVersion: gateway.networking.k8s.io/v1
kind: Gateway
metadata: {{name: gateway-with-one-attached-route, namespace: gateway-conformance-infra}}
spec:
  gatewayClassName: kthena-router
  listeners:
  - {{name: http, port: ${{PORT:one-attached}}, protocol: HTTP, allowedRoutes: {ALLOWED}}}
---
apiVersion: gateway.networking.k8s.io/v1
kind: Gateway
metadata: {{name: gateway-with-two-attached-routes, namespace: gateway-conformance-infra}}
spec:
  gatewayClassName: kthena-router
  listeners:
  - {{name: http, port: ${{PORT:two-attached}}, protocol: HTTP, hostname: foo.example.com,
     allowedRoutes: {ALLOWED}}}
""" + """
---
apiVersion: gateway.networking.k8s.io/v1
kind: HTTPRoute
metadata: {name: http-route-1, namespace: gateway-conformance-infra}
spec:
  parentRefs: [{kind: Gateway, name: gateway-with-one-attached-route, namespace: gateway-conformance-infra}]
  rules:
  - backendRefs: [{group: inference.networking.k8s.io, kind: InferencePool, name: infra-backend-v1}]
---
apiVersion: gateway.networking.k8s.io/v1
kind: HTTPRoute
metadata: {name: http-route-2, namespace: gateway-conformance-infra}
spec:
  parentRefs: [{kind: Gateway, name: gateway-with-two-attached-routes, namespace: gateway-conformance-infra}]
  rules:
  - backendRefs: [{group: inference.networking.k8s.io, kind: InferencePool, name: infra-backend-v1}]
---
apiVersion: gateway.networking.k8s.io/v1
kind: HTTPRoute
metadata: {name: http-route-3, namespace: gateway-conformance-infra}
spec:
  parentRefs: [{kind: Gateway, name: gateway-with-two-attached-routes, namespace: gateway-conformance-infra}]
  rules:
  - backendRefs: [{group: inference.networking.k8s.io, kind: InferencePool, name: infra-backend-v1}]
---
apiVersion: gateway.networking.k8s.io/v1
kind: HTTPRoute
metadata: {name: http-route-not-accepted, namespace: gateway-conformance-infra}
spec:
  hostnames: [not-accepted.test.com]
  parentRefs: [{kind: Gateway, name: gateway-with-two-attached-routes, namespace: gateway-conformance-infra}]
  rules:
  - backendRefs: [{group: inference.networking.k8s.io, kind: InferencePool, name: infra-backend-v1}]
"""


def _listener(conf, gateway: str) -> dict:
    (listener,) = conf.gateway_status(gateway)["listeners"]
    return listener


async def test_listeners_count_the_routes_attached_to_them(gateway_api):
    await gateway_api.start(gateway_api_base(), {"attached.yaml": MANIFESTS})
    for gateway, count in ((ONE, 1), (TWO, 2)):
        listener = _listener(gateway_api, gateway)
        assert listener["name"] == "http"
        states = {c["type"]: c["status"] for c in listener["conditions"]}
        assert states["Accepted"] == "True" and states["ResolvedRefs"] == "True"
        assert listener["supportedKinds"] == [{"group": "gateway.networking.k8s.io", "kind": "HTTPRoute"}]
        assert listener["attachedRoutes"] == count, (gateway, listener)
    got = route_conditions(gateway_api, f"{INFRA}/http-route-not-accepted", TWO)
    assert got["Accepted"] == ("False", "NoMatchingListenerHostname")
