"""Command line of the simulator: `python -m kthena_router.sim --model NAME [options]`.

Parses flags into a `SimConfig`, serves it with `start_simulator` on uvloop when it is installed, and
exits with status 0 on SIGINT or SIGTERM after closing the server.
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import signal
import sys
from collections.abc import Sequence

from kthena_router.sim.config import SimConfig
from kthena_router.sim.server import start_simulator

log = logging.getLogger(__name__)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m kthena_router.sim",
        description="Serve a simulated vLLM model server (OpenAI API and vLLM metrics, no GPU).",
    )
    parser.add_argument("--host", default="127.0.0.1", help="address to listen on (default: %(default)s)")
    parser.add_argument(
        "--port", type=int, default=8000, help="port to listen on; 0 picks a free one (default: %(default)s)"
    )
    parser.add_argument("--model", required=True, help="base model name requests must use")
    parser.add_argument(
        "--lora",
        action="append",
        default=[],
        metavar="NAME",
        help="a LoRA adapter name to serve (repeatable)",
    )
    parser.add_argument(
        "--ttft-ms", type=float, default=0.0, help="time to first token, in ms (default: %(default)s)"
    )
    parser.add_argument(
        "--itl-ms", type=float, default=0.0, help="inter-token latency, in ms (default: %(default)s)"
    )
    parser.add_argument(
        "--max-num-seqs",
        type=int,
        default=256,
        help="requests generating at once; the rest queue (default: %(default)s)",
    )
    parser.add_argument(
        "--fake-waiting", type=int, default=None, help="report this many waiting requests in /metrics"
    )
    parser.add_argument(
        "--fake-running", type=int, default=None, help="report this many running requests in /metrics"
    )
    parser.add_argument(
        "--fake-kv-usage", type=float, default=None, help="report this KV-cache usage (0..1) in /metrics"
    )
    parser.add_argument(
        "--output-tokens",
        type=int,
        default=16,
        help="tokens generated when a request sets no max_tokens (default: %(default)s)",
    )
    parser.add_argument(
        "--kv-blocks",
        type=int,
        default=None,
        help="KV-cache capacity in blocks; enables admission by KV space and prefix caching (default: unbounded)",
    )
    parser.add_argument(
        "--block-size", type=int, default=16, help="tokens per KV-cache block (default: %(default)s)"
    )
    parser.add_argument(
        "--speed",
        type=float,
        default=1.0,
        help="divides every step's duration: 2 is twice as fast (default: %(default)s)",
    )
    parser.add_argument(
        "--max-loras",
        type=int,
        default=None,
        help="LoRA adapters loaded at once (default: every --lora adapter)",
    )
    parser.add_argument(
        "--lora-load-ms",
        type=float,
        default=0.0,
        help="time to load an adapter into a LoRA slot, in ms (default: %(default)s)",
    )
    parser.add_argument(
        "--prefill-ms-per-token",
        type=float,
        default=0.0,
        help="prefill time per prompt token not found in the prefix cache, in ms (default: %(default)s)",
    )
    parser.add_argument(
        "--itl-batch-factor",
        type=float,
        default=0.0,
        help="each further sequence in a batch adds this fraction of --itl-ms to a step (default: %(default)s)",
    )
    parser.add_argument(
        "--log-level",
        default="info",
        choices=["debug", "info", "warning", "error"],
        help="(default: %(default)s)",
    )
    return parser


def config_from_args(args: argparse.Namespace) -> SimConfig:
    return SimConfig(
        model=args.model,
        loras=tuple(args.lora),
        ttft_ms=args.ttft_ms,
        itl_ms=args.itl_ms,
        max_num_seqs=args.max_num_seqs,
        fake_waiting=args.fake_waiting,
        fake_running=args.fake_running,
        fake_kv_usage=args.fake_kv_usage,
        default_output_tokens=args.output_tokens,
        kv_blocks=args.kv_blocks,
        block_size=args.block_size,
        speed=args.speed,
        max_loras=args.max_loras,
        lora_load_ms=args.lora_load_ms,
        prefill_ms_per_token=args.prefill_ms_per_token,
        itl_batch_factor=args.itl_batch_factor,
    )


async def serve(config: SimConfig, host: str, port: int) -> None:
    """Serve until SIGINT or SIGTERM arrives, then close the server."""
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for signum in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(signum, stop.set)
    server = await start_simulator(config, host, port)
    try:
        await stop.wait()
        log.debug("signal received, closing %s", server.url)
    finally:
        await server.close()
        for signum in (signal.SIGINT, signal.SIGTERM):
            loop.remove_signal_handler(signum)


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        config = config_from_args(args)
    except ValueError as exc:
        parser.error(str(exc))
    logging.basicConfig(
        level=args.log_level.upper(),
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
        stream=sys.stderr,
    )
    try:
        import uvloop
    except ImportError:
        asyncio.run(serve(config, args.host, args.port))
    else:
        uvloop.run(serve(config, args.host, args.port))
    return 0


if __name__ == "__main__":
    sys.exit(main())
