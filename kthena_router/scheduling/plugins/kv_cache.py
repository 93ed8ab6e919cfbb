"""`kv-cache`: free KV-cache space, score = 1 - kv_usage (scraped, 0..1).

Candidates without fresh metrics score 0.5 (unknown).
"""

from __future__ import annotations

from dataclasses import dataclass

from kthena_router.scheduling.framework import Context, PluginArgs, PluginEnv
from kthena_router.snapshot import Endpoint

NAME = "kv-cache"
UNKNOWN = 0.5


@dataclass(frozen=True, slots=True)
class Args(PluginArgs):
    pass


class Plugin:
    def __init__(self, args: Args, env: PluginEnv) -> None:
        self.env = env

    def score(self, ctx: Context, endpoints: list[Endpoint]) -> list[float]:
        return [1.0 - s.kv_usage if s is not None else UNKNOWN for s in ctx.fresh(endpoints)]
