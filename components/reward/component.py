"""The reward stage's KFP component (a thin wrapper around `kfrlhf.reward.train.run_reward`)."""

from kfp.dsl import Dataset, Input, Metrics, Model, Output

from kfrlhf.common.component import stage_component


@stage_component
def reward(
    reward: dict, report_to: str, preference_data: Input[Dataset], reward_model: Output[Model], metrics: Output[Metrics]
):
    from kfrlhf.reward.train import run_reward

    for name, value in run_reward(reward, preference_data.path, reward_model.path, report_to).items():
        metrics.log_metric(name, value)
