"""The DPO stage's KFP component (a thin wrapper around `kfrlhf.dpo.train.run_dpo`).

Named `dpo_train`: the DPO pipeline is called `dpo`, and kfp's loader confuses the two names.
"""

from kfp.dsl import Dataset, Input, Metrics, Model, Output

from kfrlhf.common.component import stage_component


@stage_component
def dpo_train(
    dpo: dict,
    report_to: str,
    sft_model: Input[Model],
    preference_data: Input[Dataset],
    adapter: Output[Model],
    metrics: Output[Metrics],
):
    from kfrlhf.dpo.train import run_dpo

    for name, value in run_dpo(dpo, sft_model.path, preference_data.path, adapter.path, report_to).items():
        metrics.log_metric(name, value)
