"""Run the scheduling benchmark: `python -m bench.scheduling [--quick] [options]`.

For every workload and every system under test: a fresh fleet, the system started in front of it, then
the workload's traces at increasing rates (each system gets the identical traces), a drain after each.
CPU pinning when there are two or more CPUs: the router under test on CPU 0; the fleet and this load
generator on CPU 1. Refuses to start when the machine is already busy (1-minute load average), and
stops starting new cells once the time budget is spent (what ran is still reported).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import logging
import os
import platform
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from bench.scheduling import fleet as fleet_mod
from bench.scheduling.client import run_trace
from bench.scheduling.report import (
    SLO_ATTAINMENT,
    SLO_TPOT_S,
    SLO_TTFT_S,
    Cell,
    plot,
    summarize,
    write_results,
)
from bench.scheduling.systems import System, all_systems, scheduler_available, start_system
from bench.scheduling.workloads import WORKLOADS, build_trace

log = logging.getLogger("bench.scheduling")

BENCH = Path(__file__).resolve().parents[1]
PEER_BIN = BENCH / ".venv-peers" / "bin" / "vllm-router"
# What the routers under test print (warnings and errors), for a look after a surprising cell.
SYSTEMS_LOG = Path(tempfile.gettempdir()) / "kthena-bench-scheduling-systems.log"

FULL = {"duration": 3.0, "drain": 5.0, "rates": (0.6, 1.0, 1.4), "budget": 1700.0}
QUICK = {"duration": 2.0, "drain": 4.0, "rates": (0.6, 1.2), "budget": 170.0}
QUICK_SYSTEMS = ("default", "round-robin", "vllm-router cache_aware")
COMPARISON = ("default", "round-robin")  # and every vllm-router policy


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(prog="python -m bench.scheduling", description=__doc__.splitlines()[0])
    p.add_argument("--quick", action="store_true", help="a few systems, two rates, short cells (< 3 min)")
    p.add_argument("--workloads", nargs="*", choices=sorted(WORKLOADS), help="default: all")
    p.add_argument(
        "--systems", nargs="*", help="system names (default, round-robin, 'vllm-router cache_aware', ...)"
    )
    p.add_argument("--rates", nargs="*", type=float, help="multiples of each workload's nominal rate")
    p.add_argument("--duration", type=float, help="seconds of arrivals per cell")
    p.add_argument(
        "--drain", type=float, help="seconds a cell waits for the last requests after the last arrival"
    )
    p.add_argument("--budget", type=float, help="seconds after which no new cell starts")
    p.add_argument("--seed", type=int, default=7)
    p.add_argument(
        "--merge",
        action="store_true",
        help="keep the earlier results (results/scheduling.json) of the (workload, system) pairs not run now",
    )
    p.add_argument(
        "--max-load",
        type=float,
        default=float(os.environ.get("BENCH_MAX_LOAD", "0.7")),
        help="refuse to start above this 1-minute load average ($BENCH_MAX_LOAD)",
    )
    p.add_argument("--results", type=Path, default=BENCH / "RESULTS.md")
    p.add_argument("--out", type=Path, default=BENCH / "results")
    return p.parse_args(argv)


def pick_systems(args: argparse.Namespace) -> tuple[list[System], list[str]]:
    notes: list[str] = []
    systems = all_systems()
    if not scheduler_available():
        systems = [s for s in systems if s.kind == "peer"]
        systems.insert(0, System("default", "ours"))
        notes.append(
            "This router has no pluggable scheduler yet: `default` is its built-in least in-flight "
            "picker and the single-plugin runs are skipped."
        )
    wanted = args.systems or (QUICK_SYSTEMS if args.quick else None)
    if wanted:
        systems = [s for s in systems if s.name in wanted]
    # The target's comparison first, so a spent time budget drops single-plugin runs before it.
    systems.sort(key=lambda s: s.name not in ("default", "round-robin") and s.kind != "peer")
    if not PEER_BIN.exists():
        dropped = [s.name for s in systems if s.kind == "peer"]
        systems = [s for s in systems if s.kind != "peer"]
        if dropped:
            notes.append(
                f"vllm-router is not installed in {PEER_BIN.parent.parent.name} (PyPI `vllm-router` could "
                f"not be installed): skipped {', '.join(dropped)}."
            )
    return systems, notes


def peer_version() -> str:
    try:
        out = subprocess.run(
            [str(BENCH / ".venv-peers" / "bin" / "pip"), "show", "vllm-router"],
            capture_output=True,
            text=True,
            timeout=30,
        ).stdout
    except (OSError, subprocess.TimeoutExpired):
        return "not installed"
    return next(
        (line.split(":", 1)[1].strip() for line in out.splitlines() if line.startswith("Version:")),
        "not installed",
    )


async def run(args: argparse.Namespace, system_log) -> int:
    settings = QUICK if args.quick else FULL
    duration = args.duration or settings["duration"]
    drain = args.drain or settings["drain"]
    multiples = tuple(args.rates or settings["rates"])
    budget = args.budget or settings["budget"]
    workloads = [WORKLOADS[name] for name in (args.workloads or WORKLOADS)]
    systems, notes = pick_systems(args)
    ncpu = os.cpu_count() or 1
    router_cpus, other_cpus = ("0", "1") if ncpu >= 2 else (None, None)
    if other_cpus is not None:
        os.sched_setaffinity(0, {1})

    raw_path = args.out / "scheduling.json"
    previous = (
        [Cell(**raw) for raw in json.loads(raw_path.read_text())] if args.merge and raw_path.exists() else []
    )
    cells: list[Cell] = []
    skipped: list[str] = []
    started = time.monotonic()
    with tempfile.TemporaryDirectory(prefix="bench-scheduling-") as tmp:
        workdir = Path(tmp)
        for workload in workloads:
            rates = [round(workload.nominal_rate * m, 2) for m in multiples]
            cell_duration = max(duration, workload.min_duration)
            cell_drain = max(drain, workload.min_drain)
            if (cell_duration, cell_drain) != (duration, drain):
                notes.append(f"{workload.name}: {cell_duration:g} s of arrivals and up to {cell_drain:g} s of "
                             "drain per cell (it needs time to saturate the fleet)"
                             + ("; run by the compared systems only." if workload.comparison_only else "."))
            traces = {rate: build_trace(workload, rate, cell_duration, args.seed) for rate in rates}
            for system in systems:
                if system.only_for:
                    if workload.name not in system.only_for:
                        continue
                elif workload.comparison_only and system.name not in COMPARISON and system.kind != "peer":
                    continue
                if time.monotonic() - started > budget:
                    skipped.append(f"{workload.name} / {system.name}")
                    continue
                fleet = await fleet_mod.start_fleet(other_cpus)
                try:
                    running = await start_system(
                        system, workdir, fleet.urls, router_cpus, PEER_BIN, system_log
                    )
                    try:
                        for rate in rates:
                            results, wall = await run_trace(running.base, traces[rate], cell_drain)
                            cell = summarize(workload.name, system.name, rate, cell_duration, results)
                            cells.append(cell)
                            log.warning(
                                "%-13s %-24s %5.1f req/s: p90 TTFT %.2fs, %4.0f tok/s, SLO %3.0f%%, "
                                "shed %d, errors %d, timeouts %d (%.0fs)",
                                workload.name,
                                system.name,
                                rate,
                                cell.ttft_p90,
                                cell.tokens_per_s,
                                100 * cell.attainment,
                                cell.shed,
                                cell.errors,
                                cell.timeouts,
                                wall,
                            )
                            await asyncio.sleep(0.3)
                    finally:
                        running.stop()
                finally:
                    fleet.stop()
                raw_path.write_text(json.dumps([c.to_dict() for c in cells], indent=1))
    elapsed = time.monotonic() - started
    run_now = {(c.workload, c.system) for c in cells}
    if args.merge and previous:
        kept = [c for c in previous if (c.workload, c.system) not in run_now]
        cells = kept + cells
        present = {c.workload for c in cells}
        workloads = [w for w in WORKLOADS.values() if w.name in present]
        pairs = sorted(run_now)
        ran = ", ".join(f"{w} / {s}" for w, s in pairs[:8]) + (f" and {len(pairs) - 8} more" if len(pairs) > 8 else "")
        notes.append(
            f"This invocation ran {ran or 'nothing'}; every other cell is from earlier runs (`--merge`), with "
            "the same fleet and settings unless stated otherwise above."
        )
        raw_path.write_text(json.dumps([c.to_dict() for c in cells], indent=1))

    plots: dict[str, str] = {}
    for workload in workloads:
        mine = [c for c in cells if c.workload == workload.name]
        if mine:
            name = f"scheduling-{workload.name}.png"
            plot(workload.name, workload.title, mine, args.out / name)
            plots[workload.name] = (
                f"{args.out.relative_to(args.results.parent)}/{name}"
                if args.out.is_relative_to(args.results.parent)
                else str(args.out / name)
            )
    speeds = ", ".join(f"{s:g}" for s in fleet_mod.SPEEDS)
    one = fleet_mod.fleet_configs()[0][1]
    header = [
        "## Scheduling quality",
        "",
        f"Mode: {'quick' if args.quick else 'full'}; {duration:g} s of Poisson arrivals per cell, then up to "
        f"{drain:g} s of drain; rates = {', '.join(f'{m:g}' for m in multiples)} × each workload's nominal "
        f"rate; seed {args.seed}; run took {elapsed:.0f} s on {platform.node() or 'this machine'} "
        f"({ncpu} CPUs, {platform.python_implementation()} {platform.python_version()}, vllm-router "
        f"{peer_version()}).",
        "",
        f"Fleet: {len(fleet_mod.SPEEDS)} simulators (`kthena_router.sim`) with speeds {speeds}; each: "
        f"max-num-seqs {one.max_num_seqs}, step = ttft {one.ttft_ms:g} ms + {one.prefill_ms_per_token:g} ms per "
        f"uncached prompt token when prefilling, itl {one.itl_ms:g} ms × (1 + {one.itl_batch_factor:g} × "
        f"(batch − 1)) when decoding, KV cache {one.kv_blocks} blocks of {one.block_size} tokens with prefix "
        f"caching, {one.max_loras} LoRA slots ({one.lora_load_ms:g} ms per load), all divided by the speed.",
        "",
        f"Pinning: {'router under test on CPU 0, fleet and load generator on CPU 1' if router_cpus else 'none'}. "
        f'SLO: TTFT ≤ {SLO_TTFT_S:g} s and time per output token ≤ {SLO_TPOT_S:g} s; "SLO met" is the share of '
        f"offered requests within it (a system meets the SLO at a rate at ≥ {SLO_ATTAINMENT:.0%}). TTFT and "
        "e2e percentiles are over served requests, requests cut off at the drain deadline counting as ∞; "
        "shed = 429/503 answers. Systems: `default` is our built-in pipeline; other plain names are our "
        "router with that one Score plugin (weight 1); `vllm-router <policy>` is PyPI vllm-router on the same "
        "simulators.",
        "",
        *[f"Note: {n}" for n in notes],
    ]
    if skipped:
        header.append(f"Note: time budget ({budget:.0f} s) spent; not run: {', '.join(skipped)}.")
    write_results(args.results, cells, {w.name: w.title for w in workloads}, header, plots)
    print(f"wrote {args.results} and {len(plots)} plots in {args.out} ({elapsed:.0f} s)")
    return 0


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    logging.basicConfig(level=logging.WARNING, format="%(asctime)s %(message)s", stream=sys.stderr)
    load1 = os.getloadavg()[0]
    if load1 > args.max_load:
        print(
            f"bench-scheduling: the machine is busy (1-minute load average {load1:.2f} > {args.max_load:g}); "
            "not starting. Wait for it to settle or raise BENCH_MAX_LOAD.",
            file=sys.stderr,
        )
        return 2
    import uvloop

    args.out.mkdir(parents=True, exist_ok=True)
    with open(SYSTEMS_LOG, "wb") as system_log:
        return uvloop.run(run(args, system_log))


if __name__ == "__main__":
    sys.exit(main())
