"""The scheduler configuration: kthena's YAML shape, validated whole at start.

```yaml
scheduler:
  pluginConfig:                 # optional arguments per plugin
  - name: least-request
    args: {maxWaitingRequests: 10}
  plugins:
    Filter: {enabled: [least-request]}
    Score:
      enabled:
      - {name: least-request, weight: 2}
      - {name: prefix-cache, weight: 3}
  picker: max-score             # or weighted-random (an addition to kthena's shape)
```

Every problem (unknown plugin, a plugin used in a role it lacks, bad or unknown argument, negative weight,
unknown key under `scheduler`) raises `ConfigError` naming the YAML path, so a bad file stops the router at
start instead of being half-applied. A file (or `scheduler` section) that enables no filter and no scorer
gives `DEFAULT_SCHEDULER`, never an empty pipeline. Other top-level sections (kthena's `auth`) are ignored.

The same shape overrides the scheduler of one InferencePool (`parse_scheduler_text`, called by reconcile
for the pool's `kthena.io/scheduler-config` annotation): parsing is pure (no logging, no I/O), and there
the `scheduler` section is required, since a document without one is a mistake rather than a default.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from kthena_router.scheduling.framework import ConfigError, build_args
from kthena_router.scheduling.pickers import PICKERS
from kthena_router.scheduling.registry import ALIASES, NOT_PROVIDED, PLUGINS, lookup

log = logging.getLogger(__name__)


@dataclass(frozen=True, slots=True)
class SchedulerConfig:
    """Which plugins run, in order, with their weights, raw args and the final picker."""

    filters: tuple[str, ...] = ()
    scorers: tuple[tuple[str, float], ...] = ()
    args: dict[str, Any] = field(default_factory=dict)  # plugin name -> its YAML args mapping
    picker: str = "max-score"


# The built-in pipeline: the inference extension's queue 2 + kv-cache 2 + prefix 3, plus the router's own
# in-flight load (least-request, 2) so bursts between two scrapes spread. Retune here.
DEFAULT_SCHEDULER = SchedulerConfig(
    scorers=(("least-request", 2.0), ("queue", 2.0), ("kv-cache", 2.0), ("prefix-cache", 3.0),
             ("lora-affinity", 2.0)),
)

_SCHEDULER_KEYS = {"pluginConfig", "plugins", "picker"}
_KINDS = {"Filter": "filter", "Score": "score"}


def load_scheduler_config(path: str | Path | None) -> SchedulerConfig:
    """Read and validate `path`; None gives the defaults. Raises ConfigError."""
    if path is None:
        return DEFAULT_SCHEDULER
    name = str(path)
    try:
        text = Path(path).read_text()
    except OSError as exc:
        raise ConfigError(name, f"cannot read: {exc.strerror or exc}") from None
    try:
        raw = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        raise ConfigError(name, f"not valid YAML: {exc}") from None
    config = parse_scheduler_config(raw, name)
    log.info("%s: scheduler pipeline %s", name, describe_config(config))
    return config


def parse_scheduler_text(text: str, source: str) -> SchedulerConfig:
    """A scheduler configuration from YAML text that must contain a `scheduler` section. Raises ConfigError."""
    try:
        raw = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        raise ConfigError(source, f"not valid YAML: {_one_line(exc)}") from None
    return parse_scheduler_config(raw, source, require_section=True)


def parse_scheduler_config(raw: Any, source: str = "scheduler-config", *,
                           require_section: bool = False) -> SchedulerConfig:
    if raw is None:
        raw = {}
    if not isinstance(raw, dict):
        raise ConfigError(source, "must be a mapping with a `scheduler` section")
    section = raw.get("scheduler")
    if section is None:
        if require_section:
            raise ConfigError(source, "must be a mapping with a `scheduler` section")
        return DEFAULT_SCHEDULER
    base = f"{source}: scheduler"
    if not isinstance(section, dict):
        raise ConfigError(base, "must be a mapping")
    unknown = set(section) - _SCHEDULER_KEYS
    if unknown:
        raise ConfigError(f"{base}.{sorted(unknown)[0]}",
                          f"unknown key (known: {', '.join(sorted(_SCHEDULER_KEYS))})")

    args: dict[str, Any] = {}
    plugin_config = section.get("pluginConfig") or []
    if not isinstance(plugin_config, list):
        raise ConfigError(f"{base}.pluginConfig", "must be a list of {name, args}")
    for i, entry in enumerate(plugin_config):
        where = f"{base}.pluginConfig[{i}]"
        if not isinstance(entry, dict) or not isinstance(entry.get("name"), str):
            raise ConfigError(where, "must be a mapping with a string `name`")
        plugin = _canonical(entry["name"], f"{where}.name")
        extra = set(entry) - {"name", "args"}
        if extra:
            raise ConfigError(f"{where}.{sorted(extra)[0]}", "unknown key (known: args, name)")
        if plugin in args:
            raise ConfigError(where, f"plugin {plugin!r} is configured twice")
        module = lookup(plugin)
        assert module is not None
        build_args(module.Args, entry.get("args"), f"{where}.args")  # validated now, built again per use
        args[plugin] = entry.get("args") or {}

    filters: list[str] = []
    scorers: list[tuple[str, float]] = []
    plugins = section.get("plugins") or {}
    if not isinstance(plugins, dict):
        raise ConfigError(f"{base}.plugins", "must be a mapping with Filter and Score")
    for kind, spec in plugins.items():
        where = f"{base}.plugins.{kind}"
        role = _KINDS.get(kind)
        if role is None:
            raise ConfigError(where, "unknown plugin kind (known: Filter, Score)")
        if spec is None:
            continue
        if not isinstance(spec, dict):
            raise ConfigError(where, "must be a mapping with `enabled`")
        extra = set(spec) - {"enabled", "disabled"}
        if extra:
            raise ConfigError(f"{where}.{sorted(extra)[0]}", "unknown key (known: disabled, enabled)")
        for j, name in enumerate(spec.get("disabled") or []):  # accepted for kthena files; names checked
            _canonical(name.get("name") if isinstance(name, dict) else name, f"{where}.disabled[{j}]")
        enabled = spec.get("enabled") or []
        if not isinstance(enabled, list):
            raise ConfigError(f"{where}.enabled", "must be a list")
        for j, item in enumerate(enabled):
            at = f"{where}.enabled[{j}]"
            weight: Any = 1.0
            if isinstance(item, dict):
                extra = set(item) - {"name", "weight"}
                if extra:
                    raise ConfigError(f"{at}.{sorted(extra)[0]}", "unknown key (known: name, weight)")
                weight = item.get("weight", 1.0)
                item = item.get("name")
            plugin = _canonical(item, f"{at}.name" if not isinstance(item, str) else at)
            module = lookup(plugin)
            assert module is not None
            if not hasattr(module.Plugin, role):
                raise ConfigError(at, f"plugin {plugin!r} cannot be used as a {kind} plugin")
            if role == "filter":
                if plugin in filters:
                    raise ConfigError(at, f"filter {plugin!r} is enabled twice")
                filters.append(plugin)
                continue
            if isinstance(weight, bool) or not isinstance(weight, int | float) or not weight >= 0 \
                    or weight == float("inf"):
                raise ConfigError(f"{at}.weight", f"must be a finite number >= 0, got {weight!r}")
            if any(plugin == s for s, _ in scorers):
                raise ConfigError(at, f"scorer {plugin!r} is enabled twice")
            scorers.append((plugin, float(weight)))

    picker = section.get("picker", "max-score")
    if picker not in PICKERS:
        raise ConfigError(f"{base}.picker", f"unknown picker {picker!r} (known: {', '.join(sorted(PICKERS))})")
    if not filters and not scorers:  # no filter and no scorer enabled: the default pipeline
        return SchedulerConfig(scorers=DEFAULT_SCHEDULER.scorers, args=args, picker=picker)
    return SchedulerConfig(tuple(filters), tuple(scorers), args, picker)


def describe_config(config: SchedulerConfig) -> str:
    """One line for logs and status messages: `filters [..], scorers a=2 b=1, picker max-score`."""
    scorers = " ".join(f"{name}={weight:g}" for name, weight in config.scorers) or "none"
    return f"filters [{', '.join(config.filters)}], scorers {scorers}, picker {config.picker}"


def _one_line(exc: Exception) -> str:
    return " ".join(str(exc).split())


def _canonical(name: Any, where: str) -> str:
    if not isinstance(name, str) or not name:
        raise ConfigError(where, f"must be a plugin name, got {name!r}")
    if lookup(name) is None:
        hint = f"; {NOT_PROVIDED[name]}" if name in NOT_PROVIDED else ""
        raise ConfigError(where, f"unknown plugin {name!r} (known: {', '.join(sorted(PLUGINS))}){hint}")
    return ALIASES.get(name, name)
