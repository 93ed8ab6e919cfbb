"""Gateway API `GatewayClassObservedGenerationBump`: after a spec change (the description), every condition
of a GatewayClass of this controller carries the new generation.

The API server bumps `metadata.generation` on a spec change; in a manifest directory the manifest states it.
"""

from __future__ import annotations

from tests.conformance.suite import CONTROLLER, gateway_api_base

NAME = "gatewayclass-observed-generation-bump"
GATEWAY_CLASS = f"""
apiVersion: gateway.networking.k8s.io/v1
kind: GatewayClass
metadata: {{name: {NAME}, generation: GENERATION}}
spec:
  controllerName: {CONTROLLER}
  description: DESCRIPTION
"""


def _generations(conf) -> set[int]:
    status = conf.statuses["gatewayclasses"].get(NAME)
    return {c["observedGeneration"] for c in status["conditions"]} if status else set()


async def test_conditions_follow_the_new_generation(gateway_api):
    first = GATEWAY_CLASS.replace("GENERATION", "1").replace("DESCRIPTION", "old")
    await gateway_api.start(gateway_api_base(), {"class.yaml": first})
    assert _generations(gateway_api) == {1}
    second = GATEWAY_CLASS.replace("GENERATION", "2").replace("DESCRIPTION", "new")
    await gateway_api.apply("class.yaml", second)
    await gateway_api.eventually(lambda: _generations(gateway_api) == {2})
