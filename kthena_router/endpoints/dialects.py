"""Reading a model server's Prometheus text exposition into the numbers the scheduler uses.

Each engine names the same signals differently (vLLM `vllm:num_requests_waiting`, SGLang
`sglang:num_queue_reqs`, ...): a `Dialect` lists the names, and `parse_metrics` reads one scrape with a
substring search per wanted name, so the lines of other metrics (histogram buckets, counters it does not
need) are skipped at C speed. It never raises on odd lines: a sample it
cannot read is skipped. Gauges of several series (data-parallel engines) are summed; KV use takes the
largest. Histograms come back as running (sum, count); `HistogramDelta` turns them into the mean of the
observations made since the previous scrape.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from functools import lru_cache

from kthena_router.endpoints.state import NO_LORA, LoraInfo

# What a metric name feeds. Kept as small ints so the per-line dispatch is one dict lookup.
_WAITING, _RUNNING, _KV, _KV_OLD, _TTFT_SUM, _TTFT_COUNT, _TPOT_SUM, _TPOT_COUNT, _TPOT_OLD_SUM, \
    _TPOT_OLD_COUNT, _LORA = range(11)


@dataclass(frozen=True, slots=True)
class Dialect:
    """The metric names of one engine. Empty names are signals the engine does not expose."""

    engine: str
    waiting: str
    running: str
    kv_usage: str
    kv_usage_old: str = ""  # an older name, used only when `kv_usage` is absent from a scrape
    ttft: str = ""  # histogram base names
    tpot: str = ""
    tpot_old: str = ""  # used only when `tpot` is absent
    lora_info: str = ""
    # ("\n" + metric name, what it feeds, what it stands in for or -1), built once per dialect.
    needles: tuple[tuple[str, int, int], ...] = field(init=False, repr=False, compare=False, hash=False)

    def __post_init__(self) -> None:
        fallback = {_KV_OLD: _KV, _TPOT_OLD_SUM: _TPOT_SUM, _TPOT_OLD_COUNT: _TPOT_COUNT}
        table = sorted(self._table().items(), key=lambda item: item[1] in fallback)  # fallbacks last
        object.__setattr__(self, "needles", tuple(("\n" + n, w, fallback.get(w, -1)) for n, w in table))

    def _table(self) -> dict[str, int]:
        names = {
            self.waiting: _WAITING, self.running: _RUNNING, self.kv_usage: _KV, self.kv_usage_old: _KV_OLD,
            self.lora_info: _LORA,
        }
        for base, s, c in ((self.ttft, _TTFT_SUM, _TTFT_COUNT), (self.tpot, _TPOT_SUM, _TPOT_COUNT),
                           (self.tpot_old, _TPOT_OLD_SUM, _TPOT_OLD_COUNT)):
            if base:
                names[base + "_sum"] = s
                names[base + "_count"] = c
        names.pop("", None)
        return names


VLLM = Dialect(
    engine="vllm",
    waiting="vllm:num_requests_waiting",
    running="vllm:num_requests_running",
    kv_usage="vllm:kv_cache_usage_perc",
    kv_usage_old="vllm:gpu_cache_usage_perc",
    ttft="vllm:time_to_first_token_seconds",
    tpot="vllm:inter_token_latency_seconds",
    tpot_old="vllm:time_per_output_token_seconds",
    lora_info="vllm:lora_requests_info",
)
SGLANG = Dialect(
    engine="sglang",
    waiting="sglang:num_queue_reqs",
    running="sglang:num_running_reqs",
    kv_usage="sglang:token_usage",
    ttft="sglang:time_to_first_token_seconds",
    tpot="sglang:inter_token_latency_seconds",
    tpot_old="sglang:time_per_output_token_seconds",
)
TRTLLM_SERVE = Dialect(
    engine="trtllm-serve",
    waiting="trtllm_num_requests_waiting",
    running="trtllm_num_requests_running",
    kv_usage="trtllm_kv_cache_utilization",
)
DIALECTS: dict[str, Dialect] = {d.engine: d for d in (VLLM, SGLANG, TRTLLM_SERVE)}


def dialect_for(engine: str) -> Dialect:
    """The dialect of a pod's `inference.networking.k8s.io/engine-type` label; vLLM when unknown or empty."""
    return DIALECTS.get(engine.lower(), VLLM) if engine else VLLM


@dataclass(frozen=True, slots=True)
class Parsed:
    """One scrape's signals. `None` means the scrape did not contain that metric."""

    waiting: float | None
    running: float | None
    kv_usage: float | None
    ttft: tuple[float, float] | None  # (sum, count) over all series
    tpot: tuple[float, float] | None
    lora: LoraInfo | None


