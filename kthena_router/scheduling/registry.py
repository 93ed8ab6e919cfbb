"""Every scheduler plugin by name. Adding a plugin is one module in `plugins/` and one line here."""

from __future__ import annotations

from types import ModuleType

from kthena_router.scheduling.plugins import (
    kv_cache,
    least_latency,
    least_request,
    lora_affinity,
    prefix_cache,
    queue,
    random_score,
    round_robin,
    session_affinity,
)

PLUGINS: dict[str, ModuleType] = {module.NAME: module for module in (
    least_request,
    queue,
    kv_cache,
    least_latency,
    prefix_cache,
    lora_affinity,
    session_affinity,
    random_score,
    round_robin,
)}
# kthena's name for the kv-cache scorer, accepted so its configuration files load unchanged.
ALIASES: dict[str, str] = {"gpu-usage": "kv-cache"}
# kthena plugins this router does not have, with what to use instead (said when a file names one).
NOT_PROVIDED: dict[str, str] = {
    "kvcache-aware": "kthena's kvcache-aware needs Redis and kthena's runtime sidecar; `prefix-cache` "
                     "estimates the same affinity from the prompts the router sent",
}


def lookup(name: str) -> ModuleType | None:
    return PLUGINS.get(ALIASES.get(name, name))
