"""The one declaration of a stage: `StageSpec`, which each stage's `spec.py` fills in (`SPEC`).

A stage's facts live there and nowhere else: its tasks and their
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
    """One stage. `tasks` are the (task name, display name) pairs the pipelines use it for; `config` is
    `module:Class` of its run-config section (named after the stage), None for a stage without one;
    `distributed`: a training stage whose config has a `distributed` section, started through
    `kfrlhf.launch.launcher.run_stage`; `steps`: the steps of a stage that runs as several tasks (ReST's
    grow and improve), each with an entry function of its own; `order`: its place in pipeline order (the
    stage list is sorted by it); `image_base`: the `images/Dockerfile` target its image builds on (`light`,
    `cluster`, `eval`, `train`: what it installs)."""

    name: str
    order: int
    tasks: tuple[tuple[str, str], ...]
    config: str | None
    resources: Resources = field(default_factory=Resources)
    distributed: bool = False
    steps: tuple[str, ...] = ()
    image_base: str = "train"

    def __post_init__(self):
        if self.distributed and self.steps:
            raise ValueError(f"{self.name}: a distributed stage has one entry function, not steps")

    @property
    def entries(self) -> tuple[str, ...]:
        """The entry points (`module:function`) its components call, by one convention for every stage:
        `kfrlhf.<name>.stage:run`, or `kfrlhf.<name>.stage:run_<step>` for each of its steps."""
        functions = tuple(f"run_{step}" for step in self.steps) or ("run",)
        return tuple(f"kfrlhf.{self.name}.stage:{function}" for function in functions)

    @property
    def gpu(self) -> bool:
        return self.resources.gpus > 0

    @property
    def build_args(self) -> dict[str, str]:
        """Its image (`kubeflow-rlhf-<name>`) is the Dockerfile's `stage` target built with these arguments."""
        return {"STAGE": self.name, "BASE": self.image_base}
