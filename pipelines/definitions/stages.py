"""The stage list, in one place.

Every stage has a folder under `components/` holding its code and its KFP component, an
`images/Dockerfile` target and an image of the same name (`kubeflow-rlhf-<stage>`), and a
resource default in `platform.py`; `tests/test_layout.py` checks that they all agree with this
list (and the README's build loop). A task is one step of a pipeline: it runs one stage.
"""

STAGES = ("data", "sft", "merge", "rlaif", "reward", "ppo", "dpo", "rest", "grpo", "eval", "gate", "serve")

# Task name -> (the stage it runs, its display name in the KFP UI).
TASKS = {
    "data": ("data", "Prepare data"),
    "sft": ("sft", "Supervised fine-tuning (QLoRA)"),
    "merge_sft": ("merge", "Merge SFT adapter"),
    "rlaif": ("rlaif", "Label answer pairs (AI judge)"),
    "reward": ("reward", "Train reward model"),
    "ppo": ("ppo", "PPO"),
    "merge_ppo": ("merge", "Merge PPO adapter"),
    "dpo": ("dpo", "DPO"),
    "merge_dpo": ("merge", "Merge DPO adapter"),
    # The ReST pipeline unrolls these two per iteration and numbers their display names.
    "rest_grow": ("rest", "ReST Grow (sample, score)"),
    "rest_improve": ("rest", "ReST Improve (filter, fine-tune)"),
    "merge_rest": ("merge", "Merge ReST adapter"),
    "grpo": ("grpo", "GRPO"),
    "merge_grpo": ("merge", "Merge GRPO adapter"),
    "eval": ("eval", "Evaluate (report)"),
    "gate": ("gate", "Eval gate"),
    "promote": ("serve", "Promote (Model Registry, KServe)"),
}
DISPLAY_NAMES = {task: display for task, (_, display) in TASKS.items()}


def stage_of(task: str) -> str:
    """`merge_sft` -> `merge`; a stage name maps to itself."""
    if task in STAGES:
        return task
    if task not in TASKS:
        raise KeyError(f"unknown task {task!r}; known: {', '.join(TASKS)}")
    return TASKS[task][0]
