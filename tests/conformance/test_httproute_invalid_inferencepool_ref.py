"""Inference extension `HTTPRouteInvalidInferencePoolRef`: a route to a missing pool is Accepted with
ResolvedRefs=False/BackendNotFound."""

from __future__ import annotations

from tests.conformance.suite import GAIE_APP, GAIE_INFRA, gaie_base, route_conditions

GW = f"{GAIE_INFRA}/conformance-primary"
ROUTE = """
apiVersion: gateway.networking.k8s.io/v1
kind: HTTPRoute
metadata: {name: httproute-to-non-existent-pool, namespace: inference-conformance-app-backend}
spec:
  parentRefs: [{name: conformance-primary, namespace: inference-conformance-infra}]
  rules:
  - matches: [{path: {type: PathPrefix, value: /test-non-existent-pool}}]
    backendRefs: [{group: inference.networking.k8s.io, kind: InferencePool, name: non-existent-inference-pool}]
"""


async def test_route_to_missing_pool_is_accepted_with_backend_not_found(gaie):
    await gaie.start(gaie_base(), {"route.yaml": ROUTE})
    got = route_conditions(gaie, f"{GAIE_APP}/httproute-to-non-existent-pool", GW)
    assert got["Accepted"] == ("True", "Accepted")
    assert got["ResolvedRefs"] == ("False", "BackendNotFound")
