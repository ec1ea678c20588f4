"""The merge stage's KFP components (thin wrappers around `kfrlhf.merge.stage.run`)."""

from kfp.dsl import Input, Model, Output

from kfrlhf.common.component import stage_component


@stage_component
def merge(adapter: Input[Model], model: Output[Model]):
    from kfrlhf.merge.stage import run

    run(f"{adapter.path}/adapter", model.path)


@stage_component
def merge_onto(adapter: Input[Model], base_model: Input[Model], model: Output[Model]):
    from kfrlhf.merge.stage import run

    run(f"{adapter.path}/adapter", model.path, base=base_model.path)
