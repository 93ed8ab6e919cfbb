"""Gateway API `HTTPRouteBackendURLRewrite`: a URLRewrite filter on a backendRef rewrites the full path or
the matched prefix before forwarding to that backend.

Service infra-backend-v1 is an InferencePool of that name (the router routes only to pools).
"""

from __future__ import annotations

import pytest

from tests.conformance.suite import INFRA, gateway_api_base

GW = f"{INFRA}/same-namespace"
ROUTE = """
apiVersion: gateway.networking.k8s.io/v1
kind: HTTPRoute
metadata: {name: backend-url-rewrite, namespace: gateway-conformance-infra}
spec:
  parentRefs: [{name: same-namespace}]
  rules:
  - matches: [{path: {type: PathPrefix, value: /full}}]
    backendRefs:
    - {group: inference.networking.k8s.io, kind: InferencePool, name: infra-backend-v1, filters: [{type: URLRewrite,
        urlRewrite: {path: {type: ReplaceFullPath, replaceFullPath: /rewritten-full}}}]}
  - matches: [{path: {type: PathPrefix, value: /prefix}}]
    backendRefs:
    - {group: inference.networking.k8s.io, kind: InferencePool, name: infra-backend-v1, filters: [{type: URLRewrite,
        urlRewrite: {path: {type: ReplacePrefixMatch, replacePrefixMatch: /rewritten-prefix}}}]}
"""


@pytest.mark.xfail(strict=True, reason="URLRewrite on a backendRef is not implemented: the route is "
                                       "Accepted=False/UnsupportedValue and its paths answer 404")
async def test_backend_ref_rewrite_changes_the_forwarded_path(gateway_api):
    await gateway_api.start(gateway_api_base(), {"route.yaml": ROUTE})
    for path, forwarded in (("/full/original", "/rewritten-full"), ("/prefix/original", "/rewritten-prefix/original")):
        reply = await gateway_api.request(GW, path)
        assert reply.status == 200 and reply.backend == "infra-backend-v1", (path, reply.status, reply.text[:200])
        assert reply.echo["path"] == forwarded, (path, reply.echo["path"])
