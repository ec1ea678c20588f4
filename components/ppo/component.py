"""The PPO stage's KFP component (a thin wrapper around `kfrlhf.ppo.stage.run`, started on the
processes `ppo.distributed` asks for by `kfrlhf.launch.launcher`)."""

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
    from kfrlhf.launch.launcher import run_stage
    from kfrlhf.ppo.stage import run

    inputs = dict(sft_model=sft_model.path, reward_model=reward_model.path, prompt_data=prompt_data.path)
    kwargs = dict(ppo=ppo, output_dir=adapter.path, report_to=report_to, **inputs)
    result = run_stage(run, "ppo", kwargs, inputs=tuple(inputs))
    for name, value in result.items():
        if isinstance(value, (int, float)):
            metrics.log_metric(name, value)
