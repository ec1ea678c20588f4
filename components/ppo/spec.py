"""The ppo stage's one declaration (`kfrlhf.common.spec`)."""

from kfrlhf.common.spec import Resources, StageSpec

# Rollouts, the reward model and the update in one pod: more memory.
RESOURCES = Resources(memory_request="48Gi", memory_limit="96Gi")
SPEC = StageSpec(name="ppo", order=60, tasks=(("ppo", "PPO"),), resources=RESOURCES, distributed=True, method="PPO")
