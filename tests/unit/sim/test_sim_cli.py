"""The simulator's command line turns flags into a SimConfig and refuses bad values."""

import pytest

from kthena_router.sim.__main__ import build_parser, config_from_args
from kthena_router.sim.config import SimConfig


def test_defaults():
    args = build_parser().parse_args(["--model", "m"])
    assert (args.host, args.port) == ("127.0.0.1", 8000)
    assert config_from_args(args) == SimConfig(model="m")


def test_every_flag_reaches_the_config():
    args = build_parser().parse_args(
        [
            "--host", "127.0.0.3", "--port", "0", "--model", "m", "--lora", "a", "--lora", "b",
            "--ttft-ms", "12.5", "--itl-ms", "3", "--max-num-seqs", "4", "--fake-waiting", "9",
            "--fake-running", "2", "--fake-kv-usage", "0.75", "--output-tokens", "32",
        ]
    )  # fmt: skip
    assert (args.host, args.port) == ("127.0.0.3", 0)
    assert config_from_args(args) == SimConfig(
        model="m",
        loras=("a", "b"),
        ttft_ms=12.5,
        itl_ms=3.0,
        max_num_seqs=4,
        fake_waiting=9,
        fake_running=2,
        fake_kv_usage=0.75,
        default_output_tokens=32,
    )


def test_batching_flags_reach_the_config():
    args = build_parser().parse_args(
        [
            "--model", "m", "--lora", "a", "--kv-blocks", "512", "--block-size", "8", "--speed", "1.5",
            "--max-loras", "1", "--lora-load-ms", "40", "--prefill-ms-per-token", "0.2",
            "--itl-batch-factor", "0.05",
        ]
    )  # fmt: skip
    assert config_from_args(args) == SimConfig(
        model="m",
        loras=("a",),
        kv_blocks=512,
        block_size=8,
        speed=1.5,
        max_loras=1,
        lora_load_ms=40.0,
        prefill_ms_per_token=0.2,
        itl_batch_factor=0.05,
    )


def test_model_is_required(capsys):
    with pytest.raises(SystemExit) as exited:
        build_parser().parse_args([])
    assert exited.value.code == 2


def test_invalid_value_exits_with_usage_error(capsys):
    from kthena_router.sim.__main__ import main

    with pytest.raises(SystemExit) as exited:
        main(["--model", "m", "--fake-kv-usage", "2"])
    assert exited.value.code == 2
    assert "fake_kv_usage" in capsys.readouterr().err
