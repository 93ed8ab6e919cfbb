"""`make bench-overhead`: what each proxy adds per request, in front of the same fake upstream, in one run.

Layout: the system under test alone on CPU 0; wrk, the benchmark's own client and the fake upstream on CPU 1.
Three phases, each starting its systems fresh and stopping them at its end: non-streaming (against the faster
of the Python upstream and an nginx canned body, measured at start), streaming (SSE against the Python
upstream, then a thousand slow streams held open), and a two-core series for `--workers 2`. Within a phase
every cell is repeated, interleaved across systems and rotated each round, and reported as the median with its
spread. Results: bench/results/overhead.json and the generated section of bench/RESULTS.md.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import platform
import resource
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from bench.overhead import load, report, systems

ROOT = Path(__file__).resolve().parents[2]
MODES = {"json": (16, False), "sse16": (16, True), "sse256": (256, True)}
FULL_CELLS = [(mode, c) for mode in MODES for c in (1, 16, 256)]
QUICK_CELLS = [("json", 1), ("json", 16), ("sse16", 1), ("sse16", 16), ("sse256", 16)]


class Interrupted(KeyboardInterrupt):
    """SIGTERM or SIGHUP: unwind like Ctrl-C so that every started process is stopped."""


def _interrupt(signum: int, _frame) -> None:
    raise Interrupted(signal.Signals(signum).name)


def _machine() -> dict:
    def run(*cmd: str) -> str:
        try:
            done = subprocess.run(cmd, capture_output=True, text=True, timeout=20)
        except (OSError, subprocess.TimeoutExpired):
            return "unavailable"
        return (done.stdout or done.stderr).strip()

    peers = run(str(systems.PEERS / "pip"), "list", "--format=freeze")
    return {"lscpu": run("lscpu"), "lscpu_e": run("lscpu", "-e=CPU,CORE,SOCKET,NODE,ONLINE"),
            "kernel": platform.release(), "python": sys.version.split()[0],
            "wrk": run("wrk", "-v").splitlines()[0] if run("wrk", "-v") else "", "nginx": run("nginx", "-v"),
            "router": run(str(systems.ROUTER), "--version"),
            "peers": [p for p in peers.split() if p.startswith(("vllm-router", "sglang-router"))]}


class Bench:
    def __init__(self, args: argparse.Namespace, work: Path) -> None:
        self.args = args
        self.quick = args.quick
        self.work = work
        self.logs = work / "logs"
        self.logs.mkdir()
        self.repeats = 1 if args.quick else args.repeats
        self.seconds = 2 if args.quick else args.seconds
        self.cells = QUICK_CELLS if args.quick else FULL_CELLS
        self.scripts = {}
        for mode, (tokens, stream) in MODES.items():
            self.scripts[mode] = work / f"{mode}.lua"
            self.scripts[mode].write_text(load.LUA.format(body=load.body(tokens, stream)))
        self.results: dict = {"cells": [], "open_loop": [], "streams": [], "two_cores": [], "notes": [],
                              "quick": args.quick, "repeats": self.repeats, "seconds": self.seconds,
                              "open_loop_rate": args.rate, "argv": sys.argv[1:], "started": time.strftime("%Y-%m-%d %H:%M:%S"),
                              "load_at_start": os.getloadavg()[0]}
        self.upstreams: list = []
        self.running: list[systems.System] = []

    def log(self, text: str) -> None:
        print(f"[{time.monotonic() - self.t0:5.0f} s] {text}", flush=True)

    # --- lifecycle --------------------------------------------------------------------------------------------

    def run(self) -> dict:
        self.t0 = time.monotonic()
        try:
            python_port = systems.free_port()
            self.upstreams.append(systems.spawn(systems.python_upstream(python_port), "1", self.logs / "upstream.log"))
            json_port, json_pid = python_port, self.upstreams[0].pid
            if shutil.which("nginx"):
                canned_port = systems.free_port()
                canned = systems.spawn(systems.canned_upstream(self.work / "canned", canned_port), "1",
                                       self.logs / "canned.log")
                self.upstreams.append(canned)
                json_port, json_pid = self._choose_upstream(python_port, canned_port, canned.pid)
            else:
                self.results["upstream"] = {"json": "python", "note": "nginx not installed; not compared"}
                self._wait_port(python_port)
            self._phase("non-streaming", json_port, json_pid, [c for c in self.cells if c[0] == "json"],
                        open_loop=("json", 16, False), access_log_run=True)
            self._phase("streaming", python_port, self.upstreams[0].pid,
                        [c for c in self.cells if c[0] != "json"], open_loop=("sse16", 16, True),
                        streams=True)
            self._two_cores(json_port)
        finally:
            for system in self.running:
                system.stop()
            for proc in self.upstreams:
                systems.stop(proc)
        self.results["machine"] = _machine()
        self.results["load_at_end"] = os.getloadavg()[0]
        self.results["finished"] = time.strftime("%Y-%m-%d %H:%M:%S")
        self.results["elapsed_s"] = round(time.monotonic() - self.t0)
        return self.results

    def _wait_port(self, port: int) -> None:
        deadline = time.monotonic() + 10
        while systems.port_free(port) and time.monotonic() < deadline:
            time.sleep(0.05)

    def _choose_upstream(self, python_port: int, canned_port: int, canned_pid: int) -> tuple[int, int]:
        """Measure both upstreams alone on CPU 1 (wrk next to them, 16 connections); take the faster."""
        self._wait_port(python_port)
        self._wait_port(canned_port)
        best = {"python": 0.0, "nginx canned": 0.0}
        for _ in range(2):
            for name, port in (("python", python_port), ("nginx canned", canned_port)):
                best[name] = max(best[name], load.wrk(port, self.scripts["json"], 16, 1 if self.quick else 2).rps)
        chosen = "nginx canned" if best["nginx canned"] > 1.1 * best["python"] else "python"
        self.results["upstream"] = {"json": chosen, "rps": best}
        self.log(f"non-streaming upstream: {chosen} (python {best['python']:.0f} req/s, "
                 f"nginx canned {best['nginx canned']:.0f} req/s, alone on CPU 1 with wrk, 16 connections)")
        return (canned_port, canned_pid) if chosen == "nginx canned" else (python_port, self.upstreams[0].pid)

    def _start(self, candidates: list[systems.System], kinds: list[tuple[int, bool]]) -> list[systems.System]:
        for system in candidates:
            if system.cmd:
                system.start(self.logs)
                self.running.append(system)
        ready = []
        for system in candidates:
            if not systems.wait_ready(system):
                self.results["notes"].append(f"{system.name}: did not become ready; skipped "
                                             f"({systems.log_tail(self.logs, system) or 'no output'})")
                system.stop()
                continue
            problems = asyncio.run(load.check(system.port, kinds))
            if problems:
                self.results["notes"].append(f"{system.name}: wrong answer through it: {'; '.join(problems)}")
            ready.append(system)
        return ready

    def _stop(self, started: list[systems.System]) -> None:
        for system in started:
            system.stop()
            if system in self.running:
                self.running.remove(system)

    # --- phases -----------------------------------------------------------------------------------------------

    def _phase(self, phase: str, upstream_port: int, upstream_pid: int, cells: list[tuple[str, int]], *,
               open_loop: tuple[str, int, bool], access_log_run: bool = False, streams: bool = False) -> None:
        candidates, notes = systems.build(self.work / phase, upstream_port, access_log_run=access_log_run)
        for note in notes:
            if note not in self.results["notes"]:
                self.results["notes"].append(note)
        kinds = sorted({MODES[mode] for mode, _ in cells})
        ready = self._start(candidates, kinds)
        self.log(f"{phase}: {', '.join(s.name for s in ready)} ready")
        try:
            for system in ready:  # warm-up: connections, caches, the first slow requests of a Python process
                load.wrk(system.port, self.scripts[cells[0][0]], 16, 1)
            for repeat in range(self.repeats):
                order = ready[repeat % len(ready):] + ready[:repeat % len(ready)]
                for mode, connections in cells:
                    for system in order:
                        self._cell(system, upstream_pid, mode, connections, repeat)
                mode, tokens, stream = open_loop
                for system in order:
                    rate = self.args.rate / 2 if stream else self.args.rate
                    outcome = asyncio.run(load.open_loop(system.port, load.body(tokens, stream), rate=rate,
                                                         seconds=self.seconds, tokens=tokens, stream=stream,
                                                         seed=repeat))
                    self.results["open_loop"].append({"system": system.name, "mode": mode, "repeat": repeat,
                                                      **outcome})
                    self.log(f"open loop {mode} {outcome['offered']:.0f}/s -> {outcome['achieved']:.0f}/s "
                             f"{system.name:26} p50 {outcome['p50'] * 1e3:.3f} ms p99 {outcome['p99'] * 1e3:.3f} ms "
                             f"errors {outcome['errors']}")
            if streams:
                for system in ready:
                    self._streams(system, upstream_pid)
        finally:
            self._stop(ready)

    def _cell(self, system: systems.System, upstream_pid: int, mode: str, connections: int, repeat: int) -> None:
        pids = system.pids() if system.cmd else [upstream_pid]
        cpu0 = systems.cpu_seconds(pids)
        result = load.wrk(system.port, self.scripts[mode], connections, self.seconds)
        cpu = systems.cpu_seconds(pids) - cpu0
        per_request = cpu / max(result.requests, 1) * 1e6
        self.results["cells"].append({
            "system": system.name, "mode": mode, "connections": connections, "repeat": repeat, "rps": result.rps,
            "requests": result.requests, "p50": result.p50, "p90": result.p90, "p99": result.p99,
            "non_2xx": result.non_2xx, "socket_errors": result.socket_errors, "cpu_us_per_request": per_request,
            "rss_kib": systems.memory_kib(pids), "hwm_kib": systems.memory_kib(pids, "VmHWM")})
        self.log(f"[{repeat + 1}/{self.repeats}] {mode:6} c={connections:<3} {system.name:26} {result.rps:8.0f} req/s "
                 f"p50 {result.p50 * 1e3:7.3f} ms p99 {result.p99 * 1e3:7.3f} ms cpu {per_request:5.0f} us/req "
                 f"errors {result.errors}")

    def _streams(self, system: systems.System, upstream_pid: int) -> None:
        pids = system.pids() if system.cmd else [upstream_pid]
        idle = systems.memory_kib(pids)
        count = self.args.streams if not self.quick else 200
        tokens = 64 if not self.quick else 24
        outcome = asyncio.run(load.slow_streams(system.port, streams=count, tokens=tokens, itl_ms=100,
                                                probes=50 if not self.quick else 20,
                                                on_held=lambda: systems.memory_kib(pids)))
        grown = outcome["rss_held_kib"] - idle
        self.results["streams"].append({"system": system.name, **outcome, "rss_idle_kib": idle,
                                        "rss_per_stream_kib": grown / max(outcome["held_open"], 1),
                                        "hwm_kib": systems.memory_kib(pids, "VmHWM")})
        self.log(f"{count} slow streams {system.name:26} held {outcome['held_open']} failed {outcome['failures']} "
                 f"rss +{grown / 1024:.1f} MiB probe ttft p99 {outcome['ttft_p99'] * 1e3:.1f} ms "
                 f"(idle {outcome['idle_ttft_p99'] * 1e3:.1f} ms)")

    def _two_cores(self, upstream_port: int) -> None:
        """Our router with one worker and with `--workers 2`, both free to use both cores (as is the client)."""
        one = systems.our_router(self.work / "two", "kthena-router, 1 worker", upstream_port, cpus="0,1")
        two = systems.our_router(self.work / "two", "kthena-router --workers 2", upstream_port, workers=2,
                                 cpus="0,1")
        ready = self._start([one, two], [MODES["json"]])
        if two not in ready:
            self.results["notes"].append("two-core series skipped: `--workers 2` did not start")
            self._stop(ready)
            return
        try:
            for system in ready:
                load.wrk(system.port, self.scripts["json"], 64, 1, cpus="0,1")
            for repeat in range(self.repeats):
                for system in (ready if repeat % 2 == 0 else ready[::-1]):
                    result = load.wrk(system.port, self.scripts["json"], 64, self.seconds, cpus="0,1")
                    self.results["two_cores"].append({"system": system.name, "mode": "json", "connections": 64,
                                                      "repeat": repeat, "rps": result.rps, "p50": result.p50,
                                                      "p99": result.p99, "errors": result.errors})
                    self.log(f"two cores json c=64 {system.name:26} {result.rps:8.0f} req/s "
                             f"p99 {result.p99 * 1e3:.3f} ms errors {result.errors}")
        finally:
            self._stop(ready)


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--quick", action="store_true",
                   help="one repeat, 2 s cells, fewer cells, 200 held streams (about 3 minutes)")
    p.add_argument("--repeats", type=int, default=3, help="interleaved repeats per cell (default 3)")
    p.add_argument("--seconds", type=int, default=3, help="seconds per measured wrk cell (default 3)")
    p.add_argument("--rate", type=float, default=1000.0, help="open-loop requests per second, non-streaming; SSE gets half (default 1000)")
    p.add_argument("--streams", type=int, default=1000, help="slow streams held open at once (default 1000)")
    p.add_argument("--max-load", type=float, default=0.7, help="refuse to start above this 1-minute load average")
    p.add_argument("--no-write", action="store_true", help="print the section; leave bench/RESULTS.md alone")
    args = p.parse_args()
    load1 = os.getloadavg()[0]
    if load1 > args.max_load:
        print(f"bench-overhead: the machine is busy (load average {load1:.2f} > {args.max_load}); not starting.")
        return 1
    if (os.cpu_count() or 1) < 2:
        print("bench-overhead: needs two CPUs (system under test on CPU 0, load and upstream on CPU 1).")
        return 1
    for name in ("wrk", "taskset"):
        if subprocess.run(["sh", "-c", f"command -v {name}"], capture_output=True).returncode:
            print(f"bench-overhead: `{name}` is not installed.")
            return 1
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (max(soft, min(hard, 65536)), hard))  # children inherit it
    signal.signal(signal.SIGTERM, _interrupt)
    signal.signal(signal.SIGHUP, _interrupt)
    os.sched_setaffinity(0, {1})  # the clients share CPU 1 with the upstream; CPU 0 is the system's alone
    work = Path(tempfile.mkdtemp(prefix="bench-overhead-"))
    bench = Bench(args, work)
    try:
        results = bench.run()
    except KeyboardInterrupt as exc:
        print(f"bench-overhead: interrupted ({exc or 'Ctrl-C'}); every process it started is stopped.")
        return 130
    (ROOT / "bench" / "results").mkdir(exist_ok=True)
    (ROOT / "bench" / "results" / "overhead.json").write_text(json.dumps(results, indent=1, default=str))
    text = report.render(results)
    print(text)
    if not args.no_write:
        report.write_section(ROOT / "bench" / "RESULTS.md", text)
    print(f"bench-overhead: {results['elapsed_s']} s; logs in {bench.logs}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
