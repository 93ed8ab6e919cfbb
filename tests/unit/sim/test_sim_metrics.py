"""The /metrics exposition: vLLM names and labels, fake overrides, histograms, and promtool's verdict."""

import re
import shutil
import subprocess
import time
from dataclasses import dataclass

import pytest

from kthena_router.sim.config import SimConfig
from kthena_router.sim.metrics import Histogram, SimMetrics


@dataclass
class FakeEngine:
    num_running: int = 0
    num_waiting: int = 0
    kv_usage: float = 0.0
    running_loras: tuple[str, ...] = ()
    waiting_loras: tuple[str, ...] = ()
    changed_at: float = 1700000000.5


SAMPLE = re.compile(r"^(?P<name>[a-zA-Z_:][a-zA-Z0-9_:]*)(?:\{(?P<labels>[^}]*)\})? (?P<value>\S+)$")


def samples(text: str) -> dict[tuple[str, str], str]:
    """Every sample line as {(name, labels): value}; fails on a line that is not a sample or comment."""
    out = {}
    for line in text.splitlines():
        if line.startswith("#"):
            continue
        match = SAMPLE.match(line)
        assert match, line
        out[(match["name"], match["labels"] or "")] = match["value"]
    return out


def render(config: SimConfig, engine: FakeEngine | None = None, metrics: SimMetrics | None = None) -> str:
    metrics = metrics or SimMetrics(config)
    return metrics.render(engine or FakeEngine()).decode()


def test_engine_gauges_carry_model_name_and_both_kv_names():
    text = render(SimConfig(model="llama"), FakeEngine(num_running=3, num_waiting=2, kv_usage=0.25))
    got = samples(text)
    label = 'model_name="llama"'
    assert got[("vllm:num_requests_running", label)] == "3"
    assert got[("vllm:num_requests_waiting", label)] == "2"
    assert got[("vllm:kv_cache_usage_perc", label)] == "0.25"
    assert got[("vllm:gpu_cache_usage_perc", label)] == "0.25"
    assert "# TYPE vllm:num_requests_waiting gauge" in text


def test_fake_values_replace_the_engine_state():
    config = SimConfig(model="m", fake_waiting=7, fake_running=4, fake_kv_usage=0.9)
    got = samples(render(config, FakeEngine(num_running=1, num_waiting=0, kv_usage=0.1)))
    assert got[("vllm:num_requests_waiting", 'model_name="m"')] == "7"
    assert got[("vllm:num_requests_running", 'model_name="m"')] == "4"
    assert got[("vllm:kv_cache_usage_perc", 'model_name="m"')] == "0.9"
    assert got[("vllm:gpu_cache_usage_perc", 'model_name="m"')] == "0.9"


def test_lora_info_lists_running_and_waiting_adapters_with_the_update_time():
    config = SimConfig(model="m", loras=("a", "b", "c"))
    engine = FakeEngine(running_loras=("b", "a"), waiting_loras=("c",), changed_at=1700000123.25)
    got = samples(render(config, engine))
    key = ("vllm:lora_requests_info", 'max_lora="3",running_lora_adapters="b,a",waiting_lora_adapters="c"')
    assert got[key] == "1700000123.25"


def test_lora_info_reports_the_lora_slots_as_max_lora():
    config = SimConfig(model="m", loras=("a", "b", "c"), max_loras=2)
    got = samples(render(config, FakeEngine()))
    assert any(name == "vllm:lora_requests_info" and 'max_lora="2"' in labels for name, labels in got)


def test_prefix_cache_counters_are_in_tokens_and_only_with_a_bounded_kv_cache():
    config = SimConfig(model="m", kv_blocks=10)
    metrics = SimMetrics(config)
    metrics.observe_prefix_lookup(40, 32)
    metrics.observe_prefix_lookup(8, 0)
    got = samples(render(config, metrics=metrics))
    assert got[("vllm:prefix_cache_queries_total", 'model_name="m"')] == "48"
    assert got[("vllm:prefix_cache_hits_total", 'model_name="m"')] == "32"
    assert "prefix_cache" not in render(SimConfig(model="m"))


def test_no_lora_info_without_adapters_as_in_vllm():
    assert "vllm:lora_requests_info" not in render(SimConfig(model="m"))


