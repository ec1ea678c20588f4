"""The grpo stage's one declaration (`kfrlhf.common.spec`)."""

from kfrlhf.common.spec import Resources, StageSpec

# Groups of answers, as PPO's rollouts: more memory.
RESOURCES = Resources(memory_request="48Gi", memory_limit="96Gi")
SPEC = StageSpec(name="grpo", order=90, tasks=(("grpo", "GRPO"),), resources=RESOURCES, distributed=True, method="GRPO")
