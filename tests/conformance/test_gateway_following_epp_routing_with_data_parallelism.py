"""Inference extension `GatewayFollowingEPPRoutingWithDataParallelism`: a pool with three target ports;
`test-epp-endpoint-selection` entries are an IP (any of its ports) or IP:port (that port only)."""

from __future__ import annotations

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
metadata: {name: httproute-for-primary-gw-dp, namespace: inference-conformance-app-backend}
spec:
  parentRefs: [{name: conformance-primary, namespace: inference-conformance-infra}]
  hostnames: [primary.example.com]
  rules:
  - matches: [{path: {type: PathPrefix, value: /primary-gateway-dp-test}}]
    backendRefs: [{group: inference.networking.k8s.io, kind: InferencePool, name: dp-inference-pool}]
"""


async def test_selection_by_ip_or_ip_and_port_is_followed(gaie):
    await gaie.start(gaie_base(), {"route.yaml": ROUTE}, conformance_test_mode=True)
    assert_route_accepted_and_resolved(gaie, f"{GAIE_APP}/httproute-for-primary-gw-dp", GW)
    pool = backend_by_name(GAIE_BACKENDS, "dp-inference-pool")
    ports = [gaie.port(key) for key in pool.ports]
    all_ports = {str(p) for p in ports}
    cases = [
        (pool.ips[0], {pool.ips[0]}, all_ports),
        (f"{pool.ips[0]}:{ports[1]}", {pool.ips[0]}, {str(ports[1])}),
        (f"{pool.ips[1]}:{ports[0]},{pool.ips[2]}:{ports[2]}", {pool.ips[1], pool.ips[2]},
         {str(ports[0]), str(ports[2])}),
    ]
    for selection, ips, allowed_ports in cases:
        seen_ports = set()
        for _ in range(30):
            reply = await gaie.request(GW, "/primary-gateway-dp-test", host="primary.example.com",
                                       method="POST", json=GAIE_BODY,
                                       headers={SELECTION_HEADER: selection})
            assert reply.status == 200, reply.text
            assert reply.pod in {pool.pod_name(ip) for ip in ips}, (selection, reply.pod)
            assert reply.echo["httpPort"] in allowed_ports, (selection, reply.echo["httpPort"])
            seen_ports.add(reply.echo["httpPort"])
        if selection == pool.ips[0]:
            assert len(seen_ports) > 1, "an IP-only entry should allow every target port"
