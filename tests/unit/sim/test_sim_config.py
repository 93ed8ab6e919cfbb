"""SimConfig accepts sane settings and names the field of a bad one."""

import pytest

from kthena_router.sim.config import SimConfig


def test_defaults_match_the_cli_defaults():
    config = SimConfig(model="m")
    assert config.loras == ()
    assert (config.ttft_ms, config.itl_ms) == (0.0, 0.0)
    assert config.max_num_seqs == 256
    assert config.default_output_tokens == 16
    assert (config.fake_waiting, config.fake_running, config.fake_kv_usage) == (None, None, None)


def test_batching_defaults_keep_a_fixed_ttft_and_itl_and_unbounded_caches():
    config = SimConfig(model="m", loras=("a", "b"))
    assert (config.kv_blocks, config.block_size, config.speed) == (None, 16, 1.0)
    assert (config.max_loras, config.lora_load_ms) == (None, 0.0)
    assert (config.prefill_ms_per_token, config.itl_batch_factor) == (0.0, 0.0)
    assert config.lora_slots == 2
    assert SimConfig(model="m", loras=("a", "b"), max_loras=1).lora_slots == 1


def test_served_models_are_the_base_model_and_every_adapter():
    assert SimConfig(model="m", loras=("a", "b")).served_models == {"m", "a", "b"}


@pytest.mark.parametrize(
    ("kwargs", "field"),
    [
        ({"model": ""}, "model"),
        ({"model": "m", "loras": ("a", "a")}, "loras"),
        ({"model": "m", "loras": ("m",)}, "loras"),
        ({"model": "m", "loras": ["a"]}, "loras"),
        ({"model": "m", "ttft_ms": -1}, "ttft_ms"),
        ({"model": "m", "itl_ms": float("nan")}, "itl_ms"),
        ({"model": "m", "max_num_seqs": 0}, "max_num_seqs"),
        ({"model": "m", "default_output_tokens": 0}, "default_output_tokens"),
        ({"model": "m", "fake_waiting": -1}, "fake_waiting"),
        ({"model": "m", "fake_running": -2}, "fake_running"),
        ({"model": "m", "fake_kv_usage": 1.5}, "fake_kv_usage"),
        ({"model": "m", "kv_blocks": 0}, "kv_blocks"),
        ({"model": "m", "block_size": 0}, "block_size"),
        ({"model": "m", "speed": 0}, "speed"),
        ({"model": "m", "speed": float("inf")}, "speed"),
        ({"model": "m", "max_loras": 0}, "max_loras"),
        ({"model": "m", "lora_load_ms": -1}, "lora_load_ms"),
        ({"model": "m", "prefill_ms_per_token": -0.5}, "prefill_ms_per_token"),
        ({"model": "m", "itl_batch_factor": float("nan")}, "itl_batch_factor"),
    ],
)
def test_invalid_setting_is_rejected_naming_its_field(kwargs, field):
    with pytest.raises(ValueError, match=f"^{field}:"):
        SimConfig(**kwargs)
