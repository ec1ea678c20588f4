"""The stage list, derived from the stages' own declarations.

Each stage declares itself once, in `components/<stage>/spec.py` (`SPEC`, a `kfrlhf.common.spec.StageSpec`):
its place in pipeline order, its tasks and their display names, its resources, whether it is distributed,
its run-config section, its image base. This module finds them (SPECS, in pipeline order); the run
config's sections (`run_config.py`), the platform's resource defaults, the TrainJob entry points and the
image builds (`rlhf images`, the CI workflow) derive from them, and `tests/test_layout.py` checks the
stage folders against them. A task is one step of a pipeline: it runs one stage.
"""

import importlib
import importlib.util
import pkgutil

import kfrlhf
from kfrlhf.common.spec import StageSpec


def _discover() -> dict[str, StageSpec]:
    """Every `kfrlhf.<package>.spec.SPEC`, in pipeline order (`StageSpec.order`): a new stage's folder is
    found without a list to edit."""
    specs = []
    for package in pkgutil.iter_modules(kfrlhf.__path__):
        if package.ispkg and importlib.util.find_spec(f"kfrlhf.{package.name}.spec"):
            spec = getattr(importlib.import_module(f"kfrlhf.{package.name}.spec"), "SPEC", None)
            if isinstance(spec, StageSpec):
                specs.append(spec)
    return {spec.name: spec for spec in sorted(specs, key=lambda spec: (spec.order, spec.name))}


SPECS = _discover()
STAGES = tuple(SPECS)

# The tuning methods: stages whose LoRA adapter the pipelines merge, each with a task of the merge stage.
METHODS = {name: spec.method for name, spec in SPECS.items() if spec.method}
MERGE_TASKS = tuple((f"merge_{name}", f"Merge {method} adapter") for name, method in METHODS.items())

# Task name -> (the stage it runs, its display name in the KFP UI).
TASKS = {task: (spec.name, display) for spec in SPECS.values() for task, display in spec.tasks}
TASKS.update({task: ("merge", display) for task, display in MERGE_TASKS})
DISPLAY_NAMES = {task: display for task, (_, display) in TASKS.items()}

# The training stages (a `distributed` config section) and the stage function their TrainJob nodes start.
DISTRIBUTED_STAGES = tuple(name for name, spec in SPECS.items() if spec.distributed)
ENTRY_POINTS = {name: SPECS[name].entries[0] for name in DISTRIBUTED_STAGES}


def stage_of(task: str) -> str:
    """`merge_sft` -> `merge`; a stage name maps to itself."""
    if task in STAGES:
        return task
    if task not in TASKS:
        raise KeyError(f"unknown task {task!r}; known: {', '.join(TASKS)}")
    return TASKS[task][0]
