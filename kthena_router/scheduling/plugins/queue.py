"""`queue`: the server's waiting queue (the inference extension's queue scorer).

score = (maxQ - q) / (maxQ - minQ) over the candidates with fresh metrics, q = scraped
`num_requests_waiting`; all equal gives 1. Candidates without fresh metrics score 0.5 (unknown).
"""

from __future__ import annotations

from dataclasses import dataclass

from kthena_router.scheduling.framework import Context, PluginArgs, PluginEnv
from kthena_router.snapshot import Endpoint

NAME = "queue"
UNKNOWN = 0.5


@dataclass(frozen=True, slots=True)
class Args(PluginArgs):
    pass


class Plugin:
    def __init__(self, args: Args, env: PluginEnv) -> None:
        self.env = env

    def score(self, ctx: Context, endpoints: list[Endpoint]) -> list[float]:
        view = ctx.fresh(endpoints)
        values = [s.waiting for s in view if s is not None]
        if not values:
            return [UNKNOWN] * len(endpoints)
        lo, hi = min(values), max(values)
        if hi <= lo:
            return [1.0 if s is not None else UNKNOWN for s in view]
        span = hi - lo
        return [(hi - s.waiting) / span if s is not None else UNKNOWN for s in view]
