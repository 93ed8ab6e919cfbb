"""Gateway API `HTTPRoute303Redirect`: RequestRedirect with statusCode 303."""

from __future__ import annotations

from tests.conformance.suite import INFRA, assert_redirect, gateway_api_base

GW = f"{INFRA}/same-namespace"
ROUTE = """
apiVersion: gateway.networking.k8s.io/v1
kind: HTTPRoute
metadata: {name: redirect-303, namespace: gateway-conformance-infra}
spec:
  parentRefs: [{name: same-namespace}]
  rules:
  - matches: [{path: {type: PathPrefix, value: /see-other}}]
    filters: [{type: RequestRedirect, requestRedirect: {statusCode: 303}}]
"""


async def test_redirect_uses_status_303(gateway_api):
    await gateway_api.start(gateway_api_base(), {"route.yaml": ROUTE})
    reply = await gateway_api.request(GW, "/see-other")
    assert_redirect(reply, 303, port=gateway_api.listener_port(GW), path="/see-other")
