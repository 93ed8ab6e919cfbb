"""Gateway API `HTTPRouteResponseHeaderModifier`: `set` overwrites, `add` appends and `remove` deletes
response headers the backend set, names case-insensitive; request and response modifiers on one rule.

The backend sets response headers named in `X-Echo-Set-Header`, as echo-basic does. Service
infra-backend-v1 is an InferencePool of that name (the router routes only to pools).
"""

from __future__ import annotations

from tests.conformance.suite import INFRA, assert_route_accepted_and_resolved, gateway_api_base

GW = f"{INFRA}/same-namespace"
ROUTE = """
apiVersion: gateway.networking.k8s.io/v1
kind: HTTPRoute
metadata: {name: response-header-modifier, namespace: gateway-conformance-infra}
spec:
  parentRefs: [{name: same-namespace}]
  rules:
  - matches: [{path: {type: PathPrefix, value: /set}}]
    filters: [{type: ResponseHeaderModifier, responseHeaderModifier: {
               set: [{name: X-Header-Set, value: set-overwrites-values}]}}]
    backendRefs: [{group: inference.networking.k8s.io, kind: InferencePool, name: infra-backend-v1}]
  - matches: [{path: {type: PathPrefix, value: /add}}]
    filters: [{type: ResponseHeaderModifier, responseHeaderModifier: {
               add: [{name: X-Header-Add, value: add-appends-values}]}}]
    backendRefs: [{group: inference.networking.k8s.io, kind: InferencePool, name: infra-backend-v1}]
  - matches: [{path: {type: PathPrefix, value: /remove}}]
    filters: [{type: ResponseHeaderModifier, responseHeaderModifier: {remove: [X-Header-Remove]}}]
    backendRefs: [{group: inference.networking.k8s.io, kind: InferencePool, name: infra-backend-v1}]
  - matches: [{path: {type: PathPrefix, value: /multiple}}]
    filters: [{type: ResponseHeaderModifier, responseHeaderModifier: {
               set: [{name: X-Header-Set-1, value: header-set-1}, {name: X-Header-Set-2, value: header-set-2}],
               add: [{name: X-Header-Add-1, value: header-add-1}, {name: X-Header-Add-2, value: header-add-2},
                     {name: X-Header-Add-3, value: header-add-3}],
               remove: [X-Header-Remove-1, X-Header-Remove-2]}}]
    backendRefs: [{group: inference.networking.k8s.io, kind: InferencePool, name: infra-backend-v1}]
  - matches: [{path: {type: PathPrefix, value: /case-insensitivity}}]
    filters: [{type: ResponseHeaderModifier, responseHeaderModifier: {
               set: [{name: X-Header-Set, value: header-set}],
               add: [{name: X-Header-Add, value: header-add}, {name: x-lowercase-add, value: lowercase-add},
                     {name: x-Mixedcase-ADD-1, value: mixedcase-add-1},
                     {name: X-mixeDcase-add-2, value: mixedcase-add-2},
                     {name: X-UPPERCASE-ADD, value: uppercase-add}],
               remove: [X-Header-Remove]}}]
    backendRefs: [{group: inference.networking.k8s.io, kind: InferencePool, name: infra-backend-v1}]
  - matches: [{path: {type: PathPrefix, value: /response-and-request-header-modifiers}}]
    filters:
    - {type: ResponseHeaderModifier, responseHeaderModifier: {
       set: [{name: X-Header-Set-1, value: header-set-1}, {name: X-Header-Set-2, value: header-set-2}],
       add: [{name: X-Header-Add-1, value: header-add-1}, {name: X-Header-Add-2, value: header-add-2}],
       remove: [X-Header-Remove-1, X-Header-Remove-2]}}
    - {type: RequestHeaderModifier, requestHeaderModifier: {
       set: [{name: X-Header-Set, value: set-overwrites-values}],
       add: [{name: X-Header-Add, value: header-val-1}, {name: X-Header-Add-Append, value: header-val-2}],
       remove: [X-Header-Remove]}}
    backendRefs: [{group: inference.networking.k8s.io, kind: InferencePool, name: infra-backend-v1}]
"""


