"""The merge stage's one declaration (`kfrlhf.common.spec`): tasks, resources."""

from kfrlhf.common.spec import Resources, StageSpec

# peft's merge_and_unload in fp32 on the CPU: no GPU.
SPEC = StageSpec(
    name="merge",
    order=30,
    tasks=(
        ("merge_sft", "Merge SFT adapter"),
        ("merge_ppo", "Merge PPO adapter"),
        ("merge_dpo", "Merge DPO adapter"),
        ("merge_rest", "Merge ReST adapter"),
        ("merge_grpo", "Merge GRPO adapter"),
    ),
    config=None,
    resources=Resources("2", "4", "32Gi", "48Gi", gpus=0, timeout_seconds=2 * 3600),
)
