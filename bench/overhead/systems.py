"""The processes of the overhead benchmark: fake upstreams on CPU 1 and the systems under test on CPU 0.

`direct` is the upstream itself; the others proxy to it: nginx (one worker, upstream keep-alive, buffering
off), our router (one process, access log off; and once with it on, to a file), vllm-router and
sglang-router (round robin, static worker URL, logs at warning, each its own Prometheus port on loopback),
and, in a two-core series, our router with `--workers 2`. A peer that is not installed is skipped with a
note. Every port is a free one on 127.0.0.1, picked at start. Every process gets its own session (so it and
its children can be signalled as a group) and dies with the benchmark even if the benchmark is killed.
"""

from __future__ import annotations

import ctypes
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
ROUTER = ROOT / ".venv" / "bin" / "kthena-router"
_PR_SET_PDEATHSIG = 1


def _session_bound_to_parent() -> None:
    os.setsid()
    try:  # Linux: SIGKILL this child when the benchmark process dies, however it dies
        ctypes.CDLL(None, use_errno=True).prctl(_PR_SET_PDEATHSIG, signal.SIGKILL)
    except (OSError, AttributeError):
        pass


def spawn(cmd: list[str], cpus: str, log: Path) -> subprocess.Popen:
    with open(log, "ab") as out:
        return subprocess.Popen(["taskset", "-c", cpus, *cmd], stdout=out, stderr=subprocess.STDOUT,
                                stdin=subprocess.DEVNULL, preexec_fn=_session_bound_to_parent)


def stop(proc: subprocess.Popen) -> None:
    if proc.poll() is not None:
        return
    try:
        os.killpg(proc.pid, signal.SIGTERM)
        proc.wait(10)
    except ProcessLookupError:
        return
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)
        proc.wait()


def free_port(consecutive: int = 1) -> int:
    """A port on 127.0.0.1 that nothing listens on (and the next `consecutive - 1` too)."""
    for _ in range(100):
        with socket.socket() as probe:
            probe.bind(("127.0.0.1", 0))
            port = probe.getsockname()[1]
        if port + consecutive <= 65535 and all(port_free(p) for p in range(port, port + consecutive)):
            return port
    raise RuntimeError("no free ports on 127.0.0.1")


def port_free(port: int) -> bool:
    with socket.socket() as probe:
        probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)  # connections in TIME_WAIT do not count
        try:
            probe.bind(("127.0.0.1", port))
        except OSError:
            return False
    return True


@dataclass
class System:
    name: str
    port: int
    cmd: list[str]
    cpus: str = "0"
    procs: list[subprocess.Popen] = field(default_factory=list)

    def start(self, logs: Path) -> None:
        self.procs.append(spawn(self.cmd, self.cpus, logs / f"{self.name.replace(' ', '_')}.log"))

    def pids(self) -> list[int]:
        """The process and all its descendants (nginx's worker, router workers)."""
        out: list[int] = []
        for proc in self.procs:
            out.append(proc.pid)
            out.extend(_descendants(proc.pid))
        return out

    def alive(self) -> bool:
        return all(p.poll() is None for p in self.procs)

    def stop(self) -> None:
        for proc in self.procs:
            stop(proc)
        self.procs.clear()


def _descendants(pid: int) -> list[int]:
    out: list[int] = []
    try:
        children = Path(f"/proc/{pid}/task/{pid}/children").read_text().split()
    except OSError:
        return out
    for child in children:
        out.append(int(child))
        out.extend(_descendants(int(child)))
    return out


def cpu_seconds(pids: list[int]) -> float:
    """utime + stime of the processes, from /proc/PID/stat."""
    total = 0
    for pid in pids:
        try:
            fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        total += int(fields[11]) + int(fields[12])
    return total / os.sysconf("SC_CLK_TCK")


def memory_kib(pids: list[int], name: str = "VmRSS") -> int:
    """Sum of a /proc/PID/status field (VmRSS now, VmHWM the peak) over the processes."""
    total = 0
    for pid in pids:
        try:
            for line in Path(f"/proc/{pid}/status").read_text().splitlines():
                if line.startswith(name + ":"):
                    total += int(line.split()[1])
        except OSError:
            continue
    return total


# --- upstreams ------------------------------------------------------------------------------------------------

def python_upstream(port: int) -> list[str]:
    return [sys.executable, "-m", "bench.overhead.upstream", "--port", str(port)]


_CANNED_JSON = ('{"id":"cmpl-bench","object":"text_completion","created":0,"model":"bench","choices":[{"index":0,'
                '"text":"' + " ".join(["tok"] * 16) + '","finish_reason":"length"}],'
                '"usage":{"prompt_tokens":8,"completion_tokens":16,"total_tokens":24}}')
_CANNED_METRICS = ("vllm:num_requests_running{model_name=\\\"bench\\\"} 0\\n"
                   "vllm:num_requests_waiting{model_name=\\\"bench\\\"} 0\\n"
                   "vllm:kv_cache_usage_perc{model_name=\\\"bench\\\"} 0\\n")


