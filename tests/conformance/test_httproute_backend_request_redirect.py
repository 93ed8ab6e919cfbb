"""Gateway API `HTTPRouteBackendRequestRedirect`: a RequestRedirect filter on a backendRef answers with a
redirect to the replaced full path or prefix.

Service infra-backend-v1 is an InferencePool of that name (the router routes only to pools).
"""

from __future__ import annotations

import pytest

from tests.conformance.suite import INFRA, assert_redirect, gateway_api_base

GW = f"{INFRA}/same-namespace"
ROUTE = """
apiVersion: gateway.networking.k8s.io/v1
kind: HTTPRoute
metadata: {name: backend-request-redirect, namespace: gateway-conformance-infra}
spec:
  parentRefs: [{name: same-namespace}]
  rules:
  - matches: [{path: {type: PathPrefix, value: /full}}]
    backendRefs:
    - {group: inference.networking.k8s.io, kind: InferencePool, name: infra-backend-v1, filters: [{type: RequestRedirect,
        requestRedirect: {path: {type: ReplaceFullPath, replaceFullPath: /redirected-full}}}]}
  - matches: [{path: {type: PathPrefix, value: /prefix}}]
    backendRefs:
    - {group: inference.networking.k8s.io, kind: InferencePool, name: infra-backend-v1, filters: [{type: RequestRedirect,
        requestRedirect: {path: {type: ReplacePrefixMatch, replacePrefixMatch: /redirected-prefix}}}]}
"""


@pytest.mark.xfail(strict=True, reason="RequestRedirect on a backendRef is not implemented: the route is "
                                       "Accepted=False/UnsupportedValue and its paths answer 404")
async def test_backend_ref_redirect_answers_302(gateway_api):
    await gateway_api.start(gateway_api_base(), {"route.yaml": ROUTE})
    port = gateway_api.listener_port(GW)
    for path, target in (("/full/original", "/redirected-full"), ("/prefix/original", "/redirected-prefix/original")):
        reply = await gateway_api.request(GW, path)
        assert_redirect(reply, 302, port=port, path=target)
