"""The SFT stage's KFP component (a thin wrapper around `kfrlhf.sft.stage.run`, started on the
processes `sft.distributed` asks for by `kfrlhf.launch.launcher`)."""

from kfp.dsl import Dataset, Input, Metrics, Model, Output

from kfrlhf.common.component import stage_component


@stage_component
def sft(sft: dict, report_to: str, sft_data: Input[Dataset], adapter: Output[Model], metrics: Output[Metrics]):
    from kfrlhf.launch.launcher import run_stage
    from kfrlhf.sft.stage import run

    kwargs = dict(sft=sft, sft_data=sft_data.path, output_dir=adapter.path, report_to=report_to)
    for name, value in run_stage(run, "sft", kwargs, inputs=("sft_data",)).items():
        metrics.log_metric(name, value)
