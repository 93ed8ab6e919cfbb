"""The simulator's /metrics: vLLM's metric names and labels in Prometheus text exposition.

The engine records latencies and token counts here as they happen; `render` reads the engine's live
gauges at scrape time and applies the `fake_*` overrides from the config. The router scrapes every
50 ms, so rendering is hand-written and cheap: label strings and line prefixes are built once, and the
counter and histogram block is re-rendered only after an observation changed it. State is per instance;
there is no process-wide registry.

Series follow vLLM: `model_name="<base model>"` on engine series, `vllm:prefix_cache_queries_total` and
`vllm:prefix_cache_hits_total` (in tokens; only with a bounded KV cache), and `vllm:lora_requests_info`
(only when LoRA adapters are served) with `max_lora` (the LoRA slots), `running_lora_adapters` and
`waiting_lora_adapters` labels and the wall-clock time of the latest scheduler change as its value, so
consumers pick the series with the largest value.
"""

from __future__ import annotations

import logging
import math
from bisect import bisect_left
from typing import Protocol

from kthena_router.sim.config import SimConfig

log = logging.getLogger(__name__)

CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"

TTFT_BUCKETS = (
    0.001, 0.005, 0.01, 0.025, 0.05, 0.075, 0.1, 0.25, 0.5, 0.75,
    1.0, 2.5, 5.0, 10.0, 20.0, 40.0, 80.0, 160.0, 640.0,
)  # fmt: skip
ITL_BUCKETS = (
    0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.075, 0.1, 0.15, 0.2,
    0.3, 0.4, 0.5, 0.75, 1.0, 2.5, 5.0, 10.0, 20.0, 80.0,
)  # fmt: skip
E2E_BUCKETS = (
    0.01, 0.05, 0.1, 0.3, 0.5, 0.8, 1.0, 1.5, 2.0, 2.5, 5.0, 10.0,
    15.0, 20.0, 30.0, 60.0, 120.0, 240.0, 480.0, 960.0, 1920.0, 7680.0,
)  # fmt: skip

FINISH_REASONS = ("length", "stop")


class EngineView(Protocol):
    """The live engine state a scrape reads (implemented by `engine.Engine`)."""

    @property
    def num_running(self) -> int: ...
    @property
    def num_waiting(self) -> int: ...
    @property
    def kv_usage(self) -> float: ...
    @property
    def running_loras(self) -> tuple[str, ...]: ...
    @property
    def waiting_loras(self) -> tuple[str, ...]: ...
    @property
    def changed_at(self) -> float: ...


def escape_label_value(value: str) -> str:
    return value.replace("\\", "\\\\").replace("\n", "\\n").replace('"', '\\"')


def format_value(value: float) -> str:
    """A sample value as Prometheus text: integers without a fraction, infinities as +Inf/-Inf."""
    if isinstance(value, int):
        return str(value)
    if math.isinf(value):
        return "+Inf" if value > 0 else "-Inf"
    return repr(value)


def _header(name: str, kind: str, help_text: str) -> str:
    return f"# HELP {name} {help_text}\n# TYPE {name} {kind}\n"


class Histogram:
    """Bucket counts, sum and count of one observed latency, pre-formatted for exposition."""

    __slots__ = ("bounds", "counts", "total", "count", "_bucket_prefixes", "_tail")

    def __init__(self, bounds: tuple[float, ...], labels: str) -> None:
        self.bounds = bounds
        self.counts = [0] * (len(bounds) + 1)  # the last slot is the +Inf overflow
        self.total = 0.0
        self.count = 0
        les = [*(format_value(b) for b in bounds), "+Inf"]
        self._bucket_prefixes = tuple(f'_bucket{{{labels},le="{le}"}} ' for le in les)
        self._tail = f"{{{labels}}} "

    def observe(self, value: float) -> None:
        # `le` buckets include their bound: the first bound >= value.
        self.counts[bisect_left(self.bounds, value)] += 1
        self.total += value
        self.count += 1

    def render(self, name: str, out: list[str]) -> None:
        cumulative = 0
        for prefix, n in zip(self._bucket_prefixes, self.counts, strict=True):
            cumulative += n
            out.append(f"{name}{prefix}{cumulative}\n")
        out.append(f"{name}_sum{self._tail}{format_value(self.total)}\n")
        out.append(f"{name}_count{self._tail}{self.count}\n")


