"""`lora-affinity`: send an adapter's requests where the adapter is already loaded.

For a request whose model is a LoRA adapter on some candidate (from `/v1/models` or the scraped
`lora_requests_info`): 1.0 when the adapter is running on the endpoint, 0.8 when the endpoint has a free
adapter slot (running + waiting adapters < max_lora), 0.6 when the adapter is waiting there, else 0.
Requests for a base model score 1 everywhere.
"""

from __future__ import annotations

from dataclasses import dataclass

from kthena_router.scheduling.framework import Context, PluginArgs, PluginEnv
from kthena_router.snapshot import Endpoint

NAME = "lora-affinity"
LOADED, FREE_SLOT, WAITING = 1.0, 0.8, 0.6


@dataclass(frozen=True, slots=True)
class Args(PluginArgs):
    pass


class Plugin:
    def __init__(self, args: Args, env: PluginEnv) -> None:
        self.env = env

    def score(self, ctx: Context, endpoints: list[Endpoint]) -> list[float]:
        model = ctx.model
        states = self.env.states.by_key
        found = [states.get(e.key) for e in endpoints]
        if not model or not any(s is not None and (model in s.adapters or model in s.lora.running
                                                   or model in s.lora.waiting) for s in found):
            return [1.0] * len(endpoints)
        scores = []
        for state in found:
            if state is None:
                scores.append(0.0)
                continue
            lora = state.lora
            if model in lora.running:
                scores.append(LOADED)
            elif lora.max_lora and len(lora.running) + len(lora.waiting) < lora.max_lora:
                scores.append(FREE_SLOT)
            elif model in lora.waiting:
                scores.append(WAITING)
            else:
                scores.append(0.0)
        return scores
