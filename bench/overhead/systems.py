"""The systems under test, each a child process pinned to CPU 0 in front of the same fake upstream.

`direct` is the upstream itself; the others proxy to it: nginx (one worker, upstream keep-alive,
buffering off), our router (one process; with and without the access log), the Rust vllm-router and
sglang-router (round robin, static worker URL), and our router with `--workers 2` for the two-core series.
A peer that is not installed is skipped with a note.
"""

from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import sys
import textwrap
import time
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
PEERS = ROOT / "bench" / ".venv-peers" / "bin"
UPSTREAM_PORT = 18500
PORTS = {"nginx": 18400, "kthena-router": 18100, "kthena-router+log": 18101, "vllm-router": 18110,
         "sglang-router": 18210, "kthena-router x2": 18102}


@dataclass
class System:
    name: str
    port: int
    cmd: list[str]
    cpus: str = "0"
    procs: list[subprocess.Popen] = field(default_factory=list)
    note: str = ""

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self, logs: Path) -> None:
        log = open(logs / f"{self.name.replace(' ', '_')}.log", "wb")  # noqa: SIM115 - closed with the process
        self.procs.append(subprocess.Popen(["taskset", "-c", self.cpus, *self.cmd], stdout=log,
                                          stderr=subprocess.STDOUT, start_new_session=True))

    def pids(self) -> list[int]:
        """The process and all its descendants (nginx workers, router workers)."""
        out: list[int] = []
        for proc in self.procs:
            out.append(proc.pid)
            out.extend(_descendants(proc.pid))
        return out

    def stop(self) -> None:
        for proc in self.procs:
            if proc.poll() is None:
                try:
                    os.killpg(proc.pid, signal.SIGTERM)
                except ProcessLookupError:
                    continue
                try:
                    proc.wait(10)
                except subprocess.TimeoutExpired:
                    os.killpg(proc.pid, signal.SIGKILL)
                    proc.wait()
        self.procs.clear()


def _descendants(pid: int) -> list[int]:
    out = []
    try:
        children = Path(f"/proc/{pid}/task/{pid}/children").read_text().split()
    except OSError:
        return out
    for child in children:
        out.append(int(child))
        out.extend(_descendants(int(child)))
    return out


def cpu_seconds(pids: list[int]) -> float:
    total = 0
    for pid in pids:
        try:
            fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        total += int(fields[11]) + int(fields[12])  # utime + stime
    return total / os.sysconf("SC_CLK_TCK")


def rss_kib(pids: list[int], field_name: str = "VmRSS") -> int:
    total = 0
    for pid in pids:
        try:
            for line in Path(f"/proc/{pid}/status").read_text().splitlines():
                if line.startswith(field_name + ":"):
                    total += int(line.split()[1])
        except OSError:
            continue
    return total


def _router_config(directory: Path) -> Path:
    directory.mkdir(parents=True, exist_ok=True)
    (directory / "bench.yaml").write_text(textwrap.dedent(f"""\
        apiVersion: gateway.networking.k8s.io/v1
        kind: HTTPRoute
        metadata: {{name: bench, namespace: default}}
        spec:
          parentRefs: [{{name: default}}]
          rules:
          - backendRefs: [{{group: inference.networking.k8s.io, kind: InferencePool, name: bench}}]
        ---
        apiVersion: inference.networking.k8s.io/v1
        kind: InferencePool
        metadata: {{name: bench, namespace: default}}
        spec:
          targetPorts: [{{number: {UPSTREAM_PORT}}}]
          selector: {{matchLabels: {{app: bench}}}}
        ---
        apiVersion: v1
        kind: Pod
        metadata: {{name: bench-0, namespace: default, labels: {{app: bench}}}}
        status:
          podIP: 127.0.0.1
          conditions: [{{type: Ready, status: "True"}}]
        """))
    return directory


