"""Gateway API `HTTPRoute308Redirect`: RequestRedirect with statusCode 308."""

from __future__ import annotations

from tests.conformance.suite import INFRA, assert_redirect, gateway_api_base

GW = f"{INFRA}/same-namespace"
ROUTE = """
apiVersion: gateway.networking.k8s.io/v1
kind: HTTPRoute
metadata: {name: redirect-308, namespace: gateway-conformance-infra}
spec:
  parentRefs: [{name: same-namespace}]
  rules:
  - matches: [{path: {type: PathPrefix, value: /permanent}}]
    filters: [{type: RequestRedirect, requestRedirect: {statusCode: 308}}]
"""


async def test_redirect_uses_status_308(gateway_api):
    await gateway_api.start(gateway_api_base(), {"route.yaml": ROUTE})
    reply = await gateway_api.request(GW, "/permanent")
    assert_redirect(reply, 308, port=gateway_api.listener_port(GW), path="/permanent")
