"""Gateway API `HTTPRouteRedirectPath`: RequestRedirect replaces the matched prefix or the full path, alone
or with a hostname or status code."""

from __future__ import annotations

from tests.conformance.suite import INFRA, assert_redirect, gateway_api_base

GW = f"{INFRA}/same-namespace"
ROUTE = """
apiVersion: gateway.networking.k8s.io/v1
kind: HTTPRoute
metadata: {name: redirect-path, namespace: gateway-conformance-infra}
spec:
  parentRefs: [{name: same-namespace}]
  rules:
  - matches: [{path: {type: PathPrefix, value: /original-prefix}}]
    filters: [{type: RequestRedirect, requestRedirect: {path: {type: ReplacePrefixMatch,
                                                               replacePrefixMatch: /replacement-prefix}}}]
  - matches: [{path: {type: PathPrefix, value: /full}}]
    filters: [{type: RequestRedirect, requestRedirect: {path: {type: ReplaceFullPath,
                                                               replaceFullPath: /full-path-replacement}}}]
  - matches: [{path: {type: PathPrefix, value: /path-and-host}}]
    filters: [{type: RequestRedirect, requestRedirect: {hostname: example.org, path: {
               type: ReplacePrefixMatch, replacePrefixMatch: /replacement-prefix}}}]
  - matches: [{path: {type: PathPrefix, value: /path-and-status}}]
    filters: [{type: RequestRedirect, requestRedirect: {statusCode: 301, path: {
               type: ReplacePrefixMatch, replacePrefixMatch: /replacement-prefix}}}]
  - matches: [{path: {type: PathPrefix, value: /full-path-and-host}}]
    filters: [{type: RequestRedirect, requestRedirect: {hostname: example.org, path: {
               type: ReplaceFullPath, replaceFullPath: /replacement-full}}}]
  - matches: [{path: {type: PathPrefix, value: /full-path-and-status}}]
    filters: [{type: RequestRedirect, requestRedirect: {statusCode: 301, path: {
               type: ReplaceFullPath, replaceFullPath: /replacement-full}}}]
"""


async def test_redirects_rewrite_the_path(gateway_api):
    await gateway_api.start(gateway_api_base(), {"route.yaml": ROUTE})
    port = gateway_api.listener_port(GW)
    cases = [
        ("/original-prefix/lemon", 302, None, "/replacement-prefix/lemon"),
        ("/full/path/original", 302, None, "/full-path-replacement"),
        ("/path-and-host", 302, "example.org", "/replacement-prefix"),
        ("/path-and-status", 301, None, "/replacement-prefix"),
        ("/full-path-and-host", 302, "example.org", "/replacement-full"),
        ("/full-path-and-status", 301, None, "/replacement-full"),
    ]
    for path, status, host, new_path in cases:
        reply = await gateway_api.request(GW, path)
        assert_redirect(reply, status, host=host, port=port, path=new_path)
