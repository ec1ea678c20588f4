"""Optional extras (`pip install kubeflow-rlhf[qlora|tracking|cluster]`): a clear message when one is missing."""

from __future__ import annotations

import importlib.util


class MissingExtra(RuntimeError):
    """An optional dependency that the requested feature needs is not installed."""


def require(module: str, extra: str, feature: str) -> None:
    """Raise MissingExtra naming the pip extra when `module` cannot be imported."""
    try:
        found = importlib.util.find_spec(module) is not None
    except ModuleNotFoundError:  # the parent package is missing
        found = False
    if not found:
        raise MissingExtra(f"{feature} needs the {module} package: pip install 'kubeflow-rlhf[{extra}]'")
