"""Gateway API `GatewayObservedGenerationBump`: after a listener is added, every condition of the Gateway and
of its listeners carries the new generation.

The API server bumps `metadata.generation` on a spec change; in a manifest directory the manifest states it.
"""

from __future__ import annotations

from tests.conformance.suite import INFRA, gateway_api_base

GW = f"{INFRA}/gateway-observed-generation-bump"
GATEWAY = """
apiVersion: gateway.networking.k8s.io/v1
kind: Gateway
metadata: {name: gateway-observed-generation-bump, namespace: gateway-conformance-infra, generation: GENERATION}
spec:
  gatewayClassName: kthena-router
  listeners:
  - {name: http, hostname: bar.com, port: ${PORT:generation-bump}, protocol: HTTP,
     allowedRoutes: {namespaces: {from: All}}}
"""
ALTERNATE = "  - {name: alternate, hostname: foo.com, port: ${PORT:generation-bump}, protocol: HTTP}\n"


def _generations(conf) -> set[int]:
    status = conf.statuses["gateways"].get(GW)
    if status is None:
        return set()
    found = {c["observedGeneration"] for c in status["conditions"]}
    for listener in status["listeners"]:
        found |= {c["observedGeneration"] for c in listener["conditions"]}
    return found


async def test_conditions_follow_the_new_generation(gateway_api):
    await gateway_api.start(gateway_api_base(), {"gateway.yaml": GATEWAY.replace("GENERATION", "1")})
    assert _generations(gateway_api) == {1}
    await gateway_api.apply("gateway.yaml", GATEWAY.replace("GENERATION", "2") + ALTERNATE)
    await gateway_api.eventually(lambda: _generations(gateway_api) == {2})
    names = [listener["name"] for listener in gateway_api.gateway_status(GW)["listeners"]]
    assert names == ["http", "alternate"]
