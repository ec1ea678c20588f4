"""The grpo stage's one declaration (`kfrlhf.common.spec`): entry point, tasks, resources."""

from kfrlhf.common.spec import Resources, StageSpec

# Groups of answers, as PPO's rollouts: more memory.
SPEC = StageSpec(
    name="grpo",
    entry="kfrlhf.grpo.train:run_grpo",
    tasks=(("grpo", "GRPO"),),
    config="kfrlhf.grpo.config:GRPOConfig",
    resources=Resources(memory_request="48Gi", memory_limit="96Gi"),
    distributed=True,
)
