"""The PPO stage's KFP component (a thin wrapper around `kfrlhf.ppo.stage.run_ppo_stage`)."""

from kfp.dsl import Dataset, Input, Metrics, Model, Output

from kfrlhf.common.component import stage_component


@stage_component
def ppo(
    ppo: dict,
    report_to: str,
    sft_model: Input[Model],
    reward_model: Input[Model],
    prompt_data: Input[Dataset],
    adapter: Output[Model],
    metrics: Output[Metrics],
):
    from kfrlhf.ppo.stage import run_ppo_stage

    result = run_ppo_stage(ppo, sft_model.path, reward_model.path, prompt_data.path, adapter.path, report_to)
    for name, value in result.items():
        if isinstance(value, (int, float)):
            metrics.log_metric(name, value)
