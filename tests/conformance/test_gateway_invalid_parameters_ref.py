"""Gateway API `GatewayInvalidParametersRef`: a Gateway whose `infrastructure.parametersRef` names an
unknown kind is Accepted=False/InvalidParameters."""

from __future__ import annotations

import pytest

from tests.conformance.suite import INFRA, condition, gateway_api_base

GW = f"{INFRA}/gateway-invalid-parameters-ref"
MANIFEST = """
apiVersion: gateway.networking.k8s.io/v1
kind: Gateway
metadata: {name: gateway-invalid-parameters-ref, namespace: gateway-conformance-infra}
spec:
  gatewayClassName: kthena-router
  listeners:
  - {name: http, port: ${PORT:parameters-ref}, protocol: HTTP}
  infrastructure:
    parametersRef: {group: invalid.io, kind: InvalidParameters, name: invalid}
"""


@pytest.mark.xfail(strict=True, reason="Gateway spec.infrastructure.parametersRef is not read: the Gateway is "
                                       "Accepted=True/Accepted instead of Accepted=False/InvalidParameters")
async def test_unknown_parameters_ref_is_invalid_parameters(gateway_api):
    await gateway_api.start(gateway_api_base(), {"gateway.yaml": MANIFEST})
    assert condition(gateway_api.gateway_status(GW), "Accepted") == ("False", "InvalidParameters")
