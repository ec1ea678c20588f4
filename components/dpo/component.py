"""The DPO stage's KFP component (a thin wrapper around `kfrlhf.dpo.train.run_dpo`, started on the
processes `dpo.distributed` asks for by `kfrlhf.launch.launcher`).

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
    from kfrlhf.launch.launcher import run_stage

    paths = dict(sft_model=sft_model.path, preference_data=preference_data.path, output_dir=adapter.path)
    kwargs, inputs = dict(dpo=dpo, report_to=report_to, **paths), ("sft_model", "preference_data")
    for name, value in run_stage(run_dpo, "dpo", kwargs, inputs=inputs).items():
        metrics.log_metric(name, value)
