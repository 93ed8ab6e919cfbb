"""`least-request`: router in-flight load, as a filter on the server queue and as a score.

Filter: keep endpoints whose scraped `waiting` is below `maxWaitingRequests` (endpoints without fresh
metrics are kept: nothing says they are full). Score: load = requests in flight from this router + the
server's scraped `waiting` (when fresh), min-max scaled so the least loaded candidate scores 1. The
in-flight part changes synchronously on dispatch and completion, so bursts between scrapes spread at
once; the waiting part accounts for load from other routers and clients.
"""

from __future__ import annotations

from dataclasses import dataclass

from kthena_router.scheduling.framework import Context, PluginArgs, PluginEnv, min_max_scores
from kthena_router.snapshot import Endpoint

NAME = "least-request"


@dataclass(frozen=True, slots=True)
class Args(PluginArgs):
    max_waiting_requests: int = 10

    def __post_init__(self) -> None:
        if self.max_waiting_requests < 1:
            raise ValueError(f"maxWaitingRequests must be >= 1, got {self.max_waiting_requests}")


class Plugin:
    def __init__(self, args: Args, env: PluginEnv) -> None:
        self.args = args
        self.env = env

    def filter(self, ctx: Context, endpoints: list[Endpoint]) -> list[Endpoint]:
        limit = self.args.max_waiting_requests
        return [e for e, s in zip(endpoints, ctx.fresh(endpoints), strict=True) if s is None or s.waiting < limit]

    def score(self, ctx: Context, endpoints: list[Endpoint]) -> list[float]:
        counts = self.env.inflight.counts
        loads = [counts.get(e.key, 0) + (s.waiting if s is not None else 0.0)
                 for e, s in zip(endpoints, ctx.fresh(endpoints), strict=True)]
        return min_max_scores(loads)
