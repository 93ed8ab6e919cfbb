"""`least-latency`: recent time to first token and time per output token (kthena's least-latency).

TTFT and TPOT are the means of the server's histograms between two scrapes; where a server reports none
(an engine without them, or no traffic since the router started), the router's own measurements of
streamed responses stand in (an exponential moving average with `smoothing`). Each is min-max scaled over
the candidates that have a value (lowest gets 1); score = a * sTTFT + (1 - a) * sTPOT with
a = `TTFTTPOTWeightFactor` (default 0.5). A candidate without a value scores 0.5 on that part.
"""

from __future__ import annotations

import math
from collections.abc import Collection
from dataclasses import dataclass
from typing import ClassVar

from kthena_router.scheduling.framework import Context, PluginArgs, PluginEnv, min_max_scores
from kthena_router.snapshot import Endpoint, EndpointKey

NAME = "least-latency"
UNKNOWN = 0.5


@dataclass(frozen=True, slots=True)
class Args(PluginArgs):
    ALIASES: ClassVar[dict[str, str]] = {"TTFTTPOTWeightFactor": "ttft_weight"}
    ttft_weight: float = 0.5
    smoothing: float = 0.2  # weight of the newest measurement in the moving average

    def __post_init__(self) -> None:
        if not math.isfinite(self.ttft_weight) or not 0.0 <= self.ttft_weight <= 1.0:
            raise ValueError(f"TTFTTPOTWeightFactor must be within 0..1, got {self.ttft_weight}")
        if not 0.0 < self.smoothing <= 1.0:
            raise ValueError(f"smoothing must be within (0, 1], got {self.smoothing}")


def _scaled(values: list[float]) -> list[float]:
    known = [(i, v) for i, v in enumerate(values) if v > 0]
    out = [UNKNOWN] * len(values)
    if known:
        for (i, _), s in zip(known, min_max_scores([v for _, v in known]), strict=True):
            out[i] = s
    return out


class Plugin:
    def __init__(self, args: Args, env: PluginEnv) -> None:
        self.alpha = args.ttft_weight
        self.smoothing = args.smoothing
        self.measured: dict[EndpointKey, list[float]] = {}  # key -> [ttft, tpot], router-measured

    def score(self, ctx: Context, endpoints: list[Endpoint]) -> list[float]:
        measured = self.measured
        ttft, tpot = [], []
        for endpoint, state in zip(endpoints, ctx.fresh(endpoints), strict=True):
            own = measured.get(endpoint.key)
            ttft.append(state.ttft if state is not None and state.ttft > 0 else own[0] if own else 0.0)
            tpot.append(state.tpot if state is not None and state.tpot > 0 else own[1] if own else 0.0)
        a = self.alpha
        return [a * x + (1 - a) * y for x, y in zip(_scaled(ttft), _scaled(tpot), strict=True)]

    def on_finished(self, ctx: Context, endpoint: Endpoint, ttft: float, tpot: float) -> None:
        own = self.measured.get(endpoint.key)
        if own is None:
            self.measured[endpoint.key] = [ttft, tpot]
            return
        k = self.smoothing
        own[0] += k * (ttft - own[0])
        if tpot > 0:
            own[1] = tpot if own[1] <= 0 else own[1] + k * (tpot - own[1])

    def forget(self, alive: Collection[EndpointKey]) -> None:
        for key in [k for k in self.measured if k not in alive]:
            del self.measured[key]
