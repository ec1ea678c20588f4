"""The GRPO stage's KFP component (a thin wrapper around `kfrlhf.grpo.train.run_grpo`).

Named `grpo_train`: the GRPO pipeline is called `grpo`, and kfp's loader confuses the two names.
"""

from kfp.dsl import Dataset, Input, Metrics, Model, Output

from kfrlhf.common.component import stage_component


@stage_component
def grpo_train(
    grpo: dict,
    report_to: str,
    sft_model: Input[Model],
    reward_model: Input[Model],
    prompt_data: Input[Dataset],
    adapter: Output[Model],
    metrics: Output[Metrics],
):
    from kfrlhf.grpo.train import run_grpo

    for name, value in run_grpo(
        grpo, sft_model.path, reward_model.path, prompt_data.path, adapter.path, report_to
    ).items():
        metrics.log_metric(name, value)
