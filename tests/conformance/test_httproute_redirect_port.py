"""Gateway API `HTTPRouteRedirectPort`: RequestRedirect sets the Location port, alone or with a hostname
or status code."""

from __future__ import annotations

from tests.conformance.suite import INFRA, assert_redirect, gateway_api_base

GW = f"{INFRA}/same-namespace"
ROUTE = """
apiVersion: gateway.networking.k8s.io/v1
kind: HTTPRoute
metadata: {name: redirect-port, namespace: gateway-conformance-infra}
spec:
  parentRefs: [{name: same-namespace}]
  rules:
  - matches: [{path: {type: PathPrefix, value: /port}}]
    filters: [{type: RequestRedirect, requestRedirect: {port: 8083}}]
  - matches: [{path: {type: PathPrefix, value: /port-and-host}}]
    filters: [{type: RequestRedirect, requestRedirect: {hostname: example.org, port: 8083}}]
  - matches: [{path: {type: PathPrefix, value: /port-and-status}}]
    filters: [{type: RequestRedirect, requestRedirect: {port: 8083, statusCode: 301}}]
  - matches: [{path: {type: PathPrefix, value: /port-and-host-and-status}}]
    filters: [{type: RequestRedirect, requestRedirect: {port: 8083, hostname: example.org, statusCode: 302}}]
"""


async def test_redirects_carry_the_new_port(gateway_api):
    await gateway_api.start(gateway_api_base(), {"route.yaml": ROUTE})
    for path, status, host in (("/port", 302, None), ("/port-and-host", 302, "example.org"),
                               ("/port-and-status", 301, None), ("/port-and-host-and-status", 302, "example.org")):
        reply = await gateway_api.request(GW, path)
        assert_redirect(reply, status, host=host, port=8083, path=path)
