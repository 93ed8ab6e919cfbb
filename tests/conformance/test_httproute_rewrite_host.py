"""Gateway API `HTTPRouteRewriteHost`: URLRewrite sets the Host the backend sees, alone or with a request
header modifier.

Services infra-backend-v1/v2 are InferencePools of the same names (the router routes only to pools).
"""

from __future__ import annotations

from tests.conformance.suite import INFRA, assert_route_accepted_and_resolved, gateway_api_base

GW = f"{INFRA}/same-namespace"
ROUTE = """
apiVersion: gateway.networking.k8s.io/v1
kind: HTTPRoute
metadata: {name: rewrite-host, namespace: gateway-conformance-infra}
spec:
  parentRefs: [{name: same-namespace}]
  hostnames: [rewrite.example]
  rules:
  - matches: [{path: {type: PathPrefix, value: /one}}]
    filters: [{type: URLRewrite, urlRewrite: {hostname: one.example.org}}]
    backendRefs: [{group: inference.networking.k8s.io, kind: InferencePool, name: infra-backend-v1}]
  - filters: [{type: URLRewrite, urlRewrite: {hostname: example.org}}]
    backendRefs: [{group: inference.networking.k8s.io, kind: InferencePool, name: infra-backend-v2}]
  - matches: [{path: {type: PathPrefix, value: /rewrite-host-and-modify-headers}}]
    filters:
    - {type: URLRewrite, urlRewrite: {hostname: test.example.org}}
    - {type: RequestHeaderModifier, requestHeaderModifier: {
       set: [{name: X-Header-Set, value: set-overwrites-values}],
       add: [{name: X-Header-Add, value: header-val-1}, {name: X-Header-Add-Append, value: header-val-2}],
       remove: [X-Header-Remove]}}
    backendRefs: [{group: inference.networking.k8s.io, kind: InferencePool, name: infra-backend-v2}]
"""


async def test_backend_sees_the_rewritten_host(gateway_api):
    await gateway_api.start(gateway_api_base(), {"route.yaml": ROUTE})
    assert_route_accepted_and_resolved(gateway_api, f"{INFRA}/rewrite-host", GW)
    for path, host, backend in (("/one", "one.example.org", "infra-backend-v1"),
                                ("/two", "example.org", "infra-backend-v2")):
        reply = await gateway_api.request(GW, path, host="rewrite.example")
        assert reply.status == 200 and reply.backend == backend, (path, reply.status)
        assert reply.echo["host"] == host and reply.echo["path"] == path
    reply = await gateway_api.request(GW, "/rewrite-host-and-modify-headers", host="rewrite.example",
                                      headers={"X-Header-Remove": "remove-val", "X-Header-Add-Append": "append-val-1"})
    assert reply.status == 200 and reply.backend == "infra-backend-v2"
    assert reply.echo["host"] == "test.example.org"
    assert reply.header("X-Header-Add") == ["header-val-1"]
    assert ",".join(reply.header("X-Header-Add-Append")) == "append-val-1,header-val-2"
    assert reply.header("X-Header-Set") == ["set-overwrites-values"]
    assert reply.header("X-Header-Remove") == []
