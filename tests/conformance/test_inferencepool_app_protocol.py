"""Inference extension `InferencePoolAppProtocol`: a pool's `appProtocol` decides how the router talks to
its endpoints: `http` (and the default) HTTP/1.1, `kubernetes.io/h2c` HTTP/2 cleartext with prior
knowledge. Each pod is selected in turn with the conformance header (`ip:port`) and must answer itself.

The pods serve HTTP/1.1 on one port (echo servers) and h2c on another (a minimal HTTP/2 server, see h2c.py).
"""

from __future__ import annotations

import asyncio
import shutil

import pytest

from tests.conformance.h2c import start_h2c
from tests.conformance.suite import (
    GAIE_APP,
    GAIE_BACKENDS,
    GAIE_BODY,
    GAIE_INFRA,
    SELECTION_HEADER,
    SERVED_HEADER,
    assert_route_accepted_and_resolved,
    backend_by_name,
    gaie_base,
)

GW = f"{GAIE_INFRA}/conformance-primary"
PARENT = "parentRefs: [{name: conformance-primary, namespace: inference-conformance-infra, sectionName: http}]"
MANIFESTS = f"""
apiVersion: inference.networking.k8s.io/v1
kind: InferencePool
metadata: {{name: appprotocol-h2c-inference-pool, namespace: inference-conformance-app-backend}}
spec:
  selector: {{matchLabels: {{app: appprotocol-http-inference-pool}}}}
  targetPorts: [{{number: ${{PORT:gaie-3001}}}}]
  appProtocol: kubernetes.io/h2c
---
apiVersion: gateway.networking.k8s.io/v1
kind: HTTPRoute
metadata: {{name: httproute-for-inferencepool-appprotocol-h2c, namespace: inference-conformance-app-backend}}
spec:
  {PARENT}
  hostnames: [appprotocol-h2c.example.com]
  rules:
  - matches: [{{path: {{type: PathPrefix, value: /inferencepool-app-protocol-h2c}}}}]
    backendRefs: [{{group: inference.networking.k8s.io, kind: InferencePool, name: appprotocol-h2c-inference-pool}}]
---
apiVersion: gateway.networking.k8s.io/v1
kind: HTTPRoute
metadata: {{name: httproute-for-inferencepool-appprotocol-http, namespace: inference-conformance-app-backend}}
spec:
  {PARENT}
  hostnames: [appprotocol-http.example.com]
  rules:
  - matches: [{{path: {{type: PathPrefix, value: /inferencepool-app-protocol-http}}}}]
    backendRefs: [{{group: inference.networking.k8s.io, kind: InferencePool, name: appprotocol-http-inference-pool}}]
---
apiVersion: gateway.networking.k8s.io/v1
kind: HTTPRoute
metadata: {{name: httproute-for-inferencepool-appprotocol-default, namespace: inference-conformance-app-backend}}
spec:
  {PARENT}
  hostnames: [appprotocol-default.example.com]
  rules:
  - matches: [{{path: {{type: PathPrefix, value: /inferencepool-app-protocol-default}}}}]
    backendRefs: [{{group: inference.networking.k8s.io, kind: InferencePool, name: primary-inference-pool}}]
"""


@pytest.fixture
async def h2c_pods(gaie):
    pool = backend_by_name(GAIE_BACKENDS, "appprotocol-http-inference-pool")
    servers = [await start_h2c(ip, gaie.port("gaie-3001"), pool.pod_name(ip)) for ip in pool.ips]
    yield pool
    for server in servers:
        server.close()
        await server.wait_closed()


@pytest.mark.skipif(shutil.which("curl") is None, reason="curl is not installed")
async def test_h2c_stand_in_answers_an_http2_prior_knowledge_client_and_refuses_http1(gaie, h2c_pods):
    ip = h2c_pods.ips[0]
    url = f"http://{ip}:{gaie.port('gaie-3001')}/v1/completions"
    for args, answered in ((["--http2-prior-knowledge"], True), ([], False)):
        proc = await asyncio.create_subprocess_exec("curl", "-sS", "-o", "/dev/null", "-w", "%{http_version} %{http_code}",
                                                    *args, url, stdout=asyncio.subprocess.PIPE,
                                                    stderr=asyncio.subprocess.DEVNULL)
        out, _ = await proc.communicate()
        assert (out.decode() == "2 200") is answered, (args, out)


async def _each_pod_answers_itself(gaie, kind: str, pool_name: str, port_key: str) -> None:
    pool = backend_by_name(GAIE_BACKENDS, pool_name)
    port = gaie.port(port_key)
    for ip in pool.ips:
        reply = await gaie.request(GW, f"/inferencepool-app-protocol-{kind}", host=f"appprotocol-{kind}.example.com",
                                   method="POST", json=GAIE_BODY, headers={SELECTION_HEADER: f"{ip}:{port}"})
        assert reply.status == 200 and reply.pod == pool.pod_name(ip), (kind, ip, reply.status, reply.text[:200])
        assert reply.headers[SERVED_HEADER] == f"{ip}:{port}"


async def test_http_and_default_pools_are_served_over_http1(gaie):
    await gaie.start(gaie_base(), {"appprotocol.yaml": MANIFESTS}, conformance_test_mode=True)
    for kind in ("http", "default"):
        assert_route_accepted_and_resolved(gaie, f"{GAIE_APP}/httproute-for-inferencepool-appprotocol-{kind}", GW)
    await _each_pod_answers_itself(gaie, "http", "appprotocol-http-inference-pool", "gaie-3000")
    await _each_pod_answers_itself(gaie, "default", "primary-inference-pool", "gaie-3000")


@pytest.mark.xfail(strict=True, reason="the proxy speaks HTTP/1.1 to every endpoint; appProtocol "
                                       "kubernetes.io/h2c is parsed but not used (no h2c upstream client)")
async def test_h2c_pool_is_served_over_http2_prior_knowledge(gaie, h2c_pods):
    await gaie.start(gaie_base(), {"appprotocol.yaml": MANIFESTS}, conformance_test_mode=True)
    assert_route_accepted_and_resolved(gaie, f"{GAIE_APP}/httproute-for-inferencepool-appprotocol-h2c", GW)
    pool = h2c_pods
    port = gaie.port("gaie-3001")
    for ip in pool.ips:
        reply = await gaie.request(GW, "/inferencepool-app-protocol-h2c", host="appprotocol-h2c.example.com",
                                   method="POST", json=GAIE_BODY, headers={SELECTION_HEADER: f"{ip}:{port}"})
        assert reply.status == 200 and reply.pod == pool.pod_name(ip), (ip, reply.status, reply.text[:200])
        assert reply.headers[SERVED_HEADER] == f"{ip}:{port}"
