"""Gateway API `HTTPRouteRedirectScheme`: RequestRedirect to https drops the port (its well-known one),
alone or with a hostname or status code."""

from __future__ import annotations

from tests.conformance.suite import INFRA, assert_redirect, gateway_api_base

GW = f"{INFRA}/same-namespace"
ROUTE = """
apiVersion: gateway.networking.k8s.io/v1
kind: HTTPRoute
metadata: {name: redirect-scheme, namespace: gateway-conformance-infra}
spec:
  parentRefs: [{name: same-namespace}]
  rules:
  - matches: [{path: {type: PathPrefix, value: /scheme}}]
    filters: [{type: RequestRedirect, requestRedirect: {scheme: https}}]
  - matches: [{path: {type: PathPrefix, value: /scheme-and-host}}]
    filters: [{type: RequestRedirect, requestRedirect: {hostname: example.org, scheme: https}}]
  - matches: [{path: {type: PathPrefix, value: /scheme-and-status}}]
    filters: [{type: RequestRedirect, requestRedirect: {scheme: https, statusCode: 301}}]
  - matches: [{path: {type: PathPrefix, value: /scheme-and-host-and-status}}]
    filters: [{type: RequestRedirect, requestRedirect: {scheme: https, statusCode: 302, hostname: example.org}}]
"""


async def test_redirects_switch_to_https(gateway_api):
    await gateway_api.start(gateway_api_base(), {"route.yaml": ROUTE})
    for path, status, host in (("/scheme", 302, None), ("/scheme-and-host", 302, "example.org"),
                               ("/scheme-and-status", 301, None), ("/scheme-and-host-and-status", 302, "example.org")):
        reply = await gateway_api.request(GW, path)
        assert_redirect(reply, status, scheme="https", host=host, port=None, path=path)
