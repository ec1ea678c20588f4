"""The data stage's one declaration (`kfrlhf.common.spec`): tasks, resources."""

from kfrlhf.common.spec import Resources, StageSpec

SPEC = StageSpec(
    name="data",
    order=10,
    tasks=(("data", "Prepare data"),),
    config="kfrlhf.data.config:DataConfig",
    resources=Resources("1", "2", "4Gi", "8Gi", gpus=0, timeout_seconds=2 * 3600),
    image_base="light",
)
