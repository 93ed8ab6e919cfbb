import textwrap

import pytest

from kthena_router.scheduling.config import (
    DEFAULT_SCHEDULER,
    load_scheduler_config,
    parse_scheduler_config,
)
from kthena_router.scheduling.framework import ConfigError, build_args
from kthena_router.scheduling.plugins import prefix_cache

KTHENA_DEFAULT = """
scheduler:
  pluginConfig:
  - name: least-request
    args: {maxWaitingRequests: 10}
  - name: least-latency
    args: {TTFTTPOTWeightFactor: 0.5}
  - name: prefix-cache
    args: {blockSizeToHash: 64, maxBlocksToMatch: 128, maxHashCacheSize: 50000, topKMatches: 5}
  plugins:
    Filter:
      enabled: [least-request]
      disabled: [lora-affinity]
    Score:
      enabled:
      - {name: least-request, weight: 1}
      - {name: gpu-usage, weight: 1}
      - {name: least-latency, weight: 1}
      - {name: prefix-cache, weight: 1}
auth:
  issuer: "testing@secure.istio.io"
"""


def parse(text: str):
    import yaml

    return parse_scheduler_config(yaml.safe_load(textwrap.dedent(text)), "sched.yaml")


def test_kthena_shaped_file_loads_with_its_names(tmp_path):
    path = tmp_path / "sched.yaml"
    path.write_text(KTHENA_DEFAULT)
    config = load_scheduler_config(path)
    assert config.filters == ("least-request",)
    assert config.scorers == (("least-request", 1.0), ("kv-cache", 1.0), ("least-latency", 1.0),
                              ("prefix-cache", 1.0))
    assert config.args["least-latency"] == {"TTFTTPOTWeightFactor": 0.5}
    prefix = build_args(prefix_cache.Args, config.args["prefix-cache"], "args")
    assert (prefix.block_size, prefix.max_blocks_to_match, prefix.lru_capacity_per_server,
            prefix.top_k_matches) == (64, 128, 50000, 5)


def test_no_file_empty_file_and_empty_plugins_give_the_defaults(tmp_path):
    assert load_scheduler_config(None) is DEFAULT_SCHEDULER
    empty = tmp_path / "empty.yaml"
    empty.write_text("")
    assert load_scheduler_config(empty) is DEFAULT_SCHEDULER
    config = parse("scheduler:\n  plugins: {Filter: {enabled: []}, Score: {enabled: []}}\n")
    assert config.scorers == DEFAULT_SCHEDULER.scorers


def test_unknown_plugin_is_rejected_with_its_path():
    with pytest.raises(ConfigError, match=r"scheduler\.plugins\.Score\.enabled\[0\]: unknown plugin 'kvcache-aware'"):
        parse("scheduler:\n  plugins:\n    Score:\n      enabled: [{name: kvcache-aware, weight: 1}]\n")


def test_kthenas_redis_backed_plugin_is_rejected_with_what_to_use_instead():
    with pytest.raises(ConfigError, match=r"pluginConfig\[0\]\.name: unknown plugin 'kvcache-aware' .*Redis.*`prefix-cache`"):
        parse("scheduler:\n  pluginConfig:\n  - {name: kvcache-aware, args: {blockSizeToHash: 16}}\n")


def test_unknown_argument_names_the_known_ones():
    with pytest.raises(ConfigError, match=r"pluginConfig\[0\]\.args\.maxWaiting: unknown argument .*maxWaitingRequests"):
        parse("scheduler:\n  pluginConfig: [{name: least-request, args: {maxWaiting: 3}}]\n"
              "  plugins: {Score: {enabled: [least-request]}}\n")


def test_argument_of_the_wrong_type_is_rejected():
    with pytest.raises(ConfigError, match="blockSize: must be of type int"):
        parse("scheduler:\n  pluginConfig: [{name: prefix-cache, args: {blockSize: '64'}}]\n")


def test_argument_out_of_range_is_rejected():
    with pytest.raises(ConfigError, match="maxWaitingRequests must be >= 1"):
        parse("scheduler:\n  pluginConfig: [{name: least-request, args: {maxWaitingRequests: -1}}]\n")


def test_negative_weight_is_rejected():
    with pytest.raises(ConfigError, match=r"enabled\[0\]\.weight: must be a finite number >= 0"):
        parse("scheduler:\n  plugins:\n    Score:\n      enabled: [{name: queue, weight: -1}]\n")


def test_a_scorer_cannot_be_used_as_a_filter():
    with pytest.raises(ConfigError, match="cannot be used as a Filter plugin"):
        parse("scheduler:\n  plugins:\n    Filter:\n      enabled: [queue]\n")


def test_unknown_keys_and_picker_are_rejected():
    with pytest.raises(ConfigError, match=r"scheduler\.plugin: unknown key"):
        parse("scheduler:\n  plugin: {}\n")
    with pytest.raises(ConfigError, match="unknown picker 'best'"):
        parse("scheduler:\n  picker: best\n")
    with pytest.raises(ConfigError, match=r"plugins\.PreFilter: unknown plugin kind"):
        parse("scheduler:\n  plugins: {PreFilter: {enabled: [queue]}}\n")


def test_invalid_yaml_and_missing_files_are_reported(tmp_path):
    bad = tmp_path / "bad.yaml"
    bad.write_text("scheduler: [unclosed\n")
    with pytest.raises(ConfigError, match="not valid YAML"):
        load_scheduler_config(bad)
    with pytest.raises(ConfigError, match="cannot read"):
        load_scheduler_config(tmp_path / "missing.yaml")


def test_plain_names_get_weight_one_and_picker_is_read():
    config = parse("scheduler:\n  picker: weighted-random\n  plugins: {Score: {enabled: [queue, kv-cache]}}\n")
    assert config.scorers == (("queue", 1.0), ("kv-cache", 1.0))
    assert config.picker == "weighted-random"
