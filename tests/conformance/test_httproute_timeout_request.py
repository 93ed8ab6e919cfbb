"""Gateway API `HTTPRouteTimeoutRequest`: `timeouts.request: 500ms` answers 504 when the backend takes 1s.

Service infra-backend-v1 is an InferencePool of that name (the router routes only to pools).
"""

from __future__ import annotations

from tests.conformance.suite import INFRA, assert_route_accepted_and_resolved, expect, gateway_api_base

GW = f"{INFRA}/same-namespace"
ROUTE = """
apiVersion: gateway.networking.k8s.io/v1
kind: HTTPRoute
metadata: {name: request-timeout, namespace: gateway-conformance-infra}
spec:
  parentRefs: [{name: same-namespace}]
  rules:
  - matches: [{path: {type: Exact, value: /request-timeout}}]
    backendRefs: [{group: inference.networking.k8s.io, kind: InferencePool, name: infra-backend-v1}]
    timeouts: {request: 500ms}
  - matches: [{path: {type: Exact, value: /disable-request-timeout}}]
    backendRefs: [{group: inference.networking.k8s.io, kind: InferencePool, name: infra-backend-v1}]
    timeouts: {request: 0s}
"""


async def test_slow_backend_past_the_request_timeout_gets_504(gateway_api):
    await gateway_api.start(gateway_api_base(), {"route.yaml": ROUTE})
    assert_route_accepted_and_resolved(gateway_api, f"{INFRA}/request-timeout", GW)
    await expect(gateway_api, GW, [
        ({"path": "/request-timeout?delay=1s"}, 504),
        ({"path": "/request-timeout"}, "infra-backend-v1"),
        ({"path": "/disable-request-timeout?delay=1s"}, "infra-backend-v1"),
    ])
