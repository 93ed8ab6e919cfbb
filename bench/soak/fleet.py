"""The soak's processes and manifests: simulated model servers that are killed and restarted, the router.

Everything runs on loopback: the model servers on 127.0.0.31-33 (one port shared by all), the router, its
metrics and debug ports on 127.0.0.1. The manifest directory is rewritten whole, atomically, on every change.
"""

from __future__ import annotations

import signal
import socket
import subprocess
import sys
import textwrap
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
SERVER_IPS = ("127.0.0.31", "127.0.0.32", "127.0.0.33")
SPARE_IPS = ("127.0.0.34", "127.0.0.35")  # pods that come and go with no server behind them
MODEL = "soak"
CHURN_ROUTES = 8  # HTTPRoutes /churn-0 .. /churn-7 that are added and removed
TOKEN_MS = 5.0


def free_port(*hosts: str) -> int:
    """A port free on every given loopback address."""
    for _ in range(100):
        with socket.socket() as probe:
            probe.bind((hosts[0], 0))
            port = probe.getsockname()[1]
        ok = True
        for host in hosts[1:]:
            with socket.socket() as other:
                try:
                    other.bind((host, port))
                except OSError:
                    ok = False
                    break
        if ok:
            return port
    raise RuntimeError("no port is free on " + ", ".join(hosts))


@dataclass(frozen=True, slots=True)
class Layout:
    """What the manifest directory currently declares."""

    pods: tuple[str, ...] = SERVER_IPS
    churn_routes: frozenset[int] = frozenset()


def manifests(layout: Layout, server_port: int) -> str:
    docs = [textwrap.dedent(f"""\
        apiVersion: inference.networking.k8s.io/v1
        kind: InferencePool
        metadata: {{name: soak, namespace: default}}
        spec:
          targetPorts: [{{number: {server_port}}}]
          selector: {{matchLabels: {{app: soak}}}}
        """), _route("soak", "/v1")]
    docs += [_route(f"churn-{i}", f"/churn-{i}") for i in sorted(layout.churn_routes)]
    for ip in layout.pods:
        docs.append(textwrap.dedent(f"""\
            apiVersion: v1
            kind: Pod
            metadata: {{name: soak-{ip.rsplit('.', 1)[1]}, namespace: default, labels: {{app: soak}}}}
            status:
              podIP: {ip}
              conditions: [{{type: Ready, status: "True"}}]
            """))
    return "---\n".join(docs)


def _route(name: str, prefix: str) -> str:
    """A route to the pool; any prefix but /v1 is rewritten to / (so /churn-3/v1/completions reaches /v1/...)."""
    text = textwrap.dedent(f"""\
        apiVersion: gateway.networking.k8s.io/v1
        kind: HTTPRoute
        metadata: {{name: {name}, namespace: default}}
        spec:
          parentRefs: [{{name: default}}]
          rules:
          - matches: [{{path: {{type: PathPrefix, value: {prefix}}}}}]
            backendRefs: [{{group: inference.networking.k8s.io, kind: InferencePool, name: soak}}]
        """)
    if prefix != "/v1":
        text += "    filters: [{type: URLRewrite, urlRewrite: {path: {type: ReplacePrefixMatch, replacePrefixMatch: /}}}]\n"
    return text


def write_manifests(directory: Path, layout: Layout, server_port: int) -> None:
    tmp = directory / ".soak.yaml.tmp"  # not *.yaml: the router never reads a half-written file
    tmp.write_text(manifests(layout, server_port))
    tmp.replace(directory / "soak.yaml")


class ModelServers:
    """One `python -m kthena_router.sim` process per address; killed (SIGKILL or SIGTERM) and started again."""

    def __init__(self, port: int, logs: Path) -> None:
        self.port = port
        self.logs = logs
        self._procs: dict[str, subprocess.Popen] = {}

    @property
    def down(self) -> list[str]:
        return [ip for ip in SERVER_IPS if ip not in self._procs]

    def start(self, ip: str) -> None:
        with open(self.logs / f"sim-{ip}.log", "ab") as out:
            self._procs[ip] = subprocess.Popen(
                [sys.executable, "-m", "kthena_router.sim", "--host", ip, "--port", str(self.port),
                 "--model", MODEL, "--itl-ms", str(TOKEN_MS), "--ttft-ms", str(2 * TOKEN_MS),
                 "--log-level", "warning"],
                stdout=out, stderr=subprocess.STDOUT, cwd=ROOT)

    def stop(self, ip: str, sig: int = signal.SIGKILL) -> None:
        proc = self._procs.pop(ip, None)
        if proc is None:
            return
        if proc.poll() is None:
            proc.send_signal(sig)
        try:
            proc.wait(10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()

    def close(self) -> None:
        for ip in list(self._procs):
            self.stop(ip)


def start_router(config_dir: Path, logs: Path, *, port: int, metrics_port: int, debug_port: int) -> subprocess.Popen:
    with open(logs / "router.log", "ab") as out:
        return subprocess.Popen(
            [sys.executable, "-m", "kthena_router", "--config-dir", str(config_dir), "--host", "127.0.0.1",
             "--port", str(port), "--metrics-port", str(metrics_port), "--debug-port", str(debug_port),
             "--reload-interval", "0.2", "--access-log-output", str(logs / "access.log"),
             "--outlier-base-ejection", "2s", "--drain-timeout", "20"],
            stdout=out, stderr=subprocess.STDOUT, cwd=ROOT)


def stop_router(proc: subprocess.Popen, timeout: float = 30.0) -> int | None:
    """SIGTERM and wait; the exit status, or None when it had to be killed."""
    if proc.poll() is None:
        proc.send_signal(signal.SIGTERM)
    try:
        return proc.wait(timeout)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()
        return None
