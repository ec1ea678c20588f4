"""The constitution: the principles the judge compares answers by, read from a YAML list of strings.

The default ships with the package (`constitution.yaml` beside this file); `rlaif.constitution`
names another file of the same shape. A bad file is one line naming the file and the entry.
"""

from __future__ import annotations

from pathlib import Path

from kfrlhf.common.config import ConfigError, load_yaml, short

DEFAULT = Path(__file__).with_name("constitution.yaml")


def load_constitution(path: str | Path = "") -> list[str]:
    """The principles in `path` (empty: the default constitution)."""
    path = Path(path) if path else DEFAULT
    data = load_yaml(path, f"rlaif.constitution: {path}")
    if not isinstance(data, list) or not data:
        raise ConfigError(f"rlaif.constitution: {path} must be a non-empty YAML list of principles, got {short(data)}")
    for i, entry in enumerate(data, 1):
        if not isinstance(entry, str) or not entry.strip():
            raise ConfigError(f"rlaif.constitution: {path} entry {i} must be a non-empty string, got {short(entry)}")
    return [entry.strip() for entry in data]
