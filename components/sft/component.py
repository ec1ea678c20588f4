"""The SFT stage's KFP component (a thin wrapper around `kfrlhf.sft.train.run_sft`)."""

from kfp.dsl import Dataset, Input, Metrics, Model, Output

from kfrlhf.common.component import stage_component


@stage_component
def sft(sft: dict, report_to: str, sft_data: Input[Dataset], adapter: Output[Model], metrics: Output[Metrics]):
    from kfrlhf.sft.train import run_sft

    for name, value in run_sft(sft, sft_data.path, adapter.path, report_to).items():
        metrics.log_metric(name, value)
