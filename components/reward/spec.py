"""The reward stage's one declaration (`kfrlhf.common.spec`): tasks, resources."""

from kfrlhf.common.spec import StageSpec

SPEC = StageSpec(
    name="reward",
    order=50,
    tasks=(("reward", "Train reward model"),),
    config="kfrlhf.reward.config:RewardConfig",
    distributed=True,
)