def test_counters_and_success_by_finish_reason():
    config = SimConfig(model="m")
    metrics = SimMetrics(config)
    metrics.observe_first_token(0.01, prompt_tokens=5)
    metrics.observe_token_gap(0.002)
    metrics.observe_finished(0.02, "length")
    got = samples(render(config, metrics=metrics))
    assert got[("vllm:prompt_tokens_total", 'model_name="m"')] == "5"
    assert got[("vllm:generation_tokens_total", 'model_name="m"')] == "2"
    assert got[("vllm:request_success_total", 'finished_reason="length",model_name="m"')] == "1"
    assert got[("vllm:request_success_total", 'finished_reason="stop",model_name="m"')] == "0"


def test_histogram_buckets_are_cumulative_and_inclusive():
    hist = Histogram((0.1, 1.0), 'model_name="m"')
    for value in (0.1, 0.5, 1.0, 3.0):
        hist.observe(value)
    out: list[str] = []
    hist.render("h", out)
    assert "".join(out) == (
        'h_bucket{model_name="m",le="0.1"} 1\n'
        'h_bucket{model_name="m",le="1.0"} 3\n'
        'h_bucket{model_name="m",le="+Inf"} 4\n'
        'h_sum{model_name="m"} 4.6\n'
        'h_count{model_name="m"} 4\n'
    )


def test_latency_histograms_use_vllm_names_with_itl_alias():
    config = SimConfig(model="m")
    metrics = SimMetrics(config)
    metrics.observe_first_token(0.2, prompt_tokens=1)
    metrics.observe_token_gap(0.03)
    metrics.observe_finished(0.3, "stop")
    got = samples(render(config, metrics=metrics))
    for name, total in [
        ("vllm:time_to_first_token_seconds", "0.2"),
        ("vllm:inter_token_latency_seconds", "0.03"),
        ("vllm:time_per_output_token_seconds", "0.03"),
        ("vllm:e2e_request_latency_seconds", "0.3"),
    ]:
        assert got[(f"{name}_count", 'model_name="m"')] == "1"
        assert got[(f"{name}_sum", 'model_name="m"')] == total
        assert got[(f"{name}_bucket", 'model_name="m",le="+Inf"')] == "1"


def test_recorded_block_is_rerendered_after_a_new_observation():
    config = SimConfig(model="m")
    metrics = SimMetrics(config)
    first = render(config, metrics=metrics)
    assert render(config, metrics=metrics) == first
    metrics.observe_first_token(0.01, prompt_tokens=2)
    assert samples(render(config, metrics=metrics))[("vllm:prompt_tokens_total", 'model_name="m"')] == "2"


def test_label_values_are_escaped():
    text = render(SimConfig(model='we"ird\\name'))
    assert 'model_name="we\\"ird\\\\name"' in text


def test_rendering_is_cheap_enough_for_50ms_scrapes():
    config = SimConfig(model="m", loras=("a",))
    metrics = SimMetrics(config)
    engine = FakeEngine(num_running=5, running_loras=("a",))
    start = time.perf_counter()
    for i in range(500):
        metrics.observe_token_gap(0.001 * (i % 7))  # worst case: the cached block is stale every time
        metrics.render(engine)
    per_scrape = (time.perf_counter() - start) / 500
    assert per_scrape < 0.002, f"{per_scrape * 1e6:.0f} µs per scrape"


@pytest.mark.skipif(shutil.which("promtool") is None, reason="promtool is not installed")
def test_promtool_finds_nothing_but_the_colons_vllm_names_require():
    config = SimConfig(model="m", loras=("a", "b"))
    metrics = SimMetrics(config)
    metrics.observe_first_token(0.01, prompt_tokens=3)
    metrics.observe_token_gap(0.004)
    metrics.observe_finished(0.05, "length")
    exposition = metrics.render(FakeEngine(num_running=1, running_loras=("a",), waiting_loras=("b",)))
    verdict = promtool_check(exposition)
    # vLLM's metric names contain ':', which promtool's linter flags; any other finding is a real problem.
    assert verdict.returncode in (0, 3), verdict.output
    unexpected = [p for p in verdict.problems if not p.endswith("metric names should not contain ':'")]
    assert unexpected == [], verdict.output
    # With the colons swapped out, promtool has nothing at all to say.
    clean = promtool_check(exposition.replace(b"vllm:", b"vllm_"))
    assert (clean.returncode, clean.problems) == (0, []), clean.output


@dataclass
class Verdict:
    returncode: int
    output: str

    @property
    def problems(self) -> list[str]:
        return [line for line in self.output.splitlines() if line.strip()]


def promtool_check(exposition: bytes) -> Verdict:
    result = subprocess.run(
        ["promtool", "check", "metrics"], input=exposition, capture_output=True, timeout=30, check=False
    )
    return Verdict(result.returncode, (result.stdout + result.stderr).decode())
