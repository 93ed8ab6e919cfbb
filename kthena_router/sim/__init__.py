"""A vLLM-compatible model-server simulator: OpenAI endpoints, queueing and vLLM's /metrics, no GPU.

It backs `kthena-router --simulate` (one simulator per pool endpoint, in-process), the integration tests
and scheduling benchmarks. Output is deterministic; latency, concurrency and reported load are set by
`SimConfig`. Run one on its own with `python -m kthena_router.sim --model NAME`.
"""

from kthena_router.sim.config import SimConfig
from kthena_router.sim.server import SimServer, build_app, start_simulator

__all__ = ["SimConfig", "SimServer", "build_app", "start_simulator"]
