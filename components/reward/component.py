"""The reward stage's KFP component (a thin wrapper around `kfrlhf.reward.stage.run`, started on the
processes `reward.distributed` asks for by `kfrlhf.launch.launcher`)."""

from kfp.dsl import Dataset, Input, Metrics, Model, Output

from kfrlhf.common.component import stage_component


@stage_component
def reward(
    reward: dict, report_to: str, preference_data: Input[Dataset], reward_model: Output[Model], metrics: Output[Metrics]
):
    from kfrlhf.launch.launcher import run_stage
    from kfrlhf.reward.stage import run

    kwargs = dict(reward=reward, preference_data=preference_data.path, output_dir=reward_model.path)
    kwargs["report_to"] = report_to
    for name, value in run_stage(run, "reward", kwargs, inputs=("preference_data",)).items():
        metrics.log_metric(name, value)
