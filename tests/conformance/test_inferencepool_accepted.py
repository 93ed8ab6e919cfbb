"""Inference extension `InferencePoolAccepted`: a pool referenced by a route on a Gateway gets that Gateway
as a parent with Accepted=True."""

from __future__ import annotations

from tests.conformance.suite import GAIE_APP, GAIE_INFRA, gaie_base, pool_conditions

GW = f"{GAIE_INFRA}/conformance-primary"
ROUTE = """
apiVersion: gateway.networking.k8s.io/v1
kind: HTTPRoute
metadata: {name: httproute-for-inferencepool-accepted, namespace: inference-conformance-app-backend}
spec:
  parentRefs: [{name: conformance-primary, namespace: inference-conformance-infra}]
  rules:
  - matches: [{path: {type: PathPrefix, value: /accepted-pool-test}}]
    backendRefs: [{group: inference.networking.k8s.io, kind: InferencePool, name: primary-inference-pool}]
"""


async def test_referenced_pool_is_accepted_by_the_gateway(gaie):
    await gaie.start(gaie_base(), {"route.yaml": ROUTE})
    parent = gaie.pool_parent(f"{GAIE_APP}/primary-inference-pool", GW)
    assert parent is not None and parent["parentRef"]["kind"] == "Gateway"
    assert pool_conditions(gaie, f"{GAIE_APP}/primary-inference-pool", GW)["Accepted"][0] == "True"