def canned_upstream(directory: Path, port: int) -> list[str]:
    """nginx answering every POST with the same 16-token completion (C speed; non-streaming only)."""
    directory.mkdir(parents=True, exist_ok=True)
    conf = directory / "nginx.conf"
    conf.write_text(textwrap.dedent(f"""\
        daemon off; master_process off; worker_processes 1; pid {directory}/nginx.pid; error_log {directory}/error.log warn;
        events {{ worker_connections 8192; }}
        http {{ access_log off; keepalive_requests 1000000; client_body_temp_path {directory}/body;
          proxy_temp_path {directory}/proxy; fastcgi_temp_path {directory}/fastcgi;
          uwsgi_temp_path {directory}/uwsgi; scgi_temp_path {directory}/scgi;
          server {{ listen 127.0.0.1:{port} backlog=4096;
            location = /metrics {{ default_type text/plain; return 200 "{_CANNED_METRICS}"; }}
            location / {{ default_type application/json; return 200 '{_CANNED_JSON}'; }} }} }}
        """))
    return [shutil.which("nginx") or "nginx", "-c", str(conf)]


# --- systems under test ---------------------------------------------------------------------------------------

def _router_config(directory: Path, upstream_port: int) -> Path:
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
          targetPorts: [{{number: {upstream_port}}}]
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


def _nginx_proxy_config(directory: Path, port: int, upstream_port: int) -> Path:
    directory.mkdir(parents=True, exist_ok=True)
    conf = directory / "nginx.conf"
    conf.write_text(textwrap.dedent(f"""\
        daemon off; master_process off; worker_processes 1; pid {directory}/nginx.pid; error_log {directory}/error.log warn;
        events {{ worker_connections 8192; }}
        http {{ access_log off; keepalive_requests 1000000;
          client_body_temp_path {directory}/body; proxy_temp_path {directory}/proxy;
          fastcgi_temp_path {directory}/fastcgi; uwsgi_temp_path {directory}/uwsgi; scgi_temp_path {directory}/scgi;
          upstream llm {{ server 127.0.0.1:{upstream_port}; keepalive 512; keepalive_requests 1000000; }}
          server {{ listen 127.0.0.1:{port} backlog=4096;
            location / {{ proxy_pass http://llm; proxy_http_version 1.1; proxy_set_header Connection "";
                         proxy_buffering off; proxy_request_buffering off; proxy_read_timeout 3600s; }} }} }}
        """))
    return conf


def our_router(work: Path, name: str, upstream_port: int, *, access_log: bool = False, workers: int = 1,
               cpus: str = "0") -> System:
    port, metrics = free_port(), free_port(consecutive=workers)
    cmd = [str(ROUTER), "--config-dir", str(_router_config(work / "router", upstream_port)),
           "--host", "127.0.0.1", "--port", str(port), "--metrics-port", str(metrics), "--debug-port", "0",
           "--log-level", "warning"]
    if access_log:
        cmd += ["--access-log", "true", "--access-log-output", str(work / f"access-{port}.log")]
    else:
        cmd += ["--access-log", "false"]
    if workers > 1:
        cmd += ["--workers", str(workers)]
    return System(name, port, cmd, cpus)


def build(work: Path, upstream_port: int, *, access_log_run: bool) -> tuple[list[System], list[str]]:
    """The one-core systems in front of the upstream on `upstream_port`, and notes about those skipped."""
    notes: list[str] = []
    systems = [System("direct", upstream_port, [])]
    if shutil.which("nginx"):
        port = free_port()
        systems.append(System("nginx", port, [shutil.which("nginx"), "-c",
                                              str(_nginx_proxy_config(work / f"nginx-{port}", port, upstream_port))]))
    else:
        notes.append("nginx: not installed (apt-get install nginx-light); skipped")
    systems.append(our_router(work, "kthena-router", upstream_port))
    if access_log_run:
        systems.append(our_router(work, "kthena-router +access log", upstream_port, access_log=True))
    vllm = PEERS / "vllm-router"
    if vllm.exists():
        port = free_port()
        systems.append(System("vllm-router", port, [
            str(vllm), "--host", "127.0.0.1", "--port", str(port), "--worker-urls", f"http://127.0.0.1:{upstream_port}",
            "--policy", "round_robin", "--prometheus-host", "127.0.0.1", "--prometheus-port", str(free_port()),
            "--log-level", "warning"]))
    else:
        notes.append("vllm-router: not installed in bench/.venv-peers (pip install vllm-router); skipped")
    python = PEERS / "python"
    if python.exists() and subprocess.run([str(python), "-c", "import sglang_router"],
                                          capture_output=True).returncode == 0:
        port = free_port()
        systems.append(System("sglang-router", port, [
            str(python), "-m", "sglang_router.launch_router", "--host", "127.0.0.1", "--port", str(port),
            "--worker-urls", f"http://127.0.0.1:{upstream_port}", "--policy", "round_robin",
            "--prometheus-host", "127.0.0.1", "--prometheus-port", str(free_port()), "--log-level", "warn"]))
    else:
        notes.append("sglang-router: not installed in bench/.venv-peers (pip install sglang-router); skipped")
    return systems, notes


def wait_ready(system: System, timeout: float = 60.0) -> bool:
    """Until a completion goes through (the Rust routers health-check their workers first)."""
    body = b'{"model":"bench","prompt":"ready","max_tokens":1}'
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if not system.alive():
            return False
        try:
            request = urllib.request.Request(f"http://127.0.0.1:{system.port}/v1/completions", data=body,
                                             headers={"Content-Type": "application/json"})
            with urllib.request.urlopen(request, timeout=2) as resp:
                if resp.status == 200:
                    return True
        except OSError:
            pass
        time.sleep(0.2)
    return False


def log_tail(logs: Path, system: System, lines: int = 3) -> str:
    path = logs / f"{system.name.replace(' ', '_')}.log"
    try:
        text = path.read_text(errors="replace").strip().splitlines()
    except OSError:
        return ""
    return " / ".join(line.strip() for line in text[-lines:])
