"""`make soak`: mixed load through one router process for `--minutes`, with restarts and config churn.

Three simulated model servers (`kthena_router.sim` processes) sit behind a router process reading a manifest
directory. An open-loop client sends completions (Poisson, half streaming) while every second the
directory changes (a churning HTTPRoute or a Pod without a server is added or removed) and every few
seconds a model server is killed (SIGKILL or SIGTERM, alternately) or brought back. The router's RSS, file
descriptors and asyncio tasks are sampled throughout, and once at rest before and after the load.

The run fails (exit status 1) on any unexpected outcome (see `load.py`), a traceback in the router's log,
a slope after the warm-up beyond its bound (`RSS_BYTES_PER_REQUEST`, `EXCESS_BOUNDS`), counts at rest that
grew beyond `REST_SLACK`, or a router that does not exit 0 on SIGTERM. Raw results go to
bench/results/soak.json, the table to bench/RESULTS.md.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import platform
import random
import shutil
import signal
import sys
import tempfile
from pathlib import Path

import aiohttp

from bench.soak import fleet, load, probe, report

# RSS may grow by this much per request after the warm-up (the bound per minute scales with --rate): less than
# any per-request object that is never freed; at 200 requests/s it is 1.46 MiB a minute. Python keeps the
# memory of its busiest moment, so RSS also steps up whenever the load reaches a new peak of concurrency.
RSS_BYTES_PER_REQUEST = 128
# Descriptors and tasks the load does not explain should not grow at all; the bound leaves room for noise.
EXCESS_BOUNDS = {"fds_excess": 0.5, "tasks_excess": 0.5}
REST_SLACK = {"fds_excess": 2, "tasks": 2}  # growth allowed between the two samples at rest
WARM_UP_SHARE = 0.2
# Slopes are judged only over a window this long: over a minute or two, a step of one task or a warm-up
# effect reads as a steep slope. Shorter runs (the smoke test) are judged by the counts at rest alone.
MIN_JUDGED_WINDOW_S = 240.0


async def _wait_ready(url: str, limit: float = 30.0) -> None:
    async with aiohttp.ClientSession() as session, asyncio.timeout(limit):
        while True:
            try:
                async with session.get(url + "/readyz") as resp:
                    if resp.status == 200:
                        return
            except aiohttp.ClientError:
                pass
            await asyncio.sleep(0.1)


async def _wait_listening(hosts: tuple[str, ...], port: int, limit: float = 30.0) -> None:
    async with asyncio.timeout(limit):
        for host in hosts:
            while True:
                try:
                    _, writer = await asyncio.open_connection(host, port)
                except OSError:
                    await asyncio.sleep(0.1)
                    continue
                writer.close()
                await writer.wait_closed()
                break


class Chaos:
    """Every second a config change; every `restart_every` seconds a model server goes down or comes back."""

    def __init__(self, servers: fleet.ModelServers, manifests: Path, server_port: int, restart_every: float,
                 rng: random.Random) -> None:
        self.servers = servers
        self.manifests = manifests
        self.server_port = server_port
        self.restart_every = restart_every
        self.rng = rng
        self.layout = fleet.Layout()
        self.counts = {"route_added": 0, "route_removed": 0, "pod_added": 0, "pod_removed": 0,
                       "server_killed": 0, "server_terminated": 0, "server_started": 0}

    def _change_config(self) -> None:
        layout = self.layout
        if self.rng.random() < 0.5:
            i = self.rng.randrange(fleet.CHURN_ROUTES)
            removed = i in layout.churn_routes
            layout = fleet.Layout(layout.pods, layout.churn_routes ^ {i})
            self.counts["route_removed" if removed else "route_added"] += 1
        else:
            ip = self.rng.choice(fleet.SPARE_IPS)
            removed = ip in layout.pods
            pods = tuple(p for p in layout.pods if p != ip) if removed else (*layout.pods, ip)
            layout = fleet.Layout(pods, layout.churn_routes)
            self.counts["pod_removed" if removed else "pod_added"] += 1
        self.layout = layout
        fleet.write_manifests(self.manifests, layout, self.server_port)

    def _restart_step(self) -> None:
        down = self.servers.down
        if down:
            self.servers.start(down[0])
            self.counts["server_started"] += 1
            return
        ip = self.rng.choice(fleet.SERVER_IPS)
        killed = self.counts["server_killed"] + self.counts["server_terminated"]
        sig = signal.SIGKILL if killed % 2 == 0 else signal.SIGTERM
        self.servers.stop(ip, sig)  # SIGTERM waits for the server's own shutdown, off the loop
        self.counts["server_killed" if sig == signal.SIGKILL else "server_terminated"] += 1

    async def run(self, until: float) -> None:
        loop = asyncio.get_running_loop()
        next_restart = loop.time() + self.restart_every
        while loop.time() + 1.0 < until:
            await asyncio.sleep(1.0)
            self._change_config()
            if loop.time() >= next_restart:
                next_restart += self.restart_every
                await asyncio.to_thread(self._restart_step)

    def restore(self) -> None:
        for ip in self.servers.down:
            self.servers.start(ip)
            self.counts["server_started"] += 1
        self.layout = fleet.Layout()
        fleet.write_manifests(self.manifests, self.layout, self.server_port)


async def _sampler(session: aiohttp.ClientSession, pid: int, debug_port: int, started: float, until: float,
                   every: float, samples: list[dict], tally: load.Tally) -> None:
    loop = asyncio.get_running_loop()
    next_at = started
    while next_at < until:
        s = await probe.sample(session, pid, debug_port, loop.time() - started)
        samples.append(s)
        print(f"{s['t'] / 60:5.1f} min  rss {s['rss_mib']:6.1f} MiB  fds {s['fds']:4d} (excess {s['fds_excess']:3d})"
              f"  tasks {s['tasks']:4d} (excess {s['tasks_excess']:3d})  in progress {s['active_requests']:4d}  "
              f"answered {sum(tally.outcomes.values())}  {dict(tally.outcomes.most_common(4))}", flush=True)
        next_at += every
        await asyncio.sleep(max(0.0, next_at - loop.time()))


def _percentile(values: list[float], q: float) -> float:
    if not values:
        return float("nan")
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


def _tracebacks(log_file: Path) -> int:
    return log_file.read_bytes().count(b"Traceback") if log_file.exists() else 0


async def soak(minutes: float, rate: float, restart_every: float, hang_after: float, seed: int) -> dict:
    work = Path(tempfile.mkdtemp(prefix="kthena-soak-"))
    logs, manifests = work / "logs", work / "manifests"
    logs.mkdir()
    manifests.mkdir()
    server_port = fleet.free_port(*fleet.SERVER_IPS, *fleet.SPARE_IPS)
    port, metrics_port, debug_port = (fleet.free_port("127.0.0.1") for _ in range(3))
    url = f"http://127.0.0.1:{port}"
    rng = random.Random(seed)
    servers = fleet.ModelServers(server_port, logs)
    chaos = Chaos(servers, manifests, server_port, restart_every, rng)
    fleet.write_manifests(manifests, chaos.layout, server_port)
    for ip in fleet.SERVER_IPS:
        servers.start(ip)
    router = fleet.start_router(manifests, logs, port=port, metrics_port=metrics_port, debug_port=debug_port)
    tally = load.Tally()
    samples: list[dict] = []
    duration = minutes * 60
    every = min(5.0, max(1.0, duration / 120))
    exit_status: int | None = None
    try:
        await _wait_ready(url)
        await _wait_listening(fleet.SERVER_IPS, server_port)
        async with aiohttp.ClientSession() as session:
            await asyncio.sleep(1.0)  # the first scrape of every server
            rest_before = await probe.rest_sample(session, router.pid, debug_port, 0.0)
            loop = asyncio.get_running_loop()
            started = loop.time()
            until = started + duration
            sent, *_ = await asyncio.gather(
                load.open_loop(url, tally, rate=rate, until=until, hang_after=hang_after, seed=seed + 1),
                chaos.run(until),
                _sampler(session, router.pid, debug_port, started, until, every, samples, tally))
            load_seconds = loop.time() - started  # includes the wait for the last answers
            chaos.restore()
            await _wait_listening(fleet.SERVER_IPS, server_port)
            await asyncio.sleep(2.0)  # the restored layout is read and scraped; idle client sockets close
            rest_after = await probe.rest_sample(session, router.pid, debug_port, loop.time() - started)
    finally:
        exit_status = await asyncio.to_thread(fleet.stop_router, router)
        servers.close()
    warm = [s for s in samples if s["t"] >= duration * WARM_UP_SHARE]
    slopes = {key: probe.slope_per_minute([(s["t"], s[key]) for s in warm])
              for key in ("rss_mib", "fds", "tasks", "fds_excess", "tasks_excess")}
    outcomes = dict(tally.outcomes)
    unexpected = {k: v for k, v in outcomes.items() if not load.expected(k)}
    tracebacks = _tracebacks(logs / "router.log")
    rest_growth = {key: rest_after[key] - rest_before[key] for key in REST_SLACK}
    failures = [f"unexpected outcome {k}: {v}" for k, v in sorted(unexpected.items())]
    failures += [f"{tracebacks} tracebacks in the router's log"] if tracebacks else []
    window = duration * (1 - WARM_UP_SHARE)
    judged = window >= MIN_JUDGED_WINDOW_S
    bounds = {"rss_mib": RSS_BYTES_PER_REQUEST * rate * 60 / 2**20, **EXCESS_BOUNDS}
    failures += [f"{key} slope {slopes[key]:+.3f}/min over the bound {bound:.3g}" for key, bound in bounds.items()
                 if judged and slopes[key] > bound]
    failures += [f"{key} at rest grew by {rest_growth[key]} (allowed {slack})" for key, slack in REST_SLACK.items()
                 if rest_growth[key] > slack]
    failures += [f"not at rest {when} the load: {rest['active_requests']} requests in progress, "
                 f"{rest['client_connections']} client connections open"
                 for when, rest in (("before", rest_before), ("after", rest_after)) if not rest["at_rest"]]
    failures += [] if exit_status == 0 else [f"router exit status after SIGTERM: {exit_status}"]
    answered = sum(outcomes.values())
    return {
        "minutes": minutes, "rate": rate, "restart_every": restart_every, "hang_after": hang_after, "seed": seed,
        "machine": {"cpus": os.cpu_count(), "python": sys.version.split()[0], "host": platform.node()},
        "sent": sent, "answered": answered, "sent_rate": sent / duration, "load_seconds": load_seconds,
        "outcomes": outcomes, "unexpected": unexpected, "unexpected_examples": tally.examples,
        "latency_ok_s": {"p50": _percentile(tally.latencies, 0.5), "p99": _percentile(tally.latencies, 0.99),
                         "max": max(tally.latencies, default=float("nan"))},
        "events": chaos.counts, "sample_every_s": every, "warm_up_s": duration * WARM_UP_SHARE,
        "samples": samples, "rest_before": rest_before, "rest_after": rest_after, "rest_growth": rest_growth,
        "rest_slack": REST_SLACK, "slopes_per_minute": slopes, "bounds_per_minute": bounds,
        "rss_bytes_per_request": RSS_BYTES_PER_REQUEST, "slopes_judged": judged,
        "router_tracebacks": tracebacks, "router_exit": exit_status, "logs": str(logs),
        "failures": failures, "passed": not failures,
    }


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--minutes", type=float, default=float(os.environ.get("SOAK_MINUTES", "30")),
                   help="length of the load (default: $SOAK_MINUTES or 30)")
    p.add_argument("--rate", type=float, default=200.0, help="requests per second, Poisson (default: 200)")
    p.add_argument("--restart-every", type=float, default=3.0,
                   help="seconds between a model server going down and coming back (default: 3)")
    p.add_argument("--hang-after", type=float, default=30.0,
                   help="a request without a complete answer after this many seconds is a hang (default: 30)")
    p.add_argument("--seed", type=int, default=1)
    p.add_argument("--no-write", action="store_true", help="print the table, leave bench/RESULTS.md alone")
    p.add_argument("--keep-logs", action="store_true", help="keep the processes' logs after a passed run too")
    args = p.parse_args()
    try:
        import uvloop
    except ImportError:
        uvloop = None
    runner = uvloop.run if uvloop is not None else asyncio.run
    result = runner(soak(args.minutes, args.rate, args.restart_every, args.hang_after, args.seed))
    text = report.render(result)
    print(text)
    for failure in result["failures"]:
        print("FAILED:", failure)
    work = Path(result["logs"]).parent
    if result["passed"] and not args.keep_logs:
        shutil.rmtree(work, ignore_errors=True)
    else:
        print("logs:", result["logs"])
    if not args.no_write:
        results = fleet.ROOT / "bench" / "results"
        results.mkdir(exist_ok=True)
        (results / "soak.json").write_text(json.dumps(result, indent=1) + "\n")
        report.write_section(fleet.ROOT / "bench" / "RESULTS.md", text)
    return 0 if result["passed"] else 1


if __name__ == "__main__":
    sys.exit(main())
