"""Our PPO's side of a benchmark with some PPOConfig fields changed: `--set FIELD=VALUE` and
`--variant NAME:FIELD=VALUE,...`, parsed and checked in one place."""

from __future__ import annotations

import dataclasses

from kfrlhf.common.config import ConfigError, parse_set
from kfrlhf.ppo.config import PPOConfig


def ppo_fields(assignments: list[str]) -> dict:
    """`["static_cache=true"]` -> {"static_cache": True}; ConfigError for what is not a PPOConfig field."""
    fields = parse_set(assignments)
    unknown = sorted(set(fields) - {f.name for f in dataclasses.fields(PPOConfig)})
    if unknown:
        raise ConfigError(f"{', '.join(unknown)}: not a PPOConfig field")
    return fields


def parse_variants(items: list[str]) -> dict[str, dict]:
    """`["static:static_cache=true,bf16=false", "merged:"]` -> {name: PPOConfig fields}, in order."""
    variants: dict[str, dict] = {}
    for item in items:
        name, sep, fields = item.partition(":")
        if not sep or not name or name in variants:
            raise ConfigError(f"--variant {item!r}: expected a new NAME, then ':' and FIELD=VALUE,... (may be empty)")
        variants[name] = ppo_fields([f for f in fields.split(",") if f])
    return variants
