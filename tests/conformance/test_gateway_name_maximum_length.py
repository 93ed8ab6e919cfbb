"""Gateway API `GatewayNameMaximumLength`: a Gateway whose name has the maximum 253 characters is
reconciled like any other (Accepted and Programmed)."""

from __future__ import annotations

from tests.conformance.suite import INFRA, condition, gateway_api_base

NAME = "gateway-name-maximum-length-" + "a" * (253 - len("gateway-name-maximum-length-"))
MANIFEST = f"""
apiVersion: gateway.networking.k8s.io/v1
kind: Gateway
metadata: {{name: {NAME}, namespace: gateway-conformance-infra}}
spec:
  gatewayClassName: kthena-router
  listeners:
  - {{name: http, port: ${{PORT:long-name}}, protocol: HTTP}}
"""


async def test_gateway_with_a_253_character_name_is_accepted_and_programmed(gateway_api):
    assert len(NAME) == 253
    await gateway_api.start(gateway_api_base(), {"gateway.yaml": MANIFEST})
    status = gateway_api.gateway_status(f"{INFRA}/{NAME}")
    assert condition(status, "Accepted") == ("True", "Accepted")
    assert condition(status, "Programmed") == ("True", "Programmed")
