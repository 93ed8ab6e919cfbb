"""Settings of one simulated vLLM model server.

A `SimConfig` is built once (from CLI flags or by the router's `--simulate` mode) and passed down to the
engine, the metrics and the HTTP layer; nothing reads settings from anywhere else. Invalid values fail at
construction with a `ValueError` that names the field.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

# The context length the simulator advertises in /v1/models and enforces on prompt + output tokens.
MAX_MODEL_LEN = 4096

# Tokens per KV-cache block when `block_size` is not given (vLLM's default on GPUs).
DEFAULT_BLOCK_SIZE = 16


@dataclass(frozen=True, slots=True)
class SimConfig:
    """What one simulator serves and how fast it pretends to be.

    `fake_*` values replace what /metrics reports (the engine itself keeps queueing for real), so a test
    or a demo can show a loaded server without loading it.

    The cost model of one engine step (see `engine.py`), all divided by `speed`:
    `ttft_ms + prefill_ms_per_token * uncached prompt tokens` when the step prefills any sequence, plus
    `itl_ms * (1 + itl_batch_factor * (batch size - 1))` when it decodes any, plus `lora_load_ms` per
    adapter loaded into a slot for it. With the defaults a lone request sees exactly `ttft_ms`, then
    `itl_ms` per token.

    `kv_blocks` bounds the KV cache to that many blocks of `block_size` tokens: a request is admitted only
    when its prompt and output fit, and the blocks of finished requests stay cached (least recently used
    evicted first) so a later prompt with the same prefix skips prefilling it. Unset, KV usage is only
    reported (tokens held over a fixed budget) and nothing is cached. `max_loras` bounds the adapters
    loaded at once; unset, every adapter of `loras` is always loaded.
    """

    model: str
    loras: tuple[str, ...] = ()
    ttft_ms: float = 0.0
    itl_ms: float = 0.0
    max_num_seqs: int = 256
    fake_waiting: int | None = None
    fake_running: int | None = None
    fake_kv_usage: float | None = None
    default_output_tokens: int = 16
    kv_blocks: int | None = None
    block_size: int = DEFAULT_BLOCK_SIZE
    speed: float = 1.0
    max_loras: int | None = None
    lora_load_ms: float = 0.0
    prefill_ms_per_token: float = 0.0
    itl_batch_factor: float = 0.0

    def __post_init__(self) -> None:
        if not self.model:
            raise ValueError("model: must not be empty")
        if not isinstance(self.loras, tuple):
            raise ValueError("loras: must be a tuple of adapter names")
        seen: set[str] = set()
        for name in self.loras:
            if not name:
                raise ValueError("loras: adapter names must not be empty")
            if name == self.model:
                raise ValueError(f"loras: adapter {name!r} has the base model's name")
            if name in seen:
                raise ValueError(f"loras: adapter {name!r} is listed twice")
            seen.add(name)
        for field_name in ("ttft_ms", "itl_ms", "lora_load_ms", "prefill_ms_per_token", "itl_batch_factor"):
            value = getattr(self, field_name)
            if not math.isfinite(value) or value < 0:
                raise ValueError(f"{field_name}: must be a finite number >= 0, got {value!r}")
        if self.max_num_seqs < 1:
            raise ValueError(f"max_num_seqs: must be >= 1, got {self.max_num_seqs}")
        if self.default_output_tokens < 1:
            raise ValueError(f"default_output_tokens: must be >= 1, got {self.default_output_tokens}")
        for field_name in ("fake_waiting", "fake_running"):
            value = getattr(self, field_name)
            if value is not None and value < 0:
                raise ValueError(f"{field_name}: must be >= 0, got {value}")
        if self.kv_blocks is not None and self.kv_blocks < 1:
            raise ValueError(f"kv_blocks: must be >= 1, got {self.kv_blocks}")
        if self.block_size < 1:
            raise ValueError(f"block_size: must be >= 1, got {self.block_size}")
        if not math.isfinite(self.speed) or self.speed <= 0:
            raise ValueError(f"speed: must be a finite number > 0, got {self.speed!r}")
        if self.max_loras is not None and self.max_loras < 1:
            raise ValueError(f"max_loras: must be >= 1, got {self.max_loras}")
        kv = self.fake_kv_usage
        if kv is not None and not (0.0 <= kv <= 1.0):
            raise ValueError(f"fake_kv_usage: must be within 0..1, got {kv!r}")

    @property
    def lora_slots(self) -> int:
        """How many adapters can be loaded at once (what vLLM reports as `max_lora`)."""
        return len(self.loras) if self.max_loras is None else self.max_loras

    @property
    def served_models(self) -> frozenset[str]:
        """Every name a request's `model` may carry: the base model and each LoRA adapter."""
        return frozenset((self.model, *self.loras))
