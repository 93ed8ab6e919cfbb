"""Inference extension `GatewayDestinationEndpointServed`: for each pod, a request selecting it is served by
it, and the response names it in `x-conformance-test-served-endpoint` as ip:port."""

from __future__ import annotations

from tests.conformance.suite import (
    GAIE_BACKENDS,
    GAIE_BODY,
    GAIE_INFRA,
    SELECTION_HEADER,
    SERVED_HEADER,
    backend_by_name,
    gaie_base,
)

GW = f"{GAIE_INFRA}/conformance-primary"
ROUTE = """
apiVersion: gateway.networking.k8s.io/v1
kind: HTTPRoute
metadata: {name: httproute-for-destination-endpoint-served, namespace: inference-conformance-app-backend}
spec:
  parentRefs: [{name: conformance-primary, namespace: inference-conformance-infra}]
  hostnames: [primary.example.com]
  rules:
  - matches: [{path: {type: PathPrefix, value: /destination-endpoint-served-test}}]
    backendRefs: [{group: inference.networking.k8s.io, kind: InferencePool, name: primary-inference-pool}]
"""


async def test_served_endpoint_header_names_the_selected_pod(gaie):
    await gaie.start(gaie_base(), {"route.yaml": ROUTE}, conformance_test_mode=True)
    pool = backend_by_name(GAIE_BACKENDS, "primary-inference-pool")
    port = gaie.port(pool.ports[0])
    for ip in pool.ips:
        reply = await gaie.request(GW, "/destination-endpoint-served-test", host="primary.example.com",
                                   method="POST", json=GAIE_BODY,
                                   headers={SELECTION_HEADER: ip})
        assert reply.status == 200 and reply.pod == pool.pod_name(ip)
        assert reply.headers[SERVED_HEADER] == f"{ip}:{port}"


async def test_without_the_test_mode_the_header_is_neither_honoured_nor_reported(gaie):
    await gaie.start(gaie_base(), {"route.yaml": ROUTE})
    pool = backend_by_name(GAIE_BACKENDS, "primary-inference-pool")
    pods = set()
    for _ in range(30):
        reply = await gaie.request(GW, "/destination-endpoint-served-test", host="primary.example.com",
                                   method="POST", json=GAIE_BODY,
                                   headers={SELECTION_HEADER: pool.ips[0]})
        assert reply.status == 200 and SERVED_HEADER not in reply.headers
        pods.add(reply.pod)
    assert len(pods) > 1
