"""The systems under test: our router with a scheduler configuration, or vllm-router with a policy.

Both run as child processes on 127.0.0.1, pinned with `taskset` when asked, in front of the same fleet.
Our router reads a generated manifest directory (Gateway, HTTPRoute, InferencePool, one Pod per
simulator, the InferenceObjectives of the priorities workload) and a `--scheduler-config` YAML in
kthena's shape: none for the default pipeline, one Score plugin of weight 1 for a single-plugin run.
vllm-router gets the simulators as static `--worker-urls` (peers.md 7.5).
"""

from __future__ import annotations

import importlib.util
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

import yaml

from bench.scheduling.fleet import PORT, spawn, wait_healthy
from bench.scheduling.workloads import OBJECTIVES

ROUTER_PORT = 18080
PEER_PORT = 18110
PEER_METRICS_PORT = 18195
POOL = "bench-pool"
LABEL = {"app": "bench-sim"}

# Single plugins of our scheduler, in the order they are reported.
SINGLE_PLUGINS = (
    "least-request",
    "queue",
    "kv-cache",
    "least-latency",
    "prefix-cache",
    "lora-affinity",
    "session-affinity",
    "random",
    "round-robin",
)
PEER_POLICIES = ("cache_aware", "power_of_two")


@dataclass(frozen=True, slots=True)
class System:
    name: str  # as reported: "default", "round-robin", "vllm-router cache_aware", ...
    kind: str  # "ours" or "peer"
    plugin: str | None = None  # ours: the single Score plugin; None = the default pipeline
    policy: str | None = None  # peer: vllm-router --policy
    router_args: tuple[str, ...] = ()  # ours: more command-line flags
    only_for: tuple[str, ...] = ()  # workloads it runs in; empty: every workload


def scheduler_available() -> bool:
    """Whether this router has the pluggable scheduler (`--scheduler-config` with named plugins)."""
    return importlib.util.find_spec("kthena_router.scheduling.registry") is not None


def all_systems() -> list[System]:
    systems = [System("default", "ours")]
    systems += [System(name, "ours", plugin=name) for name in SINGLE_PLUGINS]
    systems += [System(f"vllm-router {p}", "peer", policy=p) for p in PEER_POLICIES]
    # The admission trade-off under overload: a shorter server queue before the pool counts as saturated.
    systems += [System(f"default, queue threshold {n}", "ours", router_args=("--saturation-queue-threshold", n),
                       only_for=("overload",)) for n in ("1", "0")]
    return systems


def write_manifests(directory: Path, hosts: list[str]) -> None:
    directory.mkdir(parents=True, exist_ok=True)
    docs: list[dict] = [
        {
            "apiVersion": "gateway.networking.k8s.io/v1",
            "kind": "Gateway",
            "metadata": {"name": "bench", "namespace": "default"},
            "spec": {
                "gatewayClassName": "kthena-router",
                "listeners": [{"name": "http", "port": ROUTER_PORT, "protocol": "HTTP"}],
            },
        },
        {
            "apiVersion": "gateway.networking.k8s.io/v1",
            "kind": "HTTPRoute",
            "metadata": {"name": "bench", "namespace": "default"},
            "spec": {
                "parentRefs": [{"name": "bench"}],
                "rules": [
                    {
                        "backendRefs": [
                            {"group": "inference.networking.k8s.io", "kind": "InferencePool", "name": POOL}
                        ],
                        "timeouts": {"request": "300s"},
                    }
                ],
            },
        },
        {
            "apiVersion": "inference.networking.k8s.io/v1",
            "kind": "InferencePool",
            "metadata": {"name": POOL, "namespace": "default"},
            "spec": {"targetPorts": [{"number": PORT}], "selector": {"matchLabels": LABEL}},
        },
    ]
    for i, host in enumerate(hosts):
        docs.append(
            {
                "apiVersion": "v1",
                "kind": "Pod",
                "metadata": {"name": f"sim-{i}", "namespace": "default", "labels": LABEL},
                "status": {"podIP": host, "conditions": [{"type": "Ready", "status": "True"}]},
            }
        )
    for name, priority in OBJECTIVES.items():
        docs.append(
            {
                "apiVersion": "inference.networking.x-k8s.io/v1alpha2",
                "kind": "InferenceObjective",
                "metadata": {"name": name, "namespace": "default"},
                "spec": {"priority": priority, "poolRef": {"name": POOL}},
            }
        )
    (directory / "fleet.yaml").write_text(yaml.safe_dump_all(docs, sort_keys=False))


def write_policy(path: Path, plugin: str) -> None:
    policy = {"scheduler": {"plugins": {"Score": {"enabled": [{"name": plugin, "weight": 1}]}}}}
    path.write_text(yaml.safe_dump(policy, sort_keys=False))


@dataclass(slots=True)
class Running:
    process: subprocess.Popen[bytes]
    base: str

    def stop(self) -> None:
        if self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(timeout=15)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()


def _pinned(cmd: list[str], cpus: str | None) -> list[str]:
    return ["taskset", "-c", cpus, *cmd] if cpus is not None else cmd


async def start_system(
    system: System, workdir: Path, fleet_urls: list[str], cpus: str | None, peer_bin: Path | None, log_file
) -> Running:
    if system.kind == "ours":
        config_dir = workdir / "manifests"
        hosts = [url.removeprefix("http://").rsplit(":", 1)[0] for url in fleet_urls]
        write_manifests(config_dir, hosts)
        cmd = [
            str(Path(sys.executable).with_name("kthena-router")),
            "--config-dir", str(config_dir), "--host", "127.0.0.1", "--port", str(ROUTER_PORT),
            "--metrics-port", "0", "--debug-port", "0", "--access-log=false", "--log-level", "warning",
        ]  # fmt: skip
        if system.plugin is not None:
            policy = workdir / f"policy-{system.plugin}.yaml"
            write_policy(policy, system.plugin)
            cmd += ["--scheduler-config", str(policy)]
        cmd += system.router_args
        base = f"http://127.0.0.1:{ROUTER_PORT}"
        ready = "/readyz"
    else:
        if peer_bin is None:
            raise RuntimeError("vllm-router is not installed")
        cmd = [
            str(peer_bin), "--host", "127.0.0.1", "--port", str(PEER_PORT), "--worker-urls", *fleet_urls,
            "--policy", str(system.policy), "--prometheus-host", "127.0.0.1",
            "--prometheus-port", str(PEER_METRICS_PORT), "--log-level", "warning",
        ]  # fmt: skip
        base = f"http://127.0.0.1:{PEER_PORT}"
        ready = "/health"
    # vllm-router logs every power_of_two pick at INFO whatever --log-level says; RUST_LOG quiets it.
    env = {"RUST_LOG": "warn"} if system.kind == "peer" else None
    process = spawn(_pinned(cmd, cpus), log_file, env)
    running = Running(process, base)
    try:
        await wait_healthy([base], ready, within=30, process=process)
    except BaseException:
        running.stop()
        raise
    return running
