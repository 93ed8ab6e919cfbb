"""`make bench-overhead`: what each proxy adds per request, against the same fake upstream, in one run.

Layout: the system under test on CPU 0; wrk, the asyncio clients and the fake upstream on CPU 1. Every
cell is repeated (interleaved across systems, rotated each round) and reported as the median with its
spread. Results go to bench/results/overhead.json and the generated section of bench/RESULTS.md.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import platform
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from bench.overhead import load, report, systems

ROOT = Path(__file__).resolve().parents[2]
CASES = [  # (name, tokens, stream, connections)
    ("json", 16, False, 1), ("json", 16, False, 16), ("json", 16, False, 256),
    ("sse16", 16, True, 1), ("sse16", 16, True, 16), ("sse16", 16, True, 256),
    ("sse256", 256, True, 16),
]
QUICK_CASES = [("json", 16, False, 1), ("json", 16, False, 16), ("sse16", 16, True, 1), ("sse16", 16, True, 16),
               ("sse256", 256, True, 16)]


def _busy(limit: float) -> float | None:
    load1 = os.getloadavg()[0]
    return load1 if load1 > limit else None


def _machine() -> dict:
    def run(*cmd: str) -> str:
        try:
            return subprocess.run(cmd, capture_output=True, text=True, timeout=10).stdout.strip()
        except OSError:
            return "unavailable"

    return {"cpu": run("lscpu").splitlines()[:15], "cpus": run("lscpu", "-e"), "kernel": platform.release(),
            "python": sys.version.split()[0], "wrk": run("wrk", "-v").splitlines()[0] if run("wrk", "-v") else "",
            "nginx": run("nginx", "-v") or subprocess.run(["nginx", "-v"], capture_output=True, text=True).stderr.strip(),
            "peers": run(str(systems.PEERS / "pip"), "list", "--format=freeze")}


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--quick", action="store_true", help="one repeat, fewer and shorter cells (about 3 minutes)")
    p.add_argument("--repeats", type=int, default=3)
    p.add_argument("--duration", type=float, default=4.0, help="seconds per measured cell")
    p.add_argument("--max-load", type=float, default=0.7, help="refuse to start above this 1-minute load")
    p.add_argument("--streams", type=int, default=1000, help="slow streams held open at once")
    p.add_argument("--no-write", action="store_true", help="print the table, leave bench/RESULTS.md alone")
    args = p.parse_args()
    if (load1 := _busy(args.max_load)) is not None:
        print(f"bench-overhead: the machine is busy (load average {load1:.2f} > {args.max_load}); not starting.")
        return 1
    repeats = 1 if args.quick else args.repeats
    duration = 2.0 if args.quick else args.duration
    cases = QUICK_CASES if args.quick else CASES
    busy_ports = [port for port in (systems.UPSTREAM_PORT, *systems.PORTS.values(), 18195, 18295)
                  if not systems.port_free(port)]
    if busy_ports:
        print(f"bench-overhead: ports {busy_ports} on 127.0.0.1 are in use (a previous run?); not starting.")
        return 1
    os.sched_setaffinity(0, {1})  # clients share CPU 1 with the upstream; CPU 0 is the system's alone
    work = Path(tempfile.mkdtemp(prefix="bench-overhead-"))
    logs = work / "logs"
    logs.mkdir()
    upstream = subprocess.Popen([*systems.upstream_command()], stdout=subprocess.DEVNULL, stderr=subprocess.STDOUT,
                                cwd=ROOT, start_new_session=True)
    sut, notes = systems.build(work, two_cores=not args.quick)
    started: list[systems.System] = []
    results: dict = {"cells": [], "streams": [], "open_loop": [], "notes": notes, "repeats": repeats,
                     "duration": duration, "started": time.strftime("%Y-%m-%d %H:%M:%S")}
    try:
        time.sleep(0.5)
        for system in sut:
            if system.cmd:
                system.start(logs)
                started.append(system)
        ready = []
        for system in sut:
            if systems.wait_ready(system):
                ready.append(system)
            else:
                notes.append(f"{system.name}: did not become ready; skipped (log in {logs})")
        scripts = {}
        for name, tokens, stream, _ in cases:
            script = work / f"{name}.lua"
            script.write_text(load.LUA.format(body=load.body(tokens, stream)))
            scripts[name] = script
        single_core = [s for s in ready if s.cpus == "0"]
        for repeat in range(repeats):
            order = single_core[repeat % len(single_core):] + single_core[:repeat % len(single_core)]
            for name, _tokens, _stream, connections in cases:
                for system in order:
                    load.wrk(system.url, scripts[name], connections, 1)  # warm-up
                    pids = system.pids() if system.cmd else [upstream.pid]
                    cpu0 = systems.cpu_seconds(pids)
                    result = load.wrk(system.url, scripts[name], connections, duration)
                    cpu = systems.cpu_seconds(pids) - cpu0
                    results["cells"].append({
                        "system": system.name, "case": name, "connections": connections, "repeat": repeat,
                        "rps": result.rps, "p50": result.p50, "p99": result.p99, "errors": result.errors,
                        "cpu_us_per_request": cpu / max(result.requests, 1) * 1e6,
                        "rss_kib": systems.rss_kib(pids), "hwm_kib": systems.rss_kib(pids, "VmHWM")})
                    print(f"[{repeat + 1}/{repeats}] {name:7} c={connections:<4} {system.name:18} "
                          f"{result.rps:9.0f} req/s  p50 {result.p50 * 1e3:7.3f} ms  p99 {result.p99 * 1e3:7.3f} ms"
                          f"  cpu {cpu / max(result.requests, 1) * 1e6:6.0f} us/req  errors {result.errors}",
                          flush=True)
        two = [s for s in ready if s.cpus != "0"]
        for system in two + [s for s in single_core if s.name == "kthena-router"]:
            if not two:
                break
            script = scripts["json"]
            load.wrk(system.url, script, 64, 1)
            result = load.wrk(system.url, script, 64, duration)
            results["cells"].append({"system": system.name, "case": "json-2cores", "connections": 64,
                                     "repeat": 0, "rps": result.rps, "p50": result.p50, "p99": result.p99,
                                     "errors": result.errors, "cpu_us_per_request": float("nan"),
                                     "rss_kib": 0, "hwm_kib": 0})
        payload = load.body(16, False)
        for system in single_core:
            outcome = asyncio.run(load.open_loop(system.url, 500.0, duration, payload))
            results["open_loop"].append({"system": system.name, **outcome})
            print(f"open loop 500/s {system.name:18} p50 {outcome['p50'] * 1e3:.3f} ms p99 {outcome['p99'] * 1e3:.3f} ms"
                  f" errors {outcome['errors']}", flush=True)
        streams = 200 if args.quick else args.streams
        for system in single_core:
            if system.name == "direct":
                continue
            pids = system.pids()
            idle = systems.rss_kib(pids)
            peak: dict[str, int] = {}
            outcome = asyncio.run(load.slow_streams(
                system.url, streams, 64 if not args.quick else 24, 100, 20,
                on_held=lambda pids=pids, peak=peak: peak.setdefault("rss", systems.rss_kib(pids))))
            grown = peak.get("rss", idle) - idle
            results["streams"].append({"system": system.name, **outcome, "rss_idle_kib": idle,
                                       "rss_held_kib": peak.get("rss", idle),
                                       "rss_per_stream_kib": grown / max(outcome["held_open"], 1)})
            print(f"{streams} slow streams {system.name:18} held {outcome['held_open']} failures "
                  f"{outcome['failures']} rss +{grown / 1024:.1f} MiB probe p99 {outcome['probe_p99'] * 1e3:.1f} ms",
                  flush=True)
    finally:
        for system in started:
            system.stop()
        upstream.terminate()
        upstream.wait()
    results["machine"] = _machine()
    results["finished"] = time.strftime("%Y-%m-%d %H:%M:%S")
    (ROOT / "bench" / "results").mkdir(exist_ok=True)
    (ROOT / "bench" / "results" / "overhead.json").write_text(json.dumps(results, indent=1, default=str))
    text = report.render(results, quick=args.quick)
    print(text)
    if not args.no_write:
        report.write_section(ROOT / "bench" / "RESULTS.md", text)
    return 0


def median_spread(values: list[float]) -> tuple[float, float]:
    med = statistics.median(values)
    return med, (max(values) - min(values)) / med if med else 0.0


if __name__ == "__main__":
    sys.exit(main())
