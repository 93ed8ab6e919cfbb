"""The last stage of the pipeline: choose one candidate from the weighted score sums.

`max-score` takes the highest sum, ties (within 1e-9) broken uniformly at random, like the inference
extension's default picker. `weighted-random` draws in proportion to the sums (A-Res keys u^(1/score));
all-zero sums give a uniform draw.
"""

from __future__ import annotations

import random
from typing import Protocol

from kthena_router.snapshot import Endpoint

_EPSILON = 1e-9


class FinalPicker(Protocol):
    def choose(self, endpoints: list[Endpoint], totals: list[float]) -> Endpoint: ...


class MaxScorePicker:
    NAME = "max-score"

    def __init__(self, rng: random.Random) -> None:
        self.rng = rng

    def choose(self, endpoints: list[Endpoint], totals: list[float]) -> Endpoint:
        best = max(totals)
        floor = best - _EPSILON
        ties = [i for i, t in enumerate(totals) if t >= floor]
        return endpoints[ties[0] if len(ties) == 1 else self.rng.choice(ties)]


class WeightedRandomPicker:
    NAME = "weighted-random"

    def __init__(self, rng: random.Random) -> None:
        self.rng = rng

    def choose(self, endpoints: list[Endpoint], totals: list[float]) -> Endpoint:
        rand = self.rng.random
        best_key, best_i = -1.0, -1
        for i, total in enumerate(totals):
            if total <= 0:
                continue
            key = rand() ** (1.0 / total)
            if key > best_key:
                best_key, best_i = key, i
        if best_i < 0:
            return self.rng.choice(endpoints)
        return endpoints[best_i]


PICKERS: dict[str, type[MaxScorePicker] | type[WeightedRandomPicker]] = {
    MaxScorePicker.NAME: MaxScorePicker,
    WeightedRandomPicker.NAME: WeightedRandomPicker,
}
