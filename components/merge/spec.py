"""The merge stage's one declaration (`kfrlhf.common.spec`)."""

from kfrlhf.common.spec import Resources, StageSpec

# peft's merge_and_unload in fp32 on the CPU: no GPU.
RESOURCES = Resources("2", "4", "32Gi", "48Gi", gpus=0, timeout_seconds=2 * 3600)
# One task per pipeline that merges an adapter.
TASKS = tuple(
    (f"merge_{m}", f"Merge {label} adapter")
    for m, label in [("sft", "SFT"), ("ppo", "PPO"), ("dpo", "DPO"), ("rest", "ReST"), ("grpo", "GRPO")]
)
SPEC = StageSpec(name="merge", order=30, tasks=TASKS, resources=RESOURCES)
