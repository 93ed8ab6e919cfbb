"""Gateway API `HTTPRouteNoBackendRefs` (`httproute-omitted-backendrefs`): a rule without backendRefs is
accepted and answers 500."""

from __future__ import annotations

from tests.conformance.suite import INFRA, expect, gateway_api_base, route_conditions

GW = f"{INFRA}/same-namespace"
ROUTE = """
apiVersion: gateway.networking.k8s.io/v1
kind: HTTPRoute
metadata: {name: no-backendrefs, namespace: gateway-conformance-infra}
spec:
  parentRefs: [{name: same-namespace}]
  rules:
  - matches: [{path: {type: PathPrefix, value: /}}]
"""


async def test_rule_without_backends_answers_500(gateway_api):
    await gateway_api.start(gateway_api_base(), {"route.yaml": ROUTE})
    got = route_conditions(gateway_api, f"{INFRA}/no-backendrefs", GW)
    assert got["Accepted"] == ("True", "Accepted")
    await expect(gateway_api, GW, [({"path": "/"}, 500)])
