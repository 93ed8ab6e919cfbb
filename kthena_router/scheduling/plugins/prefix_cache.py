"""`prefix-cache`: prefer the endpoint that has probably cached the longest prefix of this prompt.

score = matched blocks / prompt blocks, from the router-local index in `scheduling/prefix.py` (blocks of
`blockSize` characters, at most `maxBlocksToMatch`, `lruCapacityPerServer` hashes remembered per endpoint).
The index learns from `on_served`: the endpoint that answered now holds all of the prompt's blocks.
Prompts shorter than one block score 0 everywhere. With `topKMatches` > 0, only the candidates with the
K longest matches score (ties at the cut-off included), as in Kthena, so a prefix cached nearly everywhere
does not pull towards every endpoint alike. Kthena's spellings of the arguments (`blockSizeToHash`,
`maxHashCacheSize`) are accepted, so its configuration files load unchanged.
"""

from __future__ import annotations

import heapq
from collections.abc import Collection
from dataclasses import dataclass
from typing import ClassVar

from kthena_router.scheduling.framework import Context, PluginArgs, PluginEnv
from kthena_router.scheduling.prefix import PrefixIndex, block_hashes, prompt_text
from kthena_router.snapshot import Endpoint, EndpointKey

NAME = "prefix-cache"


@dataclass(frozen=True, slots=True)
class Args(PluginArgs):
    ALIASES: ClassVar[dict[str, str]] = {"blockSizeToHash": "block_size",
                                         "maxHashCacheSize": "lru_capacity_per_server"}
    block_size: int = 64  # characters (about 16 tokens)
    max_blocks_to_match: int = 256
    lru_capacity_per_server: int = 31250
    top_k_matches: int = 0  # 0: every candidate scores its match

    def __post_init__(self) -> None:
        for name, value in (("blockSize", self.block_size), ("maxBlocksToMatch", self.max_blocks_to_match),
                            ("lruCapacityPerServer", self.lru_capacity_per_server)):
            if value < 1:
                raise ValueError(f"{name} must be >= 1, got {value}")
        if self.top_k_matches < 0:
            raise ValueError(f"topKMatches must be >= 0, got {self.top_k_matches}")


class Plugin:
    def __init__(self, args: Args, env: PluginEnv) -> None:
        self.args = args
        self.index = PrefixIndex(args.lru_capacity_per_server)

    def hashes(self, ctx: Context) -> list[int]:
        hashes = ctx.prompt_hashes
        if hashes is None:
            hashes = ctx.prompt_hashes = block_hashes(ctx.model or "", prompt_text(ctx.payload),
                                                      self.args.block_size, self.args.max_blocks_to_match)
        return hashes

    def score(self, ctx: Context, endpoints: list[Endpoint]) -> list[float]:
        hashes = self.hashes(ctx)
        if not hashes:
            return [0.0] * len(endpoints)
        total = len(hashes)
        matched = self.index.match(hashes, [e.key for e in endpoints])
        k = self.args.top_k_matches
        if k:
            nonzero = [n for n in matched if n]
            if len(nonzero) > k:  # rare: the prefix is cached on more than K candidates
                cut = heapq.nlargest(k, nonzero)[-1]
                return [n / total if n >= cut else 0.0 for n in matched]
        return [n / total for n in matched]

    def on_served(self, ctx: Context, endpoint: Endpoint) -> None:
        self.index.add(endpoint.key, self.hashes(ctx))

    def forget(self, alive: Collection[EndpointKey]) -> None:
        self.index.forget(alive)
