"""Gateway API `HTTPRouteObservedGenerationBump`: after a spec change, every condition of the route's status
carries the new generation.

The API server bumps `metadata.generation` on a spec change; in a manifest directory the manifest states it.
Services infra-backend-v1/v2 are InferencePools of the same names (the router routes only to pools).
"""

from __future__ import annotations

from tests.conformance.suite import INFRA, expect, gateway_api_base

GW = f"{INFRA}/same-namespace"
ROUTE = """
apiVersion: gateway.networking.k8s.io/v1
kind: HTTPRoute
metadata: {name: observed-generation-bump, namespace: gateway-conformance-infra, generation: GENERATION}
spec:
  parentRefs: [{name: same-namespace}]
  rules:
  - backendRefs: [{group: inference.networking.k8s.io, kind: InferencePool, name: BACKEND}]
"""


def _generations(conf) -> set[int]:
    parent = conf.route_parent(f"{INFRA}/observed-generation-bump", GW)
    return {c["observedGeneration"] for c in parent["conditions"]} if parent else set()


async def test_conditions_follow_the_new_generation(gateway_api):
    first = ROUTE.replace("GENERATION", "1").replace("BACKEND", "infra-backend-v1")
    await gateway_api.start(gateway_api_base(), {"route.yaml": first})
    assert _generations(gateway_api) == {1}
    second = ROUTE.replace("GENERATION", "2").replace("BACKEND", "infra-backend-v2")
    await gateway_api.apply("route.yaml", second)
    await gateway_api.eventually(lambda: _generations(gateway_api) == {2})
    await expect(gateway_api, GW, [({"path": "/"}, "infra-backend-v2")])
