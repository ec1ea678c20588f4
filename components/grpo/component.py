"""The GRPO stage's KFP component (a thin wrapper around `kfrlhf.grpo.stage.run`)."""

from kfp.dsl import Dataset, Input, Metrics, Model, Output

from kfrlhf.common.component import stage_component


@stage_component
def grpo(
    grpo: dict,
    report_to: str,
    sft_model: Input[Model],
    reward_model: Input[Model],
    prompt_data: Input[Dataset],
    adapter: Output[Model],
    metrics: Output[Metrics],
):
    from kfrlhf.grpo.stage import run
    from kfrlhf.launch.launcher import run_stage

    inputs = ("sft_model", "reward_model", "prompt_data")
    kwargs = dict(grpo=grpo, report_to=report_to, output_dir=adapter.path)
    kwargs.update(sft_model=sft_model.path, reward_model=reward_model.path, prompt_data=prompt_data.path)
    for name, value in run_stage(run, "grpo", kwargs, inputs=inputs).items():
        metrics.log_metric(name, value)
