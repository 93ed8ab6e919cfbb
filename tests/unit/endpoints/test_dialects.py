from pathlib import Path

import pytest

from kthena_router.endpoints.dialects import (
    SGLANG,
    VLLM,
    HistogramDelta,
    dialect_for,
    parse_labels,
    parse_metrics,
)
from kthena_router.endpoints.state import NO_LORA

DATA = Path(__file__).parent / "data"


def test_vllm_v1_exposition_gives_queue_running_kv_and_latency_sums():
    parsed = parse_metrics((DATA / "vllm_v1.txt").read_text(), VLLM)
    assert parsed.waiting == 7.0
    assert parsed.running == 12.0
    assert parsed.kv_usage == pytest.approx(0.4213197969543147)
    assert parsed.ttft == (pytest.approx(1043.271), 3974.0)
    assert parsed.tpot == (pytest.approx(14563.02), 510462.0)


def test_vllm_lora_info_takes_the_newest_series():
    parsed = parse_metrics((DATA / "vllm_v1.txt").read_text(), VLLM)
    assert parsed.lora is not None
    assert parsed.lora.max_lora == 4
    assert parsed.lora.running == {"sql-lora", "chat-lora"}
    assert parsed.lora.waiting == {"summarize-lora"}


def test_older_vllm_gpu_cache_name_and_time_per_output_token_are_read():
    parsed = parse_metrics((DATA / "vllm_v0_gpu_cache.txt").read_text(), VLLM)
    assert parsed.kv_usage == pytest.approx(0.4213197969543147)
    assert parsed.tpot == (pytest.approx(14563.02), 510462.0)
    assert parsed.lora is None


def test_current_kv_name_wins_when_both_are_exposed():
    text = ('vllm:kv_cache_usage_perc{model_name="m"} 0.25\n'
            'vllm:gpu_cache_usage_perc{model_name="m"} 0.75\n'
            'vllm:num_requests_waiting{model_name="m"} 1\n')
    assert parse_metrics(text, VLLM).kv_usage == 0.25


def test_sglang_exposition_uses_sglang_names():
    parsed = parse_metrics((DATA / "sglang.txt").read_text(), SGLANG)
    assert parsed.waiting == 3.0
    assert parsed.running == 24.0
    assert parsed.kv_usage == pytest.approx(0.61)
    assert parsed.ttft == (pytest.approx(802.4), 4007.0)
    assert parsed.tpot is not None and parsed.tpot[0] == pytest.approx(3970.1)


def test_vllm_dialect_sees_nothing_in_an_sglang_exposition():
    parsed = parse_metrics((DATA / "sglang.txt").read_text(), VLLM)
    assert (parsed.waiting, parsed.running, parsed.kv_usage, parsed.ttft) == (None, None, None, None)


def test_data_parallel_engines_sum_queues_and_take_the_highest_kv_use():
    text = ('vllm:num_requests_waiting{engine="0",model_name="m"} 3.0\n'
            'vllm:num_requests_waiting{engine="1",model_name="m"} 4.0\n'
            'vllm:kv_cache_usage_perc{engine="0",model_name="m"} 0.2\n'
            'vllm:kv_cache_usage_perc{engine="1",model_name="m"} 0.6\n')
    parsed = parse_metrics(text, VLLM)
    assert parsed.waiting == 7.0
    assert parsed.kv_usage == 0.6


def test_odd_lines_are_skipped_and_timestamps_and_spaces_in_labels_are_handled():
    text = ("garbage\n"
            "vllm:num_requests_waiting\n"
            'vllm:num_requests_running{model_name="a b} c"} 5 1700000000000\n'
            "vllm:num_requests_waiting not-a-number\n"
            "vllm:num_requests_waiting 2\n"
            'vllm:kv_cache_usage_perc{model_name="m"} NaN\n'
            "\n# EOF\n")
    parsed = parse_metrics(text, VLLM)
    assert parsed.running == 5.0
    assert parsed.waiting == 2.0
    assert parsed.kv_usage is None


def test_kv_use_is_clamped_to_one():
    assert parse_metrics("vllm:kv_cache_usage_perc 1.5\n", VLLM).kv_usage == 1.0


def test_lora_info_without_adapters_means_no_lora():
    text = 'vllm:lora_requests_info{max_lora="0",running_lora_adapters="",waiting_lora_adapters=""} 1.0\n'
    assert parse_metrics(text, VLLM).lora is NO_LORA


def test_label_escapes_are_undone():
    assert parse_labels(r'a="x\"y",b="line\nbreak",c="back\\slash"') == {
        "a": 'x"y', "b": "line\nbreak", "c": "back\\slash"}


def test_engine_label_selects_the_dialect_and_defaults_to_vllm():
    assert dialect_for("sglang") is SGLANG
    assert dialect_for("SGLang") is SGLANG
    assert dialect_for("") is VLLM
    assert dialect_for("something-else") is VLLM


def test_histogram_delta_is_the_mean_of_new_observations():
    delta = HistogramDelta()
    assert delta.update(10.0, 10.0) == 1.0  # first scrape: lifetime mean
    assert delta.update(13.0, 13.0) == 1.0
    assert delta.update(23.0, 15.0) == 5.0  # two observations adding 10s


def test_histogram_delta_keeps_the_last_mean_while_idle_and_restarts_after_a_reset():
    delta = HistogramDelta()
    delta.update(4.0, 2.0)
    assert delta.update(4.0, 2.0) == 2.0
    assert delta.update(0.3, 1.0) == pytest.approx(0.3)  # the server restarted
