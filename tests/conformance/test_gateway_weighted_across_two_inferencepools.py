"""Inference extension `GatewayWeightedAcrossTwoInferencePools`: one rule, pools weighted 70/30; the
selection header lists all six pods and each pool keeps its own; the primary share is within
max(0.10, 4.5 sigma) of 0.70 over 200 requests (5 at a time)."""

from __future__ import annotations

import asyncio
import math

from tests.conformance.suite import (
    GAIE_APP,
    GAIE_BACKENDS,
    GAIE_BODY,
    GAIE_INFRA,
    SELECTION_HEADER,
    assert_route_accepted_and_resolved,
    backend_by_name,
    gaie_base,
)

GW = f"{GAIE_INFRA}/conformance-primary"
ROUTE = """
apiVersion: gateway.networking.k8s.io/v1
kind: HTTPRoute
metadata: {name: httproute-weighted-two-pools, namespace: inference-conformance-app-backend}
spec:
  parentRefs: [{name: conformance-primary, namespace: inference-conformance-infra}]
  hostnames: [primary.example.com]
  rules:
  - matches: [{path: {type: PathPrefix, value: /weighted-two-pools-test}}]
    backendRefs:
    - {group: inference.networking.k8s.io, kind: InferencePool, name: primary-inference-pool, weight: 70}
    - {group: inference.networking.k8s.io, kind: InferencePool, name: secondary-inference-pool, weight: 30}
"""
REQUESTS = 200


async def test_traffic_splits_by_weight_within_the_selected_pods(gaie):
    await gaie.start(gaie_base(), {"route.yaml": ROUTE}, conformance_test_mode=True)
    assert_route_accepted_and_resolved(gaie, f"{GAIE_APP}/httproute-weighted-two-pools", GW)
    primary = backend_by_name(GAIE_BACKENDS, "primary-inference-pool")
    secondary = backend_by_name(GAIE_BACKENDS, "secondary-inference-pool")
    selection = ",".join(primary.ips + secondary.ips)
    limit = asyncio.Semaphore(5)

    async def one():
        async with limit:
            return await gaie.request(GW, "/weighted-two-pools-test", host="primary.example.com",
                                      method="POST", json=GAIE_BODY,
                                      headers={SELECTION_HEADER: selection})

    replies = await asyncio.gather(*(one() for _ in range(REQUESTS)))
    assert all(r.status == 200 for r in replies), [r.text for r in replies if r.status != 200][:3]
    backends = [r.backend for r in replies]
    assert set(backends) <= {primary.name, secondary.name}
    share = backends.count(primary.name) / REQUESTS
    tolerance = max(0.10, 4.5 * math.sqrt(0.7 * 0.3 / REQUESTS))
    assert abs(share - 0.70) <= tolerance, share