def _nginx_config(directory: Path) -> Path:
    directory.mkdir(parents=True, exist_ok=True)
    conf = directory / "nginx.conf"
    conf.write_text(textwrap.dedent(f"""\
        daemon off; worker_processes 1; pid {directory}/nginx.pid; error_log {directory}/error.log warn;
        events {{ worker_connections 8192; }}
        http {{ access_log off;
          client_body_temp_path {directory}/body; proxy_temp_path {directory}/proxy;
          fastcgi_temp_path {directory}/fastcgi; uwsgi_temp_path {directory}/uwsgi; scgi_temp_path {directory}/scgi;
          upstream llm {{ server 127.0.0.1:{UPSTREAM_PORT}; keepalive 512; }}
          server {{ listen 127.0.0.1:{PORTS["nginx"]} backlog=4096;
            location / {{ proxy_pass http://llm; proxy_http_version 1.1; proxy_set_header Connection "";
                         proxy_buffering off; proxy_read_timeout 3600s; }} }} }}
        """))
    return conf


def build(work: Path, *, two_cores: bool) -> tuple[list[System], list[str]]:
    """The systems to measure and notes about those skipped."""
    notes: list[str] = []
    router = [str(ROOT / ".venv" / "bin" / "kthena-router"), "--config-dir", str(_router_config(work / "router")),
              "--host", "127.0.0.1", "--metrics-port", "0", "--debug-port", "0", "--log-level", "warning"]
    systems = [System("direct", UPSTREAM_PORT, [])]
    nginx = shutil.which("nginx")
    if nginx:
        systems.append(System("nginx", PORTS["nginx"], [nginx, "-c", str(_nginx_config(work / "nginx"))]))
    else:
        notes.append("nginx: not installed (apt-get install nginx-light); skipped")
    systems.append(System("kthena-router", PORTS["kthena-router"],
                          [*router, "--port", str(PORTS["kthena-router"]), "--access-log", "false"]))
    systems.append(System("kthena-router+log", PORTS["kthena-router+log"],
                          [*router, "--port", str(PORTS["kthena-router+log"]),
                           "--access-log-output", str(work / "access.log")]))
    vllm = PEERS / "vllm-router"
    if vllm.exists():
        systems.append(System("vllm-router", PORTS["vllm-router"], [
            str(vllm), "--host", "127.0.0.1", "--port", str(PORTS["vllm-router"]),
            "--worker-urls", f"http://127.0.0.1:{UPSTREAM_PORT}", "--policy", "round_robin",
            "--prometheus-host", "127.0.0.1", "--prometheus-port", "18195", "--log-level", "warning"]))
    else:
        notes.append("vllm-router: not installed in bench/.venv-peers; skipped")
    sglang_python = PEERS / "python"
    if sglang_python.exists() and subprocess.run([str(sglang_python), "-c", "import sglang_router"],
                                                 capture_output=True).returncode == 0:
        systems.append(System("sglang-router", PORTS["sglang-router"], [
            str(sglang_python), "-m", "sglang_router.launch_router", "--host", "127.0.0.1",
            "--port", str(PORTS["sglang-router"]), "--worker-urls", f"http://127.0.0.1:{UPSTREAM_PORT}",
            "--policy", "round_robin", "--prometheus-host", "127.0.0.1", "--prometheus-port", "18295",
            "--log-level", "warn"]))
    else:
        notes.append("sglang-router: not installed in bench/.venv-peers; skipped")
    if two_cores:
        systems.append(System("kthena-router x2", PORTS["kthena-router x2"],
                              [*router, "--port", str(PORTS["kthena-router x2"]), "--access-log", "false",
                               "--workers", "2"], cpus="0,1"))
    return systems, notes


def wait_ready(system: System, timeout: float = 60.0) -> bool:
    """Until a completion goes through (the Rust routers health-check their workers first)."""
    body = b'{"model":"bench","prompt":"ready","max_tokens":1}'
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if any(p.poll() is not None for p in system.procs):
            return False
        try:
            request = urllib.request.Request(system.url + "/v1/completions", data=body,
                                             headers={"Content-Type": "application/json"})
            with urllib.request.urlopen(request, timeout=2) as resp:
                if resp.status == 200:
                    return True
        except OSError:
            pass
        time.sleep(0.2)
    return False


def port_free(port: int) -> bool:
    with socket.socket() as probe:
        probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)  # connections in TIME_WAIT do not count
        try:
            probe.bind(("127.0.0.1", port))
        except OSError:
            return False
    return True


def upstream_command() -> list[str]:
    return ["taskset", "-c", "1", sys.executable, "-m", "bench.overhead.upstream", "--port", str(UPSTREAM_PORT)]
