"""The data stage's KFP component (a thin wrapper around `kfrlhf.data.stage`)."""

from kfp.dsl import Dataset, Output

from kfrlhf.common.component import stage_component


@stage_component
def prepare_data(data: dict, sft_data: Output[Dataset], preference_data: Output[Dataset], prompt_data: Output[Dataset]):
    from kfrlhf.data.stage import run

    run(data, sft_data.path, preference_data.path, prompt_data.path)
