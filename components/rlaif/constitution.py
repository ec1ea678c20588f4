"""The constitution: the principles the judge compares answers by, read from a YAML list of strings.

The default ships with the package (`constitution.yaml` beside this file); `rlaif.constitution`
names another file of the same shape. A bad file is one line naming the file and the entry.
"""

from __future__ import annotations

from pathlib import Path

import yaml

from kfrlhf.common.config import ConfigError, StrictLoader, short

DEFAULT = Path(__file__).with_name("constitution.yaml")


def load_constitution(path: str | Path = "") -> list[str]:
    """The principles in `path` (empty: the default constitution)."""
    path = Path(path) if path else DEFAULT
    try:
        data = yaml.load(path.read_text(encoding="utf-8"), Loader=StrictLoader)  # noqa: S506 (a SafeLoader)
    except OSError as err:
        raise ConfigError(f"rlaif.constitution: {path} cannot be read: {err.strerror or err}") from None
    except (yaml.YAMLError, UnicodeDecodeError) as err:
        raise ConfigError(f"rlaif.constitution: {path} is not valid YAML: {str(err).splitlines()[0]}") from None
    if not isinstance(data, list) or not data:
        raise ConfigError(f"rlaif.constitution: {path} must be a non-empty YAML list of principles, got {short(data)}")
    for i, entry in enumerate(data, 1):
        if not isinstance(entry, str) or not entry.strip():
            raise ConfigError(f"rlaif.constitution: {path} entry {i} must be a non-empty string, got {short(entry)}")
    return [entry.strip() for entry in data]
