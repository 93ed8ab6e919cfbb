"""Gateway API `HTTPRouteNamedRule`: a rule may carry a `name`; named and unnamed rules both serve.

Services infra-backend-v1/v2 are InferencePools of the same names (the router routes only to pools).
"""

from __future__ import annotations

from tests.conformance.suite import INFRA, assert_route_accepted_and_resolved, expect, gateway_api_base

GW = f"{INFRA}/same-namespace"
ROUTE = """
apiVersion: gateway.networking.k8s.io/v1
kind: HTTPRoute
metadata: {name: http-named-rules, namespace: gateway-conformance-infra}
spec:
  parentRefs: [{name: same-namespace}]
  rules:
  - name: named-rule
    matches: [{path: {type: PathPrefix, value: /named}}]
    backendRefs: [{group: inference.networking.k8s.io, kind: InferencePool, name: infra-backend-v1}]
  - matches: [{path: {type: PathPrefix, value: /unnamed}}]
    backendRefs: [{group: inference.networking.k8s.io, kind: InferencePool, name: infra-backend-v2}]
"""


async def test_named_and_unnamed_rules_both_serve(gateway_api):
    await gateway_api.start(gateway_api_base(), {"route.yaml": ROUTE})
    assert_route_accepted_and_resolved(gateway_api, f"{INFRA}/http-named-rules", GW)
    await expect(gateway_api, GW, [({"path": "/named"}, "infra-backend-v1"),
                                   ({"path": "/unnamed"}, "infra-backend-v2")])
