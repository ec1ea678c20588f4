"""The RLAIF stage's KFP component (a thin wrapper around `kfrlhf.rlaif.stage.run`).

Its `preference_data` output has the data stage's preference format, so the reward stage reads it as is.
"""

from kfp.dsl import Dataset, Input, Metrics, Model, Output

from kfrlhf.common.component import stage_component


@stage_component
def rlaif(
    rlaif: dict,
    sft_model: Input[Model],
    prompt_data: Input[Dataset],
    preference_data: Output[Dataset],
    metrics: Output[Metrics],
):
    from kfrlhf.rlaif.stage import run

    for name, value in run(rlaif, sft_model.path, prompt_data.path, preference_data.path).items():
        metrics.log_metric(name, value)
