"""The stage list, derived from the stages' own declarations.

Each stage declares itself once, in `components/<stage>/spec.py` (`SPEC`, a `kfrlhf.common.spec.StageSpec`):
its entry point, its tasks and their display names, its resources, whether it is distributed, its run-config
section. This module collects them (SPECS, in pipeline order); the platform's resource defaults and the
TrainJob entry points derive from them, and `tests/test_layout.py` checks the component folders, the
`images/Dockerfile` targets, the run-config sections, pyproject's packages and the docs' build loops
against them. A task is one step of a pipeline: it runs one stage.
"""

from kfrlhf.common.spec import StageSpec
from kfrlhf.data.spec import SPEC as DATA
from kfrlhf.dpo.spec import SPEC as DPO
from kfrlhf.eval.spec import SPEC as EVAL
from kfrlhf.gate.spec import SPEC as GATE
from kfrlhf.grpo.spec import SPEC as GRPO
from kfrlhf.merge.spec import SPEC as MERGE
from kfrlhf.ppo.spec import SPEC as PPO
from kfrlhf.rest.spec import SPEC as REST
from kfrlhf.reward.spec import SPEC as REWARD
from kfrlhf.rlaif.spec import SPEC as RLAIF
from kfrlhf.serve.spec import SPEC as SERVE
from kfrlhf.sft.spec import SPEC as SFT

SPECS: dict[str, StageSpec] = {
    spec.name: spec for spec in (DATA, SFT, MERGE, RLAIF, REWARD, PPO, DPO, REST, GRPO, EVAL, GATE, SERVE)
}
STAGES = tuple(SPECS)

# Task name -> (the stage it runs, its display name in the KFP UI).
TASKS = {task: (spec.name, display) for spec in SPECS.values() for task, display in spec.tasks}
DISPLAY_NAMES = {task: display for task, (_, display) in TASKS.items()}

# The training stages (a `distributed` config section) and the stage function their TrainJob nodes start.
DISTRIBUTED_STAGES = tuple(name for name, spec in SPECS.items() if spec.distributed)
ENTRY_POINTS = {name: SPECS[name].entry for name in DISTRIBUTED_STAGES}


def stage_of(task: str) -> str:
    """`merge_sft` -> `merge`; a stage name maps to itself."""
    if task in STAGES:
        return task
    if task not in TASKS:
        raise KeyError(f"unknown task {task!r}; known: {', '.join(TASKS)}")
    return TASKS[task][0]
