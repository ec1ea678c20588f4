"""The data stage's one declaration (`kfrlhf.common.spec`): entry point, tasks, resources."""

from kfrlhf.common.spec import Resources, StageSpec

SPEC = StageSpec(
    name="data",
    entry="kfrlhf.data.prepare:prepare_data",
    tasks=(("data", "Prepare data"),),
    config="kfrlhf.data.config:DataConfig",
    resources=Resources("1", "2", "4Gi", "8Gi", gpus=0, timeout_seconds=2 * 3600),
)
