"""`round-robin`: each request prefers the next candidate in turn (score 1 for it, 0 for the rest).

The turn is one counter per plugin; candidates are taken in the pool's stable order, so alone this
plugin gives a plain Service's round-robin.
"""

from __future__ import annotations

from dataclasses import dataclass

from kthena_router.scheduling.framework import Context, PluginArgs, PluginEnv
from kthena_router.snapshot import Endpoint

NAME = "round-robin"


@dataclass(frozen=True, slots=True)
class Args(PluginArgs):
    pass


class Plugin:
    def __init__(self, args: Args, env: PluginEnv) -> None:
        self.turn = 0

    def score(self, ctx: Context, endpoints: list[Endpoint]) -> list[float]:
        scores = [0.0] * len(endpoints)
        scores[self.turn % len(endpoints)] = 1.0
        self.turn += 1
        return scores