def parse_metrics(text: str, dialect: Dialect) -> Parsed:
    """Read the signals of `dialect` from one Prometheus text exposition."""
    acc = [0.0] * 11
    seen = [False] * 11
    kv = kv_old = -1.0
    lora_best = -1.0
    lora_labels = ""
    # One substring search per wanted name (C speed over the whole text) instead of a Python step per line:
    # the lines of other metrics (histogram buckets, families we do not read, comments) are never visited.
    # Families are grouped in the text format, so once a name is found its other series lie before the next
    # "# HELP"/"# TYPE" line; a fallback name (older vLLM) is only searched when the current one is absent.
    text = "\n" + text
    size = len(text)
    for needle, what, fallback_for in dialect.needles:
        if fallback_for >= 0 and seen[fallback_for]:
            continue
        at = text.find(needle)
        if at < 0:
            continue
        family_end = text.find("\n#", at)
        if family_end < 0:
            family_end = size
        while at >= 0:
            start = at + len(needle)
            at = text.find(needle, start, family_end)
            end = text.find("\n", start)
            line = text[start:end] if end >= 0 else text[start:]
            if not line:
                continue
            head = line[0]
            labels = ""
            if head == "{":
                close = line.rfind("}")
                if close < 0:
                    continue
                labels = line[1:close]
                rest = line[close + 1:].split()
            elif head == " " or head == "\t":
                rest = line.split()
            else:  # a longer name that starts with this one
                continue
            if not rest:
                continue
            try:
                value = float(rest[0])
            except ValueError:
                continue
            if value != value:  # NaN
                continue
            if what == _KV:
                kv = max(kv, value)
            elif what == _KV_OLD:
                kv_old = max(kv_old, value)
            elif what == _LORA:
                if value > lora_best and labels:
                    lora_best = value
                    lora_labels = labels
            else:
                acc[what] += value
            seen[what] = True

    kv_usage = kv if seen[_KV] else (kv_old if seen[_KV_OLD] else None)
    if kv_usage is not None:
        kv_usage = min(max(kv_usage, 0.0), 1.0)
    ttft = (acc[_TTFT_SUM], acc[_TTFT_COUNT]) if seen[_TTFT_COUNT] else None
    if seen[_TPOT_COUNT]:
        tpot: tuple[float, float] | None = (acc[_TPOT_SUM], acc[_TPOT_COUNT])
    elif seen[_TPOT_OLD_COUNT]:
        tpot = (acc[_TPOT_OLD_SUM], acc[_TPOT_OLD_COUNT])
    else:
        tpot = None
    return Parsed(
        waiting=acc[_WAITING] if seen[_WAITING] else None,
        running=acc[_RUNNING] if seen[_RUNNING] else None,
        kv_usage=kv_usage,
        ttft=ttft,
        tpot=tpot,
        lora=lora_info_of(lora_labels) if seen[_LORA] else None,
    )


@lru_cache(maxsize=256)
def lora_info_of(labels: str) -> LoraInfo:
    """The LoRA state in the label text of a `lora_requests_info` series. Cached: a fleet's servers report
    a handful of distinct adapter sets, and the same text comes back scrape after scrape."""
    return _lora_info(parse_labels(labels))


def _lora_info(labels: dict[str, str]) -> LoraInfo:
    try:
        max_lora = int(float(labels.get("max_lora", "0") or 0))
    except ValueError:
        max_lora = 0
    running = frozenset(a for a in labels.get("running_lora_adapters", "").split(",") if a)
    waiting = frozenset(a for a in labels.get("waiting_lora_adapters", "").split(",") if a)
    if not max_lora and not running and not waiting:
        return NO_LORA
    return LoraInfo(max_lora, running, waiting)


_SIMPLE_LABEL = re.compile(r'([A-Za-z_][A-Za-z0-9_]*)="([^"]*)"')


def parse_labels(text: str) -> dict[str, str]:
    """`a="1",b="x\\"y"` as a dict, with the text format's escapes (\\\\, \\", \\n) undone."""
    if "\\" not in text:
        return dict(_SIMPLE_LABEL.findall(text))
    labels: dict[str, str] = {}
    i, n = 0, len(text)
    while i < n:
        eq = text.find("=", i)
        if eq < 0:
            break
        name = text[i:eq].strip().lstrip(",").strip()
        j = eq + 1
        if j >= n or text[j] != '"':
            break
        j += 1
        out: list[str] = []
        while j < n:
            c = text[j]
            if c == "\\" and j + 1 < n:
                nxt = text[j + 1]
                out.append("\n" if nxt == "n" else nxt)
                j += 2
                continue
            if c == '"':
                break
            out.append(c)
            j += 1
        labels[name] = "".join(out)
        i = j + 1
        if i < n and text[i] == ",":
            i += 1
    return labels


class HistogramDelta:
    """The mean of a histogram's observations between two scrapes (Δsum/Δcount).

    A counter reset (sum or count went down, e.g. a restarted server) restarts from the new totals; an
    interval without observations keeps the previous mean, so an idle endpoint does not look instant.
    """

    __slots__ = ("sum", "count", "mean")

    def __init__(self) -> None:
        self.sum = -1.0  # no previous scrape
        self.count = 0.0
        self.mean = 0.0

    def update(self, total: float, count: float) -> float:
        if self.sum < 0:
            if count > 0:
                self.mean = total / count
        elif count < self.count or total < self.sum:
            if count > 0:
                self.mean = total / count
        elif count > self.count:
            self.mean = (total - self.sum) / (count - self.count)
        self.sum, self.count = total, count
        return self.mean
