"""The one declaration of a stage: `StageSpec`, which each stage's `spec.py` fills in (`SPEC`).

A stage's facts live there and nowhere else: its place in pipeline order, its tasks and their display
names in the KFP UI, what its pod asks for, whether it is a training stage with a `distributed` section
(and so can launch a TrainJob), the steps of a stage run as several tasks, and the Dockerfile base its
image builds on. The rest follows conventions: its entry points are `kfrlhf.<name>.stage:run` (or
`run_<step>`), its run-config section is the class in `kfrlhf.<name>.config` whose `section` is its name.
`kfrlhf.pipelines.definitions.stages` finds the specs; what derives from them is listed in docs/layout.md
("Adding a stage").
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
    """One stage. `order`: its place in pipeline order (the stage list is sorted by it); `tasks`: the (task
    name, display name) pairs the pipelines use it for; `resources`: what its pod asks for; `distributed`: a
    training stage whose config has a `distributed` section, started through
    `kfrlhf.launch.launcher.run_stage`; `steps`: the steps of a stage that runs as several tasks (ReST's grow
    and improve), each with an entry function of its own; `image_base`: the `images/Dockerfile` target its
    image builds on (`light`, `cluster`, `eval`, `train`: what it installs); `method`: the short name of the
    tuning method (`DPO`) of a stage that trains a LoRA adapter on the policy, which the pipelines merge (task
    `merge_<name>`, "Merge <method> adapter"); `memory`: the `rlhf plan` estimator its GPU memory follows
    (`kfrlhf.pipelines.local.plan.ESTIMATORS`; default: its own name)."""

    name: str
    order: int
    tasks: tuple[tuple[str, str], ...]
    resources: Resources = field(default_factory=Resources)
    distributed: bool = False
    steps: tuple[str, ...] = ()
    image_base: str = "train"
    method: str = ""
    memory: str = ""

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
    def estimator(self) -> str:
        return self.memory or self.name

    @property
    def gpu(self) -> bool:
        return self.resources.gpus > 0

    @property
    def build_args(self) -> dict[str, str]:
        """Its image (`kubeflow-rlhf-<name>`) is the Dockerfile's `stage` target built with these arguments."""
        return {"STAGE": self.name, "BASE": self.image_base}
