"""The one declaration of a stage: `StageSpec`, which each stage's `spec.py` fills in (`SPEC`).

A stage's facts live there and nowhere else: the function its component calls, its tasks and their
display names in the KFP UI, what its pod asks for, whether it is a training stage with a `distributed`
section (and so can launch a TrainJob), and its run-config section. `kfrlhf.pipelines.definitions.stages`
collects the specs; the stage list, the platform's resource defaults and the TrainJob entry points derive
from them, and `tests/test_layout.py` checks the rest (Dockerfile targets, run-config sections, pyproject's
packages, the docs' build loops) against them.
"""

from __future__ import annotations

from dataclasses import dataclass, field


@dataclass(frozen=True)
class Resources:
    """What one stage's pod asks for by default: CPU and memory per GPU (one set on a CPU-only pod)."""

    cpu_request: str = "4"
    cpu_limit: str = "8"
    memory_request: str = "32Gi"
    memory_limit: str = "64Gi"
    gpus: int = 1  # 0: a CPU-only pod, off the GPU node pool
    timeout_seconds: int = 24 * 3600


@dataclass(frozen=True)
class StageSpec:
    """One stage. `entry` is `module:function`, the stage function its component calls; `tasks` are the
    (task name, display name) pairs the pipelines use it for; `config` is `module:Class` of its run-config
    section (named after the stage), None for a stage without one; `distributed`: a training stage whose
    config has a `distributed` section, started through `kfrlhf.launch.launcher.run_stage`."""

    name: str
    entry: str
    tasks: tuple[tuple[str, str], ...]
    config: str | None
    resources: Resources = field(default_factory=Resources)
    distributed: bool = False

    @property
    def gpu(self) -> bool:
        return self.resources.gpus > 0

    @property
    def image_target(self) -> str:
        """The `images/Dockerfile` target and the image (`kubeflow-rlhf-<name>`) share the stage's name."""
        return self.name