def _backend_sets(headers: dict[str, str]) -> dict[str, str]:
    return {"X-Echo-Set-Header": ",".join(f"{k}:{v}" for k, v in headers.items())}


async def test_response_headers_are_set_added_and_removed(gateway_api):
    await gateway_api.start(gateway_api_base(), {"route.yaml": ROUTE})
    assert_route_accepted_and_resolved(gateway_api, f"{INFRA}/response-header-modifier", GW)
    cases = [
        ("/set", {"Some-Other-Header": "val"},
         {"Some-Other-Header": "val", "X-Header-Set": "set-overwrites-values"}, []),
        ("/set", {"Some-Other-Header": "val", "X-Header-Set": "some-other-value"},
         {"Some-Other-Header": "val", "X-Header-Set": "set-overwrites-values"}, []),
        ("/add", {"Some-Other-Header": "val"},
         {"Some-Other-Header": "val", "X-Header-Add": "add-appends-values"}, []),
        ("/add", {"Some-Other-Header": "val", "X-Header-Add": "some-other-value"},
         {"Some-Other-Header": "val", "X-Header-Add": "some-other-value,add-appends-values"}, []),
        ("/remove", {"X-Header-Remove": "val"}, {}, ["X-Header-Remove"]),
        ("/multiple", {"X-Header-Set-2": "set-val-2", "X-Header-Add-2": "add-val-2",
                       "X-Header-Remove-2": "remove-val-2", "Another-Header": "another-header-val"},
         {"X-Header-Set-1": "header-set-1", "X-Header-Set-2": "header-set-2", "X-Header-Add-1": "header-add-1",
          "X-Header-Add-2": "add-val-2,header-add-2", "X-Header-Add-3": "header-add-3",
          "Another-Header": "another-header-val"}, ["X-Header-Remove-1", "X-Header-Remove-2"]),
        ("/case-insensitivity", {"x-header-set": "original-val-set", "x-header-add": "original-val-add",
                                 "x-header-remove": "original-val-remove", "Another-Header": "another-header-val"},
         {"X-Header-Set": "header-set", "X-Header-Add": "original-val-add,header-add",
          "X-Lowercase-Add": "lowercase-add", "X-Mixedcase-Add-1": "mixedcase-add-1",
          "X-Mixedcase-Add-2": "mixedcase-add-2", "X-Uppercase-Add": "uppercase-add",
          "Another-Header": "another-header-val"}, ["x-header-remove", "X-Header-Remove"]),
    ]
    for path, backend_sets, want, absent in cases:
        reply = await gateway_api.request(GW, path, headers=_backend_sets(backend_sets))
        assert reply.status == 200 and reply.backend == "infra-backend-v1", (path, reply.status)
        for name, value in want.items():
            assert reply.response_header(name) == value, (path, name, dict(reply.headers))
        for name in absent:
            assert reply.response_header(name) is None, (path, name)


async def test_request_and_response_modifiers_on_one_rule_both_apply(gateway_api):
    await gateway_api.start(gateway_api_base(), {"route.yaml": ROUTE})
    sent = {"X-Header-Remove": "remove-val", "X-Header-Add-Append": "append-val-1", "X-Header-Echo": "echo"}
    sent.update(_backend_sets({"Another-Header": "another-header-val", "X-Header-Remove-1": "val",
                               "X-Header-Echo": "echo"}))
    reply = await gateway_api.request(GW, "/response-and-request-header-modifiers", headers=sent)
    assert reply.status == 200
    assert ",".join(reply.header("X-Header-Add")) == "header-val-1"
    assert ",".join(reply.header("X-Header-Set")) == "set-overwrites-values"
    assert ",".join(reply.header("X-Header-Add-Append")) == "append-val-1,header-val-2"
    assert reply.header("X-Header-Remove") == []
    for name, value in (("X-Header-Set-1", "header-set-1"), ("X-Header-Set-2", "header-set-2"),
                        ("X-Header-Add-1", "header-add-1"), ("X-Header-Add-2", "header-add-2"),
                        ("Another-Header", "another-header-val"), ("X-Header-Echo", "echo")):
        assert reply.response_header(name) == value, name
    assert reply.response_header("X-Header-Remove-1") is None
