"""The ppo stage's one declaration (`kfrlhf.common.spec`): tasks, resources."""

from kfrlhf.common.spec import Resources, StageSpec

SPEC = StageSpec(
    name="ppo",
    order=60,
    tasks=(("ppo", "PPO"),),
    config="kfrlhf.ppo.config:PPOConfig",
    resources=Resources(memory_request="48Gi", memory_limit="96Gi"),
    distributed=True,
)
