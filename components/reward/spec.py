"""The reward stage's one declaration (`kfrlhf.common.spec`): entry point, tasks, resources."""

from kfrlhf.common.spec import StageSpec

SPEC = StageSpec(
    name="reward",
    entry="kfrlhf.reward.train:run_reward",
    tasks=(("reward", "Train reward model"),),
    config="kfrlhf.reward.config:RewardConfig",
    distributed=True,
)