class SimMetrics:
    """Counters and histograms of one simulator, and the exposition of them plus the engine's gauges."""

    __slots__ = (
        "_config",
        "_labels",
        "_version",
        "_cached_version",
        "_cached_block",
        "prompt_tokens",
        "generation_tokens",
        "successes",
        "ttft",
        "itl",
        "e2e",
        "prefix_queries",
        "prefix_hits",
    )

    def __init__(self, config: SimConfig) -> None:
        self._config = config
        self._labels = f'model_name="{escape_label_value(config.model)}"'
        self._version = 0
        self._cached_version = -1
        self._cached_block = ""
        self.prompt_tokens = 0
        self.generation_tokens = 0
        self.successes = dict.fromkeys(FINISH_REASONS, 0)
        self.ttft = Histogram(TTFT_BUCKETS, self._labels)
        self.itl = Histogram(ITL_BUCKETS, self._labels)
        self.e2e = Histogram(E2E_BUCKETS, self._labels)
        self.prefix_queries = 0
        self.prefix_hits = 0

    # -- recording (called by the engine) ----------------------------------------------------------

    def observe_first_token(self, ttft_s: float, prompt_tokens: int) -> None:
        """The prompt was prefilled and the first token produced `ttft_s` after arrival."""
        self.ttft.observe(ttft_s)
        self.prompt_tokens += prompt_tokens
        self.generation_tokens += 1
        self._version += 1

    def observe_token_gap(self, itl_s: float) -> None:
        """A further token was produced `itl_s` after the previous one."""
        self.itl.observe(itl_s)
        self.generation_tokens += 1
        self._version += 1

    def observe_prefix_lookup(self, queried_tokens: int, hit_tokens: int) -> None:
        """A prompt of `queried_tokens` was looked up in the prefix cache; `hit_tokens` were found."""
        self.prefix_queries += queried_tokens
        self.prefix_hits += hit_tokens
        self._version += 1

    def observe_finished(self, e2e_s: float, reason: str) -> None:
        """A request produced all its tokens `e2e_s` after arrival."""
        self.e2e.observe(e2e_s)
        self.successes[reason] = self.successes.get(reason, 0) + 1
        self._version += 1

    # -- exposition --------------------------------------------------------------------------------

    def render(self, engine: EngineView) -> bytes:
        config = self._config
        labels = self._labels
        running = engine.num_running if config.fake_running is None else config.fake_running
        waiting = engine.num_waiting if config.fake_waiting is None else config.fake_waiting
        kv = engine.kv_usage if config.fake_kv_usage is None else config.fake_kv_usage
        kv_text = format_value(float(kv))
        out = [
            _GAUGE_RUNNING,
            f"vllm:num_requests_running{{{labels}}} {running}\n",
            _GAUGE_WAITING,
            f"vllm:num_requests_waiting{{{labels}}} {waiting}\n",
            _GAUGE_KV,
            f"vllm:kv_cache_usage_perc{{{labels}}} {kv_text}\n",
            _GAUGE_GPU_KV,
            f"vllm:gpu_cache_usage_perc{{{labels}}} {kv_text}\n",
        ]
        if config.loras:
            running_loras = escape_label_value(",".join(engine.running_loras))
            waiting_loras = escape_label_value(",".join(engine.waiting_loras))
            out.append(_GAUGE_LORA)
            out.append(
                f'vllm:lora_requests_info{{max_lora="{config.lora_slots}",'
                f'running_lora_adapters="{running_loras}",waiting_lora_adapters="{waiting_loras}"}} '
                f"{format_value(engine.changed_at)}\n"
            )
        if self._cached_version != self._version:
            self._cached_block = self._render_recorded()
            self._cached_version = self._version
        out.append(self._cached_block)
        return "".join(out).encode()

    def _render_recorded(self) -> str:
        labels = self._labels
        out = [
            _COUNTER_PROMPT,
            f"vllm:prompt_tokens_total{{{labels}}} {self.prompt_tokens}\n",
            _COUNTER_GENERATION,
            f"vllm:generation_tokens_total{{{labels}}} {self.generation_tokens}\n",
            _COUNTER_SUCCESS,
        ]
        for reason, n in self.successes.items():
            out.append(
                f'vllm:request_success_total{{finished_reason="{escape_label_value(reason)}",{labels}}} {n}\n'
            )
        if self._config.kv_blocks is not None:
            out.append(_COUNTER_PREFIX_QUERIES)
            out.append(f"vllm:prefix_cache_queries_total{{{labels}}} {self.prefix_queries}\n")
            out.append(_COUNTER_PREFIX_HITS)
            out.append(f"vllm:prefix_cache_hits_total{{{labels}}} {self.prefix_hits}\n")
        out.append(_HIST_TTFT)
        self.ttft.render("vllm:time_to_first_token_seconds", out)
        out.append(_HIST_ITL)
        self.itl.render("vllm:inter_token_latency_seconds", out)
        out.append(_HIST_TPOT)
        self.itl.render("vllm:time_per_output_token_seconds", out)
        out.append(_HIST_E2E)
        self.e2e.render("vllm:e2e_request_latency_seconds", out)
        return "".join(out)


_GAUGE_RUNNING = _header(
    "vllm:num_requests_running", "gauge", "Number of requests in model execution batches."
)
_GAUGE_WAITING = _header("vllm:num_requests_waiting", "gauge", "Number of requests waiting to be processed.")
_GAUGE_KV = _header("vllm:kv_cache_usage_perc", "gauge", "KV-cache usage. 1 means 100 percent usage.")
_GAUGE_GPU_KV = _header(
    "vllm:gpu_cache_usage_perc", "gauge", "GPU KV-cache usage. 1 means 100 percent usage (older name)."
)
_GAUGE_LORA = _header("vllm:lora_requests_info", "gauge", "Running stats on LoRA requests.")
_COUNTER_PROMPT = _header("vllm:prompt_tokens_total", "counter", "Number of prefill tokens processed.")
_COUNTER_GENERATION = _header(
    "vllm:generation_tokens_total", "counter", "Number of generation tokens processed."
)
_COUNTER_SUCCESS = _header(
    "vllm:request_success_total", "counter", "Count of successfully processed requests."
)
_COUNTER_PREFIX_QUERIES = _header(
    "vllm:prefix_cache_queries_total",
    "counter",
    "Prefix cache queries, in terms of number of queried tokens.",
)
_COUNTER_PREFIX_HITS = _header(
    "vllm:prefix_cache_hits_total", "counter", "Prefix cache hits, in terms of number of cached tokens."
)
_HIST_TTFT = _header(
    "vllm:time_to_first_token_seconds", "histogram", "Histogram of time to first token in seconds."
)
_HIST_ITL = _header(
    "vllm:inter_token_latency_seconds", "histogram", "Histogram of inter-token latency in seconds."
)
_HIST_TPOT = _header(
    "vllm:time_per_output_token_seconds",
    "histogram",
    "Histogram of time per output token in seconds (older name of the inter-token latency).",
)
_HIST_E2E = _header(
    "vllm:e2e_request_latency_seconds", "histogram", "Histogram of end-to-end request latency in seconds."
)
