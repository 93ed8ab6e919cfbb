"""Gateway API `HTTPRouteRewritePath`: URLRewrite replaces the matched prefix (including with `/`) or the
full path before forwarding, and combines with a request header modifier.

Service infra-backend-v1 is an InferencePool of that name (the router routes only to pools).
"""

from __future__ import annotations

from tests.conformance.suite import INFRA, assert_route_accepted_and_resolved, gateway_api_base

GW = f"{INFRA}/same-namespace"
MODIFY = ("{type: RequestHeaderModifier, requestHeaderModifier: {set: [{name: X-Header-Set, "
          "value: set-overwrites-values}], add: [{name: X-Header-Add, value: header-val-1}, "
          "{name: X-Header-Add-Append, value: header-val-2}], remove: [X-Header-Remove]}}")
ROUTE = f"""
apiVersion: gateway.networking.k8s.io/v1
kind: HTTPRoute
metadata: {{name: rewrite-path, namespace: gateway-conformance-infra}}
spec:
  parentRefs: [{{name: same-namespace}}]
  rules:
  - matches: [{{path: {{type: PathPrefix, value: /prefix/one}}}}]
    filters: [{{type: URLRewrite, urlRewrite: {{path: {{type: ReplacePrefixMatch, replacePrefixMatch: /one}}}}}}]
    backendRefs: [{{group: inference.networking.k8s.io, kind: InferencePool, name: infra-backend-v1}}]
  - matches: [{{path: {{type: PathPrefix, value: /strip-prefix}}}}]
    filters: [{{type: URLRewrite, urlRewrite: {{path: {{type: ReplacePrefixMatch, replacePrefixMatch: /}}}}}}]
    backendRefs: [{{group: inference.networking.k8s.io, kind: InferencePool, name: infra-backend-v1}}]
  - matches: [{{path: {{type: PathPrefix, value: /full/one}}}}]
    filters: [{{type: URLRewrite, urlRewrite: {{path: {{type: ReplaceFullPath, replaceFullPath: /one}}}}}}]
    backendRefs: [{{group: inference.networking.k8s.io, kind: InferencePool, name: infra-backend-v1}}]
  - matches: [{{path: {{type: PathPrefix, value: /full/rewrite-path-and-modify-headers}}}}]
    filters:
    - {{type: URLRewrite, urlRewrite: {{path: {{type: ReplaceFullPath, replaceFullPath: /test}}}}}}
    - {MODIFY}
    backendRefs: [{{group: inference.networking.k8s.io, kind: InferencePool, name: infra-backend-v1}}]
  - matches: [{{path: {{type: PathPrefix, value: /prefix/rewrite-path-and-modify-headers}}}}]
    filters:
    - {{type: URLRewrite, urlRewrite: {{path: {{type: ReplacePrefixMatch, replacePrefixMatch: /prefix}}}}}}
    - {MODIFY}
    backendRefs: [{{group: inference.networking.k8s.io, kind: InferencePool, name: infra-backend-v1}}]
"""
SENT = {"X-Header-Remove": "remove-val", "X-Header-Add-Append": "append-val-1", "X-Header-Set": "set-val"}


async def test_paths_are_rewritten_before_forwarding(gateway_api):
    await gateway_api.start(gateway_api_base(), {"route.yaml": ROUTE})
    assert_route_accepted_and_resolved(gateway_api, f"{INFRA}/rewrite-path", GW)
    for path, forwarded in (("/prefix/one/two", "/one/two"), ("/strip-prefix/three", "/three"),
                            ("/strip-prefix", "/"), ("/full/one/two", "/one")):
        reply = await gateway_api.request(GW, path)
        assert reply.status == 200 and reply.echo["path"] == forwarded, (path, reply.status, reply.text[:200])


async def test_rewrite_combines_with_header_modifier(gateway_api):
    await gateway_api.start(gateway_api_base(), {"route.yaml": ROUTE})
    for path, forwarded in (("/full/rewrite-path-and-modify-headers/test", "/test"),
                            ("/prefix/rewrite-path-and-modify-headers/one", "/prefix/one")):
        reply = await gateway_api.request(GW, path, headers=SENT)
        assert reply.status == 200 and reply.echo["path"] == forwarded, (path, reply.echo)
        assert reply.header("X-Header-Add") == ["header-val-1"]
        assert ",".join(reply.header("X-Header-Add-Append")) == "append-val-1,header-val-2"
        assert reply.header("X-Header-Set") == ["set-overwrites-values"]
        assert reply.header("X-Header-Remove") == []
