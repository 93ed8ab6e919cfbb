"""Gateway API `HTTPRouteRedirectPortAndScheme`: the Location port follows the scheme: unset scheme and port
keep the listener's port, a well-known port of the scheme (80 for http, 443 for https) is left out, any
other port is kept.

Upstream runs this on listeners at 80, 8080 and 443; here the HTTP listener is on a free port, so the
"listener port" cases expect that port. The HTTPS-listener part is left out (no TLS listeners).
"""

from __future__ import annotations

from tests.conformance.suite import INFRA, assert_redirect, gateway_api_base

GW = f"{INFRA}/same-namespace"
ROUTE = """
apiVersion: gateway.networking.k8s.io/v1
kind: HTTPRoute
metadata: {name: http-listener-on-free-port, namespace: gateway-conformance-infra}
spec:
  parentRefs: [{name: same-namespace}]
  rules:
  - matches: [{path: {type: PathPrefix, value: /scheme-nil-and-port-nil}}]
    filters: [{type: RequestRedirect, requestRedirect: {hostname: example.org}}]
  - matches: [{path: {type: PathPrefix, value: /scheme-nil-and-port-80}}]
    filters: [{type: RequestRedirect, requestRedirect: {port: 80, hostname: example.org}}]
  - matches: [{path: {type: PathPrefix, value: /scheme-nil-and-port-8080}}]
    filters: [{type: RequestRedirect, requestRedirect: {port: 8080, hostname: example.org}}]
  - matches: [{path: {type: PathPrefix, value: /scheme-https-and-port-nil}}]
    filters: [{type: RequestRedirect, requestRedirect: {scheme: https, hostname: example.org}}]
  - matches: [{path: {type: PathPrefix, value: /scheme-https-and-port-443}}]
    filters: [{type: RequestRedirect, requestRedirect: {scheme: https, port: 443, hostname: example.org}}]
  - matches: [{path: {type: PathPrefix, value: /scheme-https-and-port-8443}}]
    filters: [{type: RequestRedirect, requestRedirect: {scheme: https, port: 8443, hostname: example.org}}]
"""


async def test_location_port_follows_the_scheme(gateway_api):
    await gateway_api.start(gateway_api_base(), {"route.yaml": ROUTE})
    listener_port = gateway_api.listener_port(GW)
    cases = [
        ("/scheme-nil-and-port-nil", "http", listener_port),
        ("/scheme-nil-and-port-80", "http", None),
        ("/scheme-nil-and-port-8080", "http", 8080),
        ("/scheme-https-and-port-nil", "https", None),
        ("/scheme-https-and-port-443", "https", None),
        ("/scheme-https-and-port-8443", "https", 8443),
    ]
    for path, scheme, port in cases:
        reply = await gateway_api.request(GW, path)
        assert_redirect(reply, 302, scheme=scheme, host="example.org", port=port, path=path)
