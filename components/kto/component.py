"""The KTO stage's KFP component (a thin wrapper around `kfrlhf.kto.stage.run`, started on the
processes `kto.distributed` asks for by `kfrlhf.launch.launcher`)."""

from kfp.dsl import Dataset, Input, Metrics, Model, Output

from kfrlhf.common.component import stage_component


@stage_component
def kto(
    kto: dict,
    report_to: str,
    sft_model: Input[Model],
    preference_data: Input[Dataset],
    adapter: Output[Model],
    metrics: Output[Metrics],
):
    from kfrlhf.kto.stage import run
    from kfrlhf.launch.launcher import run_stage

    paths = dict(sft_model=sft_model.path, preference_data=preference_data.path, output_dir=adapter.path)
    kwargs, inputs = dict(kto=kto, report_to=report_to, **paths), ("sft_model", "preference_data")
    for name, value in run_stage(run, "kto", kwargs, inputs=inputs).items():
        metrics.log_metric(name, value)
