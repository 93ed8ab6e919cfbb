"""`random`: a uniform random score per candidate (a baseline, or a tie-breaker with a small weight)."""

from __future__ import annotations

from dataclasses import dataclass

from kthena_router.scheduling.framework import Context, PluginArgs, PluginEnv
from kthena_router.snapshot import Endpoint

NAME = "random"


@dataclass(frozen=True, slots=True)
class Args(PluginArgs):
    pass


class Plugin:
    def __init__(self, args: Args, env: PluginEnv) -> None:
        self.rng = env.rng

    def score(self, ctx: Context, endpoints: list[Endpoint]) -> list[float]:
        rand = self.rng.random
        return [rand() for _ in endpoints]
