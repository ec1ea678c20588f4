"""The ReST stage's KFP components: thin wrappers around `kfrlhf.rest.stage.run_grow` and
`kfrlhf.rest.stage.run_improve`. `iteration` and `iterations` are constants the pipeline sets when
it unrolls the loop; `adapter` (the previous Improve step's) is absent at iteration 0."""

from kfp.dsl import Dataset, Input, Metrics, Model, Output

from kfrlhf.common.component import stage_component


@stage_component
def rest_grow(
    rest: dict,
    iteration: int,
    iterations: int,
    sft_model: Input[Model],
    reward_model: Input[Model],
    prompt_data: Input[Dataset],
    samples: Output[Dataset],
    metrics: Output[Metrics],
    adapter: Input[Model] = None,
):
    from kfrlhf.rest.stage import run_grow

    policy_adapter = None if adapter is None else f"{adapter.path}/adapter"
    summary = run_grow(
        rest, iteration, iterations, sft_model.path, policy_adapter, reward_model.path, prompt_data.path, samples.path
    )
    for name, value in summary.items():
        metrics.log_metric(name, value)


@stage_component
def rest_improve(
    rest: dict,
    iteration: int,
    iterations: int,
    report_to: str,
    sft_model: Input[Model],
    samples: Input[Dataset],
    adapter: Output[Model],
    metrics: Output[Metrics],
    previous_adapter: Input[Model] = None,
):
    from kfrlhf.rest.stage import run_improve

    previous = None if previous_adapter is None else f"{previous_adapter.path}/adapter"
    result = run_improve(rest, iteration, iterations, sft_model.path, previous, samples.path, adapter.path, report_to)
    for name, value in result.items():
        metrics.log_metric(name, value)
