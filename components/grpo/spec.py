"""The grpo stage's one declaration (`kfrlhf.common.spec`): tasks, resources."""

from kfrlhf.common.spec import Resources, StageSpec

# Groups of answers, as PPO's rollouts: more memory.
SPEC = StageSpec(
    name="grpo",
    order=90,
    tasks=(("grpo", "GRPO"),),
    config="kfrlhf.grpo.config:GRPOConfig",
    resources=Resources(memory_request="48Gi", memory_limit="96Gi"),
    distributed=True,
)
