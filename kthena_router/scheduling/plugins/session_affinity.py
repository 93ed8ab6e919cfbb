"""`session-affinity`: requests carrying the same session header go to the same endpoint.

Rendezvous (highest-random-weight) hashing of the header value against each candidate's address: the
winner scores 1, the rest 0, so a session only moves when its endpoint leaves, and then only that
endpoint's sessions move. The hash is stable across processes (blake2b), so every router replica agrees.
Requests without the header score 0 everywhere.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass

from kthena_router.scheduling.framework import Context, PluginArgs, PluginEnv
from kthena_router.snapshot import Endpoint

NAME = "session-affinity"
_MASK = (1 << 64) - 1


@dataclass(frozen=True, slots=True)
class Args(PluginArgs):
    header: str = "x-session-id"

    def __post_init__(self) -> None:
        if not self.header.strip():
            raise ValueError("header must not be empty")


def _stable(text: str) -> int:
    return int.from_bytes(hashlib.blake2b(text.encode(), digest_size=8).digest(), "little")


def _mix(x: int) -> int:
    """splitmix64's finaliser: spreads the bits of `x` over 64 bits."""
    x = (x ^ (x >> 30)) * 0xBF58476D1CE4E5B9 & _MASK
    x = (x ^ (x >> 27)) * 0x94D049BB133111EB & _MASK
    return x ^ (x >> 31)


class Plugin:
    def __init__(self, args: Args, env: PluginEnv) -> None:
        self.header = args.header
        self._endpoint_hash: dict[str, int] = {}

    def score(self, ctx: Context, endpoints: list[Endpoint]) -> list[float]:
        scores = [0.0] * len(endpoints)
        session = ctx.headers.get(self.header) if ctx.headers is not None else None
        if not session:
            return scores
        seed = _stable(session)
        cache = self._endpoint_hash
        best, best_i = -1, 0
        for i, endpoint in enumerate(endpoints):
            eh = cache.get(endpoint.address)
            if eh is None:
                if len(cache) > 65536:
                    cache.clear()
                eh = cache[endpoint.address] = _stable(endpoint.address)
            weight = _mix(seed ^ eh)
            if weight > best:
                best, best_i = weight, i
        scores[best_i] = 1.0
        return scores
